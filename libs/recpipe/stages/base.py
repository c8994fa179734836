"""The stage contract: what every stage declares, and what one attempt of it returns.

A stage is one object: its date plan for the run date D (:meth:`Stage.plan`), its input and output
tables, the config sections that shape its output, an optional plan-level skip (train's cadence,
ingest with no new files) and its body (one of the ``run_*`` functions). Running it
(:func:`recpipe.stages.contract.execute`) adds, the same way for every stage: input tables read at
the versions the day's upstream stages left them, skip-if-done (inputs + config fingerprint match
an earlier run), timing, a typed result and one ``ops.runs`` row per attempt.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
from typing import Any, ClassVar

from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.config import Config
from recpipe.lake import Lake

DAILY, BACKTEST = "daily", "backtest"
MODES = (DAILY, BACKTEST)


class StageError(RuntimeError):
    """A stage attempt failed; its ``ops.runs`` row holds the reason."""


@dataclasses.dataclass(frozen=True)
class StageContext:
    """What a stage attempt runs with.

    ``mode``: ``daily`` (the date plans below) or ``backtest`` (``recpipe run`` without a date: the
    configured time split, examples over every event date, lists of D evaluated on the clicks
    after D). ``options``: a single-stage command's explicit overrides (``--start/--end``,
    ``--run-id``, ...), which replace the plan's parts. ``rerun``: run even when done.
    """

    cfg: Config
    spark: Any
    lake: Lake
    run_date: dt.date
    mode: str = DAILY
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    rerun: bool = False


@dataclasses.dataclass
class StageResult:
    """The outcome of one attempt (also its ``ops.runs`` row)."""

    stage: str
    run_date: dt.date
    mode: str
    run_id: str
    status: str
    reason: str | None
    duration_s: float
    fingerprint: str
    plan: dict[str, Any]
    counts: dict[str, int]
    input_versions: dict[str, int | None]
    output_versions: dict[str, int | None]
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["run_date"] = self.run_date.isoformat()
        return d


class Stage(abc.ABC):
    """One pipeline stage. Subclasses declare the class attributes and implement plan/body."""

    name: ClassVar[str]
    # Tables the stage reads (read at the versions the day's upstream stages recorded).
    inputs: ClassVar[tuple[str, ...]] = ()
    # Tables the stage writes (their versions after the attempt are recorded).
    outputs: ClassVar[tuple[str, ...]] = ()
    # Config sections (or "section.key") that shape the output: part of the fingerprint.
    config_keys: ClassVar[tuple[str, ...]] = ()
    # Body summary keys recorded as the attempt's key counts.
    count_keys: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def plan(self, ctx: StageContext, lake: Lake) -> dict[str, Any]:
        """The date plan for ``ctx.run_date`` (JSON-able; part of the fingerprint)."""

    def skip_reason(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> str | None:
        """A reason to skip this day by plan (nothing to do), or None to run."""
        return None

    @abc.abstractmethod
    def body(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> dict[str, Any]:
        """Run the stage on ``lake`` (inputs pinned); returns the body's summary."""

    def counts(self, summary: dict[str, Any]) -> dict[str, int]:
        out = {}
        for k in self.count_keys:
            v = summary.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = int(v)
        return out

    def default_date(self, cfg: Config, lake: Lake) -> dt.date:
        """The run date when a command gives none: the day after the latest event."""
        return day_after_latest_event(lake)


RELATIVE_DATES = {"today": 0, "yesterday": -1}


def parse_run_date(text: str, today: dt.date | None = None) -> dt.date:
    """``YYYY-MM-DD``, or ``today`` / ``yesterday`` in UTC (for schedulers that cannot template a
    date, e.g. the Kubernetes ScheduledSparkApplication)."""
    word = text.strip().lower()
    if word in RELATIVE_DATES:
        base = today or dt.datetime.now(dt.UTC).date()
        return base + dt.timedelta(days=RELATIVE_DATES[word])
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD, today or yesterday): {text!r}") from None


def day_after_latest_event(lake: Lake) -> dt.date:
    if not lake.exists(C.SILVER_EVENTS):
        raise ValueError(f"{C.SILVER_EVENTS} does not exist: pass --date or run ingest first")
    row = lake.read(C.SILVER_EVENTS).agg(F.max(C.EVENT_DATE)).first()
    if row is None or row[0] is None:
        raise ValueError(f"{C.SILVER_EVENTS} is empty: pass --date")
    latest: dt.date = row[0]
    return latest + dt.timedelta(days=1)


def config_part(cfg: Config, key: str) -> Any:
    """``"train"`` -> the section as a dict (without the fields marked
    ``config.NOT_FINGERPRINTED``: where results are reported); ``"train.seed"`` -> that value."""
    section, _, field = key.partition(".")
    value = getattr(cfg, section)
    if field:
        return getattr(value, field)
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    full = dataclasses.asdict(value)
    return {f.name: full[f.name] for f in dataclasses.fields(value) if f.metadata.get("fingerprint", True)}
