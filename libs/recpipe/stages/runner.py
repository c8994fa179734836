"""Entry points of the contract: one stage for a date, the daily plan over dates, the backtest.

The CLI (``recpipe <stage>``, ``recpipe run``), ``jobs/<stage>.py``, the Airflow DAG and the
Kubernetes manifests all end here with the same arguments: ``--conf``, ``--date``, ``--set``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from recpipe.config import Config
from recpipe.lake import open_lake
from recpipe.stages import daily
from recpipe.stages.base import BACKTEST, DAILY, StageContext, StageResult
from recpipe.stages.contract import execute


def _session(cfg: Config, app: str, spark: Any) -> Any:
    if spark is not None:
        return spark
    from recpipe.spark import build_session

    return build_session(cfg, app)


def run_stage(
    cfg: Config,
    name: str,
    date: dt.date | None = None,
    options: dict[str, Any] | None = None,
    rerun: bool = False,
    spark: Any = None,
) -> StageResult:
    """One stage for run date ``date`` (default: the stage's own, e.g. the day after the latest
    event); ``options`` are a single-stage command's explicit overrides."""
    stage = daily.get(name)
    spark = _session(cfg, name, spark)
    lake = open_lake(cfg, spark)
    day = date or stage.default_date(cfg, lake)
    ctx = StageContext(cfg, spark, lake, day, DAILY, dict(options or {}), rerun)
    return execute(stage, ctx, daily.STAGES)


def date_range(first: dt.date, last: dt.date) -> list[dt.date]:
    if last < first:
        raise ValueError(f"--to-date {last} is before --from-date {first}")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def run_days(
    cfg: Config,
    dates: Sequence[dt.date],
    names: Sequence[str] | None = None,
    rerun: bool = False,
    spark: Any = None,
    mode: str = DAILY,
) -> list[StageResult]:
    """The plan of each date in order (every stage, or ``names``), stopping at the first failure.

    Raises :class:`~recpipe.stages.base.StageError`; the attempts made so far are in ``ops.runs``.
    """
    stages = [daily.get(n) for n in names] if names is not None else list(daily.STAGES)
    spark = _session(cfg, "run", spark)
    lake = open_lake(cfg, spark)
    results = []
    for day in dates:
        ctx = StageContext(cfg, spark, lake, day, mode, {}, rerun)
        for stage in stages:
            try:
                results.append(execute(stage, ctx, daily.STAGES))
            finally:
                # One application runs many stages and days: cached frames a body left behind
                # must not pile up on the driver (a 3-day backfill ran out of a 1 GB heap).
                spark.catalog.clearCache()
    return results


def backtest_date(cfg: Config) -> dt.date:
    """The run date of a backtest: the start of the configured test split."""
    return cfg.examples.test_start


def run_backtest(
    cfg: Config, names: Sequence[str] | None = None, rerun: bool = False, spark: Any = None
) -> list[StageResult]:
    return run_days(cfg, [backtest_date(cfg)], names, rerun, spark, mode=BACKTEST)
