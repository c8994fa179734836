"""The quality gate: its two cheap passes record what one "SUMMARY" validation recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from recpipe import constants as C
from recpipe import quality
from recpipe.quality import gate

pytestmark = pytest.mark.unit

MIN_TS = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_TS = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)
CHECKS = quality.silver_events_checks(["impression", "click"], MIN_TS, MAX_TS)


def user(i: int) -> str:
    """A pseudonymized user id as ingest writes it: ``p_`` and 32 hex characters."""
    return f"p_{i:032x}"


def silver_rows(n: int = 40) -> list[dict[str, Any]]:
    """``n`` clean silver.events rows over two event dates."""
    rows = []
    for i in range(n):
        ts = dt.datetime(2026, 10, 1 + i % 2, 10, i % 60)
        rows.append(
            {
                C.EVENT_ID: f"e{i:04d}",
                C.USER_ID: user(i % 7),
                C.ITEM_ID: f"i{i % 5}",
                C.EVENT_TYPE: "click" if i % 4 == 0 else "impression",
                C.EVENT_TS: ts,
                C.SESSION_ID: f"s{i % 3}",
                C.REQUEST_ID: f"r{i}",
                C.POSITION: i % 10,
                C.DWELL_MS: 1000 * i if i % 4 == 0 else None,
                C.DEVICE: "mobile",
                C.COUNTRY: "DE",
                C.PROPENSITY: 0.5,
                C.IS_HISTORY: False,
                C.BATCH_ID: "b1",
                C.INGESTED_AT: dt.datetime(2026, 10, 3),
                C.EVENT_DATE: ts.date(),
            }
        )
    return rows


# Each defect: row index -> the values it overwrites in the clean rows.
DEFECTS: dict[str, dict[int, dict[str, Any]]] = {
    "clean": {},
    "nulls": {3: {C.USER_ID: None}, 5: {C.EVENT_TS: None, C.EVENT_DATE: None}, 8: {C.BATCH_ID: None}},
    "out_of_range_ts": {
        2: {C.EVENT_TS: dt.datetime(1999, 12, 31), C.EVENT_DATE: dt.date(1999, 12, 31)},
        9: {C.EVENT_TS: dt.datetime(2031, 1, 1), C.EVENT_DATE: dt.date(2031, 1, 1)},
    },
    "bad_event_types": {1: {C.EVENT_TYPE: "purchase"}, 6: {C.EVENT_TYPE: "view"}, 7: {C.EVENT_TYPE: "view"}},
    "duplicate_ids": {4: {C.EVENT_ID: "e0001"}, 11: {C.EVENT_ID: "e0001"}, 12: {C.EVENT_ID: "e0010"}},
    "bad_user_id_length": {0: {C.USER_ID: "u0"}, 13: {C.USER_ID: user(1) + "x"}},
    "bad_numbers": {14: {C.POSITION: -1, C.DWELL_MS: -5}, 15: {C.PROPENSITY: 0.0}, 16: {C.PROPENSITY: 1.5}},
}
DEFECTS["all"] = {i: v for d in DEFECTS.values() for i, v in d.items()}
# The checks each defect fails (a null is not a length or range violation: GX skips nulls there).
FAILS = {
    "clean": set(),
    "nulls": {
        f"ExpectColumnValuesToNotBeNull({c})" for c in (C.USER_ID, C.EVENT_TS, C.EVENT_DATE, C.BATCH_ID)
    },
    "out_of_range_ts": {"ExpectColumnValuesToBeBetween(event_ts)"},
    "bad_event_types": {"ExpectColumnValuesToBeInSet(event_type)"},
    "duplicate_ids": {"ExpectColumnValuesToBeUnique(event_id)"},
    "bad_user_id_length": {"ExpectColumnValueLengthsToEqual(user_id)"},
    "bad_numbers": {f"ExpectColumnValuesToBeBetween({c})" for c in (C.POSITION, C.DWELL_MS, C.PROPENSITY)},
}
FAILS["all"] = set().union(*FAILS.values())


def frame(spark: SparkSession, defect: str) -> DataFrame:
    rows = silver_rows()
    for i, values in DEFECTS[defect].items():
        rows[i] = {**rows[i], **values}
    df = spark.createDataFrame(
        [tuple(r[f] for f in C.SILVER_EVENTS_SCHEMA.fieldNames()) for r in rows], C.SILVER_EVENTS_SCHEMA
    )
    return df.repartition(2).cache()


def summary_reference(df: DataFrame, checks: list[quality.Check]) -> list[tuple]:
    """The gate as it was: one validation of the whole suite with ``result_format="SUMMARY"``;
    per check (success, element_count, unexpected_count, details)."""
    gx, ctx = gate._context()
    source = ctx.data_sources.add_spark(name="reference", persist=False)
    asset = source.add_dataframe_asset(name="reference")
    batch = asset.add_batch_definition_whole_dataframe("batch").get_batch(batch_parameters={"dataframe": df})
    suite = gx.ExpectationSuite(name="reference")
    for i, check in enumerate(checks):
        suite.add_expectation(getattr(gx.expectations, check.expectation)(**check.kwargs, meta={"index": i}))
    by_index = {
        int(r.expectation_config.meta["index"]): r
        for r in batch.validate(suite, result_format="SUMMARY").results
    }
    out = []
    for i in range(len(checks)):
        res = by_index[i].result or {}
        details = {
            k: res[k] for k in ("observed_value", "unexpected_percent", "partial_unexpected_list") if k in res
        }
        out.append(
            (
                bool(by_index[i].success),
                res.get("element_count", res.get("observed_value")),
                res.get("unexpected_count"),
                details,
            )
        )
    return out


def spark_jobs(spark: SparkSession, group: str, fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the number of Spark jobs it ran."""
    sc = spark.sparkContext
    sc.setJobGroup(group, group)
    try:
        value = fn()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return value, len(sc.statusTracker().getJobIdsForGroup(group))


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_gate_records_what_one_summary_validation_recorded(spark, monkeypatch, defect):
    # given: a silver.events batch, clean or with one kind of defect (or all of them)
    df = frame(spark, defect)
    passes: list[tuple[int, list[int]]] = []
    run_suite = gate._run_suite

    def spy(gx, batch, name, checks, result_format):
        passes.append((result_format["partial_unexpected_count"], sorted(checks)))
        return run_suite(gx, batch, name, checks, result_format)

    monkeypatch.setattr(gate, "_run_suite", spy)
    # when: the gate validates it, and the old single SUMMARY validation does too
    report, jobs = spark_jobs(
        spark, f"gate-{defect}", lambda: quality.validate(df, "silver_events", CHECKS, "t", 1)
    )
    expected, reference_jobs = spark_jobs(spark, f"reference-{defect}", lambda: summary_reference(df, CHECKS))
    # then: success, element and unexpected counts and the recorded details are the same
    got = [(r.success, r.element_count, r.unexpected_count, r.details) for r in report.results]
    assert [r.check for r in report.results] == CHECKS
    assert got == expected
    # and the checks that failed are exactly the defects put in (a clean batch fails none)
    failed = [i for i, r in enumerate(report.results) if not r.success]
    assert {report.results[i].label for i in failed} == FAILS[defect]
    # the first pass fetched no unexpected values; only the failed checks were asked for them
    assert passes[0] == (0, list(range(len(CHECKS))))
    assert passes[1:] == ([(20, failed)] if failed else [])
    # and a clean batch costs far fewer Spark jobs than the SUMMARY validation did
    if defect == "clean":
        assert jobs * 2 < reference_jobs, (jobs, reference_jobs)
    df.unpersist()


def test_gate_error_names_the_failed_checks_with_examples(spark):
    df = frame(spark, "bad_event_types")
    report = quality.validate(df, "silver_events", CHECKS, C.SILVER_EVENTS, 7)
    assert report.summary()["failed"] == ["ExpectColumnValuesToBeInSet(event_type)"]
    with pytest.raises(
        quality.QualityGateError,
        match=r"ExpectColumnValuesToBeInSet\(event_type\): 3 unexpected of 40 \(e\.g\. \['",
    ):
        report.raise_if_failed()
    df.unpersist()
