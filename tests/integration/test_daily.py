"""Daily operation through the stage contract: a 3-day backfill from a fresh lake, run twice.

Six days of synthetic logs (2026-10-01..06); run dates 10-04, 10-05, 10-06. Training every 7 days
(so only the first day trains, with one rank and one epoch) and an evaluation horizon of one day
(so the second and third days evaluate the lists of the day before).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from recpipe import constants as C
from recpipe.cli import main
from recpipe.lake import open_lake
from recpipe.stages import runs
from recpipe.stages.daily import STAGE_NAMES
from recpipe.stages.runner import date_range, run_days
from tests.conftest import make_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = date_range(dt.date(2026, 10, 4), dt.date(2026, 10, 6))


@pytest.fixture(scope="module")
def backfill(spark, tmp_path_factory):
    from recpipe.datasets.synthetic import generate

    base = tmp_path_factory.mktemp("daily")
    raw = base / "raw"
    generate(raw, events=5000, seed=5, start=dt.date(2026, 10, 1), days=6)
    cfg = make_config(
        base / "lake",
        raw,
        # no validation_start/test_start: a daily window's split moves with the run date
        examples={"window_days": 3},
        train={"every_days": 7, "epochs": 1, "num_proc": 1, "batch_size": 256},
        evaluate={"horizon_days": 1},
    )
    lake = open_lake(cfg, spark)
    first = run_days(cfg, DAYS, spark=spark)
    versions = {t: lake.version(t) for t in lake.list_tables()}
    rows_first = runs.stage_rows(lake)
    second = run_days(cfg, DAYS, spark=spark)
    return cfg, lake, first, second, versions, rows_first


def test_every_stage_of_every_day_ran_or_was_skipped_with_a_reason(backfill):
    cfg, lake, first, _second, _versions, rows = backfill
    # one ops.runs row per stage per day, in the daily order
    assert [(r["run_date"], r["job"]) for r in rows] == [(d, s) for d in DAYS for s in STAGE_NAMES]
    status = {(r["run_date"], r["job"]): r for r in rows}
    d1, d2, d3 = DAYS
    for day in DAYS:
        for stage in ("ingest", "features", "examples", "recommend"):
            assert status[(day, stage)]["status"] == "ok", (day, stage, status[(day, stage)]["reason"])
    assert status[(d1, "train")]["status"] == "ok"
    for day in (d2, d3):
        row = status[(day, "train")]
        assert row["status"] == "skipped" and row["reason"].startswith("not a training day"), row["reason"]
    # no lists were published on d1 - 1 day; d2 and d3 evaluate the lists of the day before
    assert status[(d1, "evaluate")]["status"] == "skipped"
    assert "no lists published on 2026-10-03" in status[(d1, "evaluate")]["reason"]
    for day in (d2, d3):
        assert status[(day, "evaluate")]["status"] == "ok"
    assert [r.summary["run_date"] for r in first if r.stage == "evaluate" and r.status == "ok"] == [
        "2026-10-04",
        "2026-10-05",
    ]


def test_evaluations_report_the_calibration_of_the_current_model(backfill):
    _cfg, _lake, first, _second, _versions, _rows = backfill
    reports = [r.summary for r in first if r.stage == "evaluate" and r.status == "ok"]
    assert len(reports) == 2
    for rep in reports:
        # the model trained on the first day scores the test split: its deciles cover every row
        ranker = rep["ranker"]
        cal = ranker["calibration"]
        assert 0 <= cal["ece"] <= 1 and 0 <= cal["brier"] <= 1
        assert sum(d["n"] for d in cal["deciles"]) == cal["n"] == ranker["test_examples"] > 0
        observed = sum(d["n"] * d["observed_ctr"] for d in cal["deciles"]) / cal["n"]
        assert observed == pytest.approx(ranker["test_ctr"])
        # the model published the lists: the fallback ranker's lists of the same stored candidates
        # are evaluated beside them (README, "Evaluation")
        fallback = rep["fallback_ranker"]
        assert fallback["ranker"] == "popularity" and 0 < fallback["lists"] <= rep["users_with_lists"]
        assert {r["policy"] for r in rep["top_n"]} == {"published", "popularity", "als", "fallback_ranker"}


def test_the_examples_split_moves_with_the_run_date(backfill):
    _cfg, lake, _first, _second, _versions, _rows = backfill
    # the last day's window [10-03, 10-05]: train, validation, test (the configured backtest split
    # of 10-11/10-13 would have made every example "train" and left no validation day)
    rows = lake.read(C.GOLD_TRAINING_EXAMPLES).groupBy(C.EVENT_DATE, C.SPLIT).count().collect()
    split = {r[C.EVENT_DATE]: r[C.SPLIT] for r in rows}
    assert len(split) == len(rows)  # one split per date
    assert [split[dt.date(2026, 10, d)] for d in (3, 4, 5)] == ["train", "validation", "test"]


def test_each_day_ingests_the_day_folders_before_it_once(backfill):
    cfg, lake, _first, _second, _versions, rows = backfill
    ingest = [r for r in rows if r["job"] == "ingest"]
    # 10-04 ingests the folders of 10-01..03, each later day the folder of the day before
    assert [r["counts"]["batches"] for r in ingest] == [3, 1, 1]
    assert [r["counts"]["batches_done_before"] for r in ingest] == [0, 3, 4]
    manifest = json.loads((cfg_raw(cfg) / "manifest.json").read_text())
    stored = lake.read(C.SILVER_EVENTS).select(C.EVENT_DATE).distinct().collect()
    assert max(r[0] for r in stored) <= dt.date(2026, 10, 5)
    assert sum(r["accepted"] for r in ingest) == lake.row_count(C.SILVER_EVENTS)
    assert lake.row_count(C.SILVER_EVENTS) < manifest["clean_events"]  # the 10-06 folder is not due


def cfg_raw(cfg):
    from pathlib import Path

    return Path(cfg.data.raw_dir)


def test_downstream_stages_read_the_versions_their_day_left(backfill):
    _cfg, _lake, first, _second, _versions, rows = backfill
    by = {(r["run_date"], r["job"]): r for r in rows}
    for day in DAYS:
        silver = by[(day, "ingest")]["table_versions"][C.SILVER_EVENTS]
        for stage in ("features", "examples", "recommend", "evaluate"):
            if by[(day, stage)]["status"] == "ok":
                assert by[(day, stage)]["input_versions"][C.SILVER_EVENTS] == silver, (day, stage)
        # the features stage is the feature tables' one writer: the day's examples and
        # recommend both read what it left
        features_out = by[(day, "features")]["table_versions"][C.GOLD_USER_FEATURES]
        assert by[(day, "recommend")]["input_versions"][C.GOLD_USER_FEATURES] == features_out
        if by[(day, "examples")]["status"] == "ok":
            assert by[(day, "examples")]["input_versions"][C.GOLD_USER_FEATURES] == features_out


def test_rerunning_finished_days_commits_nothing(backfill):
    _cfg, lake, _first, second, versions, _rows = backfill
    after = {t: lake.version(t) for t in lake.list_tables()}
    assert {t: v for t, v in after.items() if t != C.OPS_RUNS} == {
        t: v for t, v in versions.items() if t != C.OPS_RUNS
    }
    assert [r.status for r in second] == ["skipped"] * len(DAYS) * len(STAGE_NAMES)
    assert all(r.reason.startswith("done: same inputs and config as ") for r in second)
    # the second attempt of each stage and day is its own row
    assert len(runs.stage_rows(lake)) == 2 * len(DAYS) * len(STAGE_NAMES)


def test_status_lists_stages_by_date(backfill, capsys):
    cfg, _lake, _first, _second, _versions, _rows = backfill
    rc = main(["status", "--days", "2", "--set", f"lake.root={cfg.lake.root}"])
    out = capsys.readouterr()
    assert rc == 0
    report = json.loads(out.out.strip().splitlines()[-1])
    assert report["first"] == "2026-10-05" and report["last"] == "2026-10-06"
    assert [(r["run_date"], r["stage"]) for r in report["runs"]] == [
        (d.isoformat(), s) for d in DAYS[1:] for s in STAGE_NAMES
    ]
    assert all(r["attempts"] == 2 and r["status"] == "skipped" for r in report["runs"])
    assert "2026-10-06  train      skipped      2" in out.err


def test_an_ops_runs_table_from_before_the_contract_still_records_and_reads(spark, tmp_path):
    # given: ops.runs with the columns it had before the stage contract (ingest's reconciliation)
    from pyspark.sql.types import StructType

    cfg = make_config(tmp_path / "lake", tmp_path / "raw")
    lake = open_lake(cfg, spark)
    old = StructType([f for f in C.OPS_RUNS_SCHEMA.fields if f.name in C.OPS_RUNS_BASE_COLUMNS])
    now = dt.datetime(2026, 10, 5, 3, tzinfo=dt.UTC)
    lake.append(
        C.OPS_RUNS,
        spark.createDataFrame(
            [("ingest-b1", "ingest", "b1", "ok", now, now, 1.0, 3, 3, 0, {}, {C.SILVER_EVENTS: 0}, "{}")], old
        ),
    )
    # when: a stage attempt is recorded
    row = runs.RunRow(
        run_id="features-x",
        job="features",
        status="skipped",
        started_at=now,
        finished_at=now,
        duration_s=0.5,
        run_date=dt.date(2026, 10, 5),
        mode="daily",
        reason="no reason",
        fingerprint="abc",
        input_versions={C.SILVER_EVENTS: 0},
        counts={"users": 7},
        table_versions={C.GOLD_USER_FEATURES: None},
    )
    runs.record(lake, row)
    # then: the table keeps its columns and the contract's fields read back from summary_json
    assert lake.schema(C.OPS_RUNS).fieldNames() == C.OPS_RUNS_BASE_COLUMNS
    (got,) = runs.stage_rows(lake)
    assert (got["job"], got["run_date"], got["status"], got["reason"], got["fingerprint"]) == (
        "features",
        dt.date(2026, 10, 5),
        "skipped",
        "no reason",
        "abc",
    )
    assert (got["input_versions"], got["counts"]) == ({C.SILVER_EVENTS: 0}, {"users": 7})
    assert lake.row_count(C.OPS_RUNS) == 2
