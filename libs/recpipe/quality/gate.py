"""The quality gate: runs a suite of :class:`~recpipe.quality.report.Check` as one Great
Expectations suite on a Spark DataFrame (:func:`validate`) and appends the results to
``ops.data_quality`` (:func:`record`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame

from recpipe import constants as C
from recpipe.lake import Lake, Txn
from recpipe.quality.report import Check, CheckResult, QualityReport

if TYPE_CHECKING:  # Great Expectations is imported when a suite runs (seconds of import time)
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.datasource.fluent.interfaces import Batch

log = logging.getLogger(__name__)


def _context() -> tuple[Any, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # This module sets its own logger to INFO ("Created temporary directory ... for ephemeral
    # docs site" on every validation).
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except ImportError:  # progress bars are cosmetic; older/newer GX moved the class
        log.debug("cannot switch off Great Expectations progress bars")
    return gx, ctx


# Pass 1 (every batch): success and counts only. Great Expectations bundles the suite's
# aggregates (row count, null counts, unexpected counts) into one Spark ``agg`` per domain and
# dependency level; with "SUMMARY" (or BASIC's default of 20 examples) it also ran one
# ``filter().limit(20).collect()`` per expectation, which on a clean batch finds nothing and so
# scans the whole frame each time. A limit of 0 is planned as an empty relation, no Spark job:
# silver.events' suite went from 38 Spark jobs to 9 (3 aggregates, the uniqueness window count).
_COUNTS_ONLY: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 0}
# Pass 2 (only the checks that failed): up to 20 unexpected values each, as SUMMARY reports them.
_EXAMPLES: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 20}
# The result keys kept in ``CheckResult.details`` (and ``ops.data_quality.details``).
_DETAIL_KEYS = ("observed_value", "unexpected_percent", "partial_unexpected_list")


def _run_suite(
    gx: ModuleType, batch: Batch, name: str, checks: dict[int, Check], result_format: dict[str, Any]
) -> dict[int, ExpectationValidationResult]:
    """Validate ``checks`` (keyed by their index in the caller's list) as one suite on ``batch``;
    each check's Great Expectations result by that index."""
    suite = gx.ExpectationSuite(name=name)
    for i, check in checks.items():
        cls = getattr(gx.expectations, check.expectation)
        suite.add_expectation(cls(**check.kwargs, meta={"index": i, "critical": check.critical}))
    outcome = batch.validate(suite, result_format=dict(result_format))  # GX adds its defaults to it
    return {int(r.expectation_config.meta["index"]): r for r in outcome.results}


def validate(
    df: DataFrame, suite_name: str, checks: list[Check], table: str, version: int | None
) -> QualityReport:
    """Run ``checks`` as one Great Expectations suite on ``df``.

    Two passes keep the gate cheap: the suite with counts only (success, element and unexpected
    counts), then, only for the checks that failed, their unexpected values; the results are the
    ones a single "SUMMARY" validation gives (``tests/unit/test_quality.py`` compares them).

    Every pass reads ``df`` again (the first one a few aggregates, each with only the columns
    it needs): a computed ``df`` (joins, windows) should be cached by the caller, a scan of
    stored Parquet need not be. Great Expectations is told not to persist it itself, which
    logged "Asked to cache already cached data" and left a copy it never unpersisted.
    """
    gx, ctx = _context()
    source = ctx.data_sources.add_spark(name="recpipe", persist=False)
    asset = source.add_dataframe_asset(name=suite_name)
    batch = asset.add_batch_definition_whole_dataframe("batch").get_batch(batch_parameters={"dataframe": df})
    counted = _run_suite(gx, batch, suite_name, dict(enumerate(checks)), _COUNTS_ONLY)
    failed = {i: checks[i] for i, r in counted.items() if not r.success}
    examples = _run_suite(gx, batch, f"{suite_name}.examples", failed, _EXAMPLES) if failed else {}
    results = []
    for i, r in sorted(counted.items()):
        res = r.result or {}
        details = {k: res[k] for k in _DETAIL_KEYS if k in res}
        if i in examples and "partial_unexpected_list" in details:
            details["partial_unexpected_list"] = (examples[i].result or {}).get("partial_unexpected_list")
        results.append(
            CheckResult(
                check=checks[i],
                success=bool(r.success),
                element_count=res.get("element_count", res.get("observed_value")),
                unexpected_count=res.get("unexpected_count"),
                details=details,
            )
        )
    report = QualityReport(suite_name, table, version, results)
    log.info("quality suite %s on %s: %s", suite_name, table, report.summary())
    return report


def record(lake: Lake, report: QualityReport, run_id: str) -> None:
    """Append the report's rows to ``ops.data_quality`` (once per run and suite)."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        (
            run_id,
            report.table,
            report.table_version,
            report.suite,
            r.check.expectation,
            r.check.kwargs.get("column"),
            r.check.critical,
            r.success,
            None if r.element_count is None or not isinstance(r.element_count, int) else r.element_count,
            r.unexpected_count,
            json.dumps({**r.check.kwargs, **r.details}, default=str),
            now,
        )
        for r in report.results
    ]
    df = lake.spark.createDataFrame(rows, C.DATA_QUALITY_SCHEMA)
    lake.append(C.OPS_DATA_QUALITY, df, txn=Txn(f"dq/{run_id}/{report.suite}", 1))
