"""The ingest job end to end on generated dirty logs."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe import quality
from recpipe.cli import main
from recpipe.events.ingest import run_ingest
from recpipe.events.transforms import pseudonymize_py
from recpipe.lake import open_lake
from tests.conftest import make_config

pytestmark = pytest.mark.integration


def _last_run(lake):
    return json.loads(lake.read(C.OPS_RUNS).orderBy(F.col("finished_at").desc()).first().summary_json)


def test_counts_reconcile_exactly_with_the_generator(synthetic_lake):
    cfg, lake, raw, manifest = synthetic_lake
    run = _last_run(lake)
    assert run["input_records"] == manifest["lines_total"]
    assert run["accepted"] == manifest["clean_events"]
    assert run["duplicates"] == manifest["duplicates"]
    assert run["quarantined_by_reason"] == {k: v for k, v in manifest["quarantined"].items() if v}
    assert run["late_events"] == manifest["late_events"]
    assert run["accepted"] + run["duplicates"] + run["quarantined"] == run["input_records"]
    assert lake.row_count(C.SILVER_EVENTS) == manifest["clean_events"]
    assert lake.row_count(C.BRONZE_EVENTS_RAW) == manifest["lines_total"]
    assert lake.row_count(C.BRONZE_QUARANTINE) == sum(manifest["quarantined"].values())


def test_silver_events_is_a_delta_table_with_unique_ids_and_pseudonymized_users(synthetic_lake):
    cfg, lake, raw, manifest = synthetic_lake
    table = DeltaTable(lake.path(C.SILVER_EVENTS)).to_pyarrow_table(columns=[C.EVENT_ID, C.USER_ID])
    ids = table.column(C.EVENT_ID).to_pylist()
    assert len(ids) == len(set(ids)) == manifest["clean_events"]
    users = set(table.column(C.USER_ID).to_pylist())
    bot = manifest["bot_users"][0]
    assert pseudonymize_py(bot, cfg.pseudonym_key()) in users
    assert not any(u.startswith("U") for u in users)
    assert DeltaTable(lake.path(C.SILVER_EVENTS)).metadata().partition_columns == [C.EVENT_DATE]


def test_quarantine_keeps_the_raw_record_file_line_and_reason(synthetic_lake):
    cfg, lake, raw, manifest = synthetic_lake
    q = lake.read(C.BRONZE_QUARANTINE)
    by_reason = {r[C.REASON]: r["n"] for r in q.groupBy(C.REASON).agg(F.count("*").alias("n")).collect()}
    assert by_reason == {k: v for k, v in manifest["quarantined"].items() if v}
    row = q.where(F.col(C.REASON) == C.MALFORMED).orderBy(C.SOURCE_FILE, C.LINE).first()
    lines = open(row[C.SOURCE_FILE], encoding="utf-8", errors="replace").read().split("\n")
    assert lines[row[C.LINE] - 1] == row[C.RAW]


def test_rerunning_a_batch_changes_no_table(spark, synthetic_lake):
    cfg, lake, raw, manifest = synthetic_lake
    before = {t: lake.version(t) for t in lake.list_tables()}
    summary = run_ingest(cfg, spark, input_dir=str(raw), batch_id="synthetic-test", lake=lake)
    assert summary["already_ingested"] is True
    assert summary["accepted"] == manifest["clean_events"]
    after = {t: lake.version(t) for t in lake.list_tables()}
    assert after == before


def test_a_new_batch_with_already_stored_events_adds_only_duplicates(spark, synthetic_lake, tmp_path):
    cfg, lake, raw, manifest = synthetic_lake
    # given: a copy of one hour file delivered again under another batch id
    day = sorted((raw / "events").iterdir())[3]
    hour = sorted(day.iterdir())[0]
    redelivery = tmp_path / "again" / "events" / day.name
    redelivery.mkdir(parents=True)
    (redelivery / hour.name).write_bytes(hour.read_bytes())
    before = lake.row_count(C.SILVER_EVENTS)
    # when
    s = run_ingest(cfg, spark, input_dir=str(tmp_path / "again"), batch_id="redelivery", lake=lake)
    # then
    assert s["accepted"] == 0
    assert s["duplicates"] + s["quarantined"] == s["input_records"] > 0
    assert lake.row_count(C.SILVER_EVENTS) == before


def test_csv_source_through_a_column_mapping(spark, tmp_path):
    src = tmp_path / "csv" / "events" / "2026-10-02"
    src.mkdir(parents=True)
    (src / "part1.csv").write_text(
        "uid,article,kind,when,pos\n"
        "u1,a1,click,2026-10-02T10:00:00Z,1\n"
        "u1,a1,click,2026-10-02T10:00:00Z,1\n"
        "u2,a2,impression,2026-10-02T10:00:01Z,0\n"
        "u3,,click,2026-10-02T10:00:02Z,0\n"
    )
    cfg = make_config(
        tmp_path / "lake",
        tmp_path / "csv",
        ingest={
            "format": "csv",
            "column_mapping": {
                "user_id": "uid",
                "item_id": "article",
                "event_type": "kind",
                "ts": "when",
                "position": "pos",
            },
        },
    )
    s = run_ingest(cfg, spark, input_dir=str(tmp_path / "csv"), batch_id="csv-1")
    assert (s["input_records"], s["accepted"], s["duplicates"], s["quarantined"]) == (4, 2, 1, 1)
    assert s["quarantined_by_reason"] == {"missing_field": 1}
    lake = open_lake(cfg, spark)
    q = lake.read(C.BRONZE_QUARANTINE).first()
    assert json.loads(q[C.RAW])["uid"] == "u3" and q[C.LINE] == 4


def test_failed_critical_expectation_stops_the_job_naming_it(tmp_path, monkeypatch, capsys, synthetic_lake):
    cfg, lake, raw, manifest = synthetic_lake
    strict = [quality.Check("ExpectColumnValuesToBeInSet", {"column": C.EVENT_TYPE, "value_set": ["click"]})]
    monkeypatch.setattr(quality, "silver_events_checks", lambda *a, **k: strict)
    small = tmp_path / "small" / "events"
    day = sorted((raw / "events").iterdir())[1]
    (small / day.name).mkdir(parents=True)
    for f in sorted(day.iterdir())[:2]:
        (small / day.name / f.name).write_bytes(f.read_bytes())
    rc = main(
        [
            "ingest",
            "--conf",
            "conf/local.yaml",
            "--input",
            str(tmp_path / "small"),
            "--set",
            f"lake.root={tmp_path / 'lake'}",
            "--batch-id",
            "gate",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "quality gate 'silver_events' failed" in err
    assert "ExpectColumnValuesToBeInSet(event_type)" in err and "unexpected of" in err
    dq = open_lake(make_config(tmp_path / "lake", raw), synthetic_lake[1].spark).read(C.OPS_DATA_QUALITY)
    assert dq.where(~F.col("success")).count() == 1


def test_tables_command_lists_versions_and_rows(synthetic_lake, capsys):
    cfg, lake, raw, manifest = synthetic_lake
    rc = main(["tables", "--json", "--set", f"lake.root={cfg.lake.root}"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    by_name = {t["table"]: t for t in out["tables"]}
    assert by_name[C.SILVER_EVENTS]["rows"] == manifest["clean_events"]
    assert {C.BRONZE_EVENTS_RAW, C.BRONZE_QUARANTINE, C.SILVER_ITEMS, C.OPS_RUNS, C.OPS_DATA_QUALITY} <= set(
        by_name
    )
