"""``ops.runs``: one row per attempt of a stage (and ingest's per-batch reconciliation rows).

Rows are written by :func:`record`. While a stage attempt is open (:func:`attempt`), a record made
by the stage's body (ingest records its batch reconciliation itself) is folded into the attempt's
row instead of becoming a second row, so a stage run through the contract leaves exactly one row.

Tables created before the stage-contract columns existed (``constants.OPS_RUNS_BASE_COLUMNS``)
still work: writes keep to the table's columns (everything is also in ``summary_json``) and
:func:`read_runs` fills the missing columns from ``summary_json``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from recpipe import constants as C
from recpipe.lake import Lake, Txn

log = logging.getLogger(__name__)

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
STATUSES = (OK, SKIPPED, FAILED)
# Columns added by the stage contract, filled from summary_json where a table lacks them.
CONTRACT_COLUMNS = [c for c in C.OPS_RUNS_SCHEMA.fieldNames() if c not in C.OPS_RUNS_BASE_COLUMNS]


@dataclasses.dataclass
class RunRow:
    """One ``ops.runs`` row (``constants.OPS_RUNS_SCHEMA``)."""

    run_id: str
    job: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_s: float
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_id: str | None = None
    input_records: int | None = None
    accepted: int | None = None
    duplicates: int | None = None
    quarantined: dict[str, int] | None = None
    table_versions: dict[str, int | None] = dataclasses.field(default_factory=dict)
    run_date: dt.date | None = None
    mode: str | None = None
    reason: str | None = None
    fingerprint: str | None = None
    input_versions: dict[str, int | None] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_tuple(self) -> tuple[Any, ...]:
        def versions(d: dict[str, int | None]) -> dict[str, int]:
            return {k: int(v) for k, v in d.items() if v is not None}

        fields = {
            "run_date": self.run_date.isoformat() if self.run_date else None,
            "mode": self.mode,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "input_versions": versions(self.input_versions),
            "counts": self.counts,
        }
        # summary_json carries the contract fields too, for tables without their columns.
        summary = {**self.summary, "_run": fields}
        return (
            self.run_id,
            self.job,
            self.batch_id,
            self.status,
            self.started_at,
            self.finished_at,
            float(self.duration_s),
            self.input_records,
            self.accepted,
            self.duplicates,
            self.quarantined,
            versions(self.table_versions),
            json.dumps(summary, default=str),
            self.run_date,
            self.mode,
            self.reason,
            self.fingerprint,
            versions(self.input_versions),
            {k: int(v) for k, v in self.counts.items()},
        )


class Attempt:
    """A stage attempt in progress: collects the records its body makes (see :func:`record`)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.body_rows: list[RunRow] = []


_ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("recpipe_attempt", default=None)


@contextlib.contextmanager
def attempt(stage: str) -> Iterator[Attempt]:
    """Open an attempt of ``stage``: records of the same job made inside are collected, not written."""
    a = Attempt(stage)
    token = _ATTEMPT.set(a)
    try:
        yield a
    finally:
        _ATTEMPT.reset(token)


def record(lake: Lake, row: RunRow, txn: Txn | None = None) -> bool:
    """Append ``row`` to ``ops.runs``; returns False when it went to the open attempt instead."""
    current = _ATTEMPT.get()
    if current is not None and current.stage == row.job:
        current.body_rows.append(row)
        return False
    _append(lake, [row], txn)
    return True


def _append(lake: Lake, rows: list[RunRow], txn: Txn | None) -> None:
    df = lake.spark.createDataFrame([r.as_tuple() for r in rows], C.OPS_RUNS_SCHEMA)
    if lake.exists(C.OPS_RUNS):
        have = lake.schema(C.OPS_RUNS).fieldNames()
        missing = [c for c in CONTRACT_COLUMNS if c not in have]
        if missing:
            log.warning(
                "%s predates the stage-contract columns %s: they go to summary_json only",
                C.OPS_RUNS,
                missing,
            )
            df = df.select(*have)
    lake.append(C.OPS_RUNS, df, txn=txn)


def read_runs(lake: Lake) -> DataFrame | None:
    """``ops.runs`` with every column of ``OPS_RUNS_SCHEMA`` (None when the table does not exist)."""
    if not lake.exists(C.OPS_RUNS):
        return None
    df = lake.read(C.OPS_RUNS)
    types = {f.name: f.dataType for f in C.OPS_RUNS_SCHEMA.fields}
    for col in CONTRACT_COLUMNS:
        if col in df.columns:
            continue
        raw = F.get_json_object("summary_json", f"$._run.{col}")
        if isinstance(types[col], MapType):
            # pyspark's stub omits MapType, which from_json takes (documented since Spark 2.4).
            value = F.from_json(raw, types[col])  # type: ignore[arg-type]
        else:
            value = raw.cast(types[col])
        df = df.withColumn(col, value)
    return df.select(*C.OPS_RUNS_SCHEMA.fieldNames())


def stage_rows(
    lake: Lake,
    stages: list[str] | None = None,
    first: dt.date | None = None,
    last: dt.date | None = None,
    fingerprint: str | None = None,
) -> list[dict[str, Any]]:
    """Stage-attempt rows (those with a run date), oldest first, filtered as given."""
    df = read_runs(lake)
    if df is None:
        return []
    cond = F.col("run_date").isNotNull()
    if stages is not None:
        cond &= F.col("job").isin(stages)
    if first is not None:
        cond &= F.col("run_date") >= F.lit(first)
    if last is not None:
        cond &= F.col("run_date") <= F.lit(last)
    if fingerprint is not None:
        cond &= F.col("fingerprint") == fingerprint
    rows = df.where(cond).drop("summary_json").orderBy("finished_at", "started_at").collect()
    return [r.asDict(recursive=True) for r in rows]
