"""The ingest job end to end on generated dirty logs."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe import quality
from recpipe.cli import main
from recpipe.events.ingest import IngestError, run_ingest
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


def test_the_batch_report_counts_by_reason_and_file_beside_its_page(synthetic_lake):
    from recpipe.reports.store import list_and_render

    cfg, lake, raw, manifest = synthetic_lake
    folder = Path(cfg.artifacts_dir("reports"))
    rep = json.loads((folder / "ingest-synthetic-test.json").read_text())
    assert rep["quarantined_by_reason"] == {k: v for k, v in manifest["quarantined"].items() if v}
    files = rep["records_by_file"]
    # one row per event file, named relative to the landing folder, summing to the batch's counts
    assert len(files) == rep["files"] and all(f["file"].startswith("events/") for f in files)
    assert sum(f["records"] for f in files) == rep["input_records"]
    assert sum(f["accepted"] for f in files) == rep["accepted"]
    assert sum(f["quarantined"] for f in files) == rep["quarantined"]
    assert sum(f["late_events"] for f in files) == rep["late_events"] == manifest["late_events"]
    page = (folder / "ingest-synthetic-test.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "events/" in page
    listed = list_and_render(str(folder))["reports"]
    assert [r["html"] for r in listed if r["kind"] == "ingest"] == [
        str(folder / "ingest-synthetic-test.html")
    ]


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


def _event_lines(n, start_ms, user="U1"):
    return "".join(
        json.dumps({"user_id": user, "item_id": f"N{i}", "event_type": "click", "ts": start_ms + i * 1000})
        + "\n"
        for i in range(n)
    )


def test_gzip_jsonl_files_are_read_with_the_plain_ones(spark, tmp_path):
    # given: one plain and one gzip-compressed hour file of the same day (issue 9 item 2)
    day = tmp_path / "raw" / "events" / "2026-10-02"
    day.mkdir(parents=True)
    (day / "10.jsonl").write_text(_event_lines(3, 1790935200000))
    (day / "11.jsonl.gz").write_bytes(gzip.compress(_event_lines(4, 1790938800000, user="U2").encode()))
    cfg = make_config(tmp_path / "lake", tmp_path / "raw")
    # when
    s = run_ingest(cfg, spark, input_dir=str(tmp_path / "raw"), batch_id="gz-1")
    # then: both files read, every event in silver and in bronze
    assert (s["files"], s["input_records"], s["accepted"]) == (2, 7, 7)
    lake = open_lake(cfg, spark)
    assert lake.row_count(C.SILVER_EVENTS) == 7
    by_file = {
        r[0].rsplit("/", 1)[-1]: r[1]
        for r in lake.read(C.BRONZE_EVENTS_RAW).groupBy(C.SOURCE_FILE).count().collect()
    }
    assert by_file == {"10.jsonl": 3, "11.jsonl.gz": 4}


def _runs(lake):
    return [json.loads(r.summary_json) | {"_status": r.status} for r in lake.read(C.OPS_RUNS).collect()]


def test_files_ingest_does_not_read_stop_the_batch_or_are_listed_with_the_reason(spark, tmp_path):
    # given: one good hour file, a stray text file, an empty file, a corrupt gzip; the catalog,
    # the manifest and Spark's _SUCCESS marker are not event files
    raw = tmp_path / "raw"
    day = raw / "events" / "2026-10-02"
    day.mkdir(parents=True)
    (day / "10.jsonl").write_text(_event_lines(3, 1790935200000))
    (day / "notes.txt").write_text("delivered by ftp\n")
    (day / "12.jsonl").write_bytes(b"")
    (day / "_SUCCESS").write_bytes(b"")
    (raw / "items.jsonl").write_text('{"item_id":"N0","title":"t"}\n')
    (raw / "manifest.json").write_text("{}")
    cfg = make_config(tmp_path / "lake", raw)
    # when / then: by default the batch stops, naming the files, and nothing is written
    with pytest.raises(IngestError) as err:
        run_ingest(cfg, spark, input_dir=str(raw), batch_id="mixed")
    assert "2 file(s) that ingest does not read" in str(err.value)
    assert "notes.txt (unknown extension: ingest.format=jsonl reads .jsonl" in str(err.value)
    assert "12.jsonl (empty file)" in str(err.value) and "_SUCCESS" not in str(err.value)
    assert not (tmp_path / "lake").exists()

    # given: a corrupt gzip too (found while reading)
    (day / "11.jsonl.gz").write_bytes(gzip.compress(_event_lines(5, 1790938800000).encode())[:-9])
    (day / "notes.txt").unlink()
    (day / "12.jsonl").unlink()
    with pytest.raises(IngestError, match=r"11\.jsonl\.gz \(unreadable gzip: "):
        run_ingest(cfg, spark, input_dir=str(raw), batch_id="mixed")
    assert not (tmp_path / "lake").exists()

    # when: skipping them
    (day / "notes.txt").write_text("delivered by ftp\n")
    skip = make_config(tmp_path / "lake", raw, ingest={"unknown_files": "skip"})
    s = run_ingest(skip, spark, input_dir=str(raw), batch_id="mixed")
    # then: the good file is ingested and the others are listed, in the summary and in ops.runs
    assert (s["files"], s["input_records"], s["accepted"]) == (1, 3, 3)
    assert {f.rsplit("/", 1)[-1]: why.split(":")[0] for f, why in s["files_not_read"].items()} == {
        "notes.txt": "unknown extension",
        "11.jsonl.gz": "unreadable gzip",
    }
    (run,) = _runs(open_lake(skip, spark))
    assert run["files_not_read"] == s["files_not_read"] and run["_status"] == "ok"


def test_no_event_files_error_names_the_formats_and_the_setting_that_reads_the_others(spark, tmp_path):
    # given: a folder of CSV logs, ingested with the default jsonl format
    day = tmp_path / "raw" / "events" / "2026-10-02"
    day.mkdir(parents=True)
    (day / "10.csv.gz").write_bytes(gzip.compress(b"user_id,item_id\nU1,N1\n"))
    (day / "11.csv").write_text("user_id,item_id\nU1,N1\n")
    cfg = make_config(tmp_path / "lake", tmp_path / "raw")
    # when
    with pytest.raises(IngestError) as err:
        run_ingest(cfg, spark, input_dir=str(tmp_path / "raw"))
    # then
    msg = str(err.value)
    assert "no event files under" in msg and "\n" not in msg
    assert "ingest.format=jsonl reads .jsonl, .json, .jsonl.gz, .json.gz" in msg
    assert "found 2 other file(s): 10.csv.gz, 11.csv" in msg
    assert "--set ingest.format=csv reads .csv, .csv.gz" in msg


def _click_log(n=300):
    """A click-only log as a news portal delivers it: session, padded ids, epoch-ms time."""
    start = 1790935200000  # 2026-10-02T10:00:00Z
    return [(f"S{i // 4}", f" {i % 37:05d} ", f" A{i % 53:04d}", start + i * 1500) for i in range(n)]


def _write_click_csv(folder, rows):
    folder.mkdir(parents=True)
    lines = ["session,user,article,time_ms\n"] + [f"{s},{u},{a},{t}\n" for s, u, a, t in rows]
    half = len(lines) // 2
    (folder / "10.csv.gz").write_bytes(gzip.compress("".join(lines[:half]).encode()))
    (folder / "11.csv").write_text(lines[0] + "".join(lines[half:]))


def test_a_click_log_without_event_type_fails_with_the_reason_and_a_constant_maps_it(spark, tmp_path, capsys):
    # given: a click-only CSV log (gzip and plain), no event-type column, epoch-ms timestamps
    rows = _click_log()
    raw = tmp_path / "raw"
    _write_click_csv(raw / "events" / "2026-10-02", rows)
    lake_root = tmp_path / "lake"
    mapping = [
        "ingest.format=csv",
        "ingest.column_mapping.user_id=user",
        "ingest.column_mapping.item_id=article",
        "ingest.column_mapping.session_id=session",
        "ingest.column_mapping.request_id=session",
        "ingest.column_mapping.ts={column: time_ms, unit: ms}",
    ]
    argv = ["ingest", "--input", str(raw), "--batch-id", "clicks", "--set", f"lake.root={lake_root}"]
    for m in mapping:
        argv += ["--set", m]
    # when: no mapping for event_type
    rc = main(argv)
    # then: exit 2 with the top quarantine reason and its count; only the attempt is recorded
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2
    assert "0 of 300 input records (0.0%) passed validation" in err
    assert "missing_field 300 (most often 'missing or empty: event_type': 300)" in err
    cfg = make_config(lake_root, raw)
    lake = open_lake(cfg, spark)
    assert lake.list_tables() == [C.OPS_RUNS]
    (run,) = lake.read(C.OPS_RUNS).collect()
    assert (run.status, run.quarantined) == ("failed", {"missing_field": 300})

    # when: the same log with event_type set to a constant
    rc = main([*argv, "--set", "ingest.column_mapping.event_type={const: click}"])
    # then: every click is accepted, ids trimmed, the epoch-ms time and the session as request id
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    assert (out["input_records"], out["accepted"], out["quarantined"], out["files"]) == (300, 300, 0, 2)
    key = cfg.pseudonym_key()
    expected = lake.spark.createDataFrame(
        [
            (
                pseudonymize_py(u.strip(), key),
                a.strip(),
                "click",
                dt.datetime.fromtimestamp(t / 1000, dt.UTC).replace(tzinfo=None),
                s,
                s,
            )
            for s, u, a, t in rows
        ],
        "user_id string, item_id string, event_type string, event_ts timestamp, "
        "session_id string, request_id string",
    )
    got = lake.read(C.SILVER_EVENTS).select(*expected.columns)
    assertDataFrameEqual(got, expected)
    assert sorted(r.status for r in lake.read(C.OPS_RUNS).collect()) == ["failed", "ok"]


def test_the_ingest_command_fails_on_a_folder_without_event_files(spark, tmp_path, capsys):
    """Through the stage planner (the CLI/daily path), not only run_ingest: exit 2, one line."""
    # given: a landing folder holding only CSV logs, read with the default jsonl format
    day = tmp_path / "raw" / "events" / "2026-10-02"
    day.mkdir(parents=True)
    (day / "11.csv").write_text("user_id,item_id\nU1,N1\n")
    argv = ["ingest", "--input", str(tmp_path / "raw"), "--set", f"lake.root={tmp_path / 'lake'}"]
    # when
    rc = main([*argv, "--date", "2026-10-05"])
    # then
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2
    assert "no event files under" in err and "--set ingest.format=csv reads .csv" in err
    # and a stray file outside the day folders stops a folder that has event files too
    (day / "10.jsonl").write_text('{"user_id": "U1", "item_id": "N1", "event_type": "click", "ts": 1}\n')
    rc = main([*argv, "--date", "2026-10-05"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "11.csv" in err and "ingest.unknown_files=skip" in err
