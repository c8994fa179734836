"""`recpipe stream`: Structured Streaming over the landing folder, into the batch ingest's tables.

One tiny generated world (one day, hourly files) is shared by the tests; each test streams it into
its own lake. The stream's counts and stored events must equal one batch ingest of the same files;
a second `--once` finds nothing new; files landing later are ingested once; a stream killed in the
middle of a micro-batch (``RECPIPE_FAULT``, ``os._exit(137)`` as ``kill -9``) and restarted ends
with exactly the uninterrupted run's events and profiles.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe import faults
from tests.conftest import make_config

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    """A landing folder: one day of hourly JSONL files (dirty: duplicates, bad records) + catalog."""
    from recpipe.datasets.synthetic import generate

    raw = tmp_path_factory.mktemp("stream") / "raw"
    generate(raw, events=3000, seed=9, start=dt.date(2026, 10, 1), days=1)
    return raw


def _cfg(tmp_path, raw, **stream):
    return make_config(
        tmp_path / "lake",
        raw,
        stream={"update_profiles": False, **stream},
        quality={"fail_on_critical": True},
    )


def _records(path: Path) -> int:
    """The records of a JSONL file as ingest counts them (one per line, blank ones included)."""
    lines = path.read_bytes().split(b"\n")
    return len(lines) - (lines[-1] == b"")


def _silver_ids(lake):
    return {r[0] for r in lake.read(C.SILVER_EVENTS).select(C.EVENT_ID).collect()}


@pytest.fixture(scope="module")
def batch_reference(spark, landing, tmp_path_factory):
    """The same files ingested by batch ingest as one batch: (summary, event ids)."""
    from recpipe.events.ingest import run_ingest
    from recpipe.lake import open_lake

    cfg = make_config(tmp_path_factory.mktemp("batch") / "lake", landing)
    lake = open_lake(cfg, spark)
    summary = run_ingest(cfg, spark, input_dir=str(landing), batch_id="reference", lake=lake)
    return summary, _silver_ids(lake)


def test_once_ingests_every_file_as_batch_ingest_does_then_finds_nothing_new(
    spark, landing, batch_reference, tmp_path
):
    from recpipe.events.stream import run_stream
    from recpipe.lake import open_lake

    ref, ref_ids = batch_reference
    cfg = _cfg(tmp_path, landing, max_files_per_trigger=10)
    lake = open_lake(cfg, spark)
    out = run_stream(cfg, spark, str(landing), once=True, lake=lake)
    files = len(list((landing / "events").rglob("*.jsonl")))
    assert out["micro_batches"] == -(-files // 10) > 1
    for key in ("input_records", "accepted", "duplicates", "quarantined", "files", "quarantined_by_reason"):
        assert out[key] == ref[key], key
    # (late_events may differ: of an event delivered twice the stream keeps the delivery that
    # landed first, by modification time, where one batch keeps the first by file name)
    assert _silver_ids(lake) == ref_ids
    # the catalog came with the first micro-batch only
    assert out["batches"][0]["items"]["upserted"] > 0
    assert all(b["items"] is None for b in out["batches"][1:])
    assert lake.row_count(C.SILVER_ITEMS) == ref["items"]["upserted"]
    # every micro-batch has its ops.runs row, with its stream position
    runs = lake.read(C.OPS_RUNS).where(F.col(C.BATCH_ID).startswith("stream-")).collect()
    assert sorted(json.loads(r["summary_json"])["stream"]["micro_batch"] for r in runs) == list(
        range(out["micro_batches"])
    )

    versions = {t: lake.version(t) for t in (C.SILVER_EVENTS, C.BRONZE_EVENTS_RAW, C.OPS_RUNS)}
    again = run_stream(cfg, spark, str(landing), once=True, lake=lake)
    assert again["micro_batches"] == 0 and again["accepted"] == 0
    assert {t: lake.version(t) for t in versions} == versions


def test_files_landing_later_are_ingested_once_and_redeliveries_count_as_duplicates(spark, landing, tmp_path):
    from recpipe.events.stream import run_stream
    from recpipe.lake import open_lake

    raw = tmp_path / "raw"
    (raw / "events" / "2026-10-01").mkdir(parents=True)
    hours = sorted((landing / "events" / "2026-10-01").glob("*.jsonl"))
    shutil.copy(hours[0], raw / "events" / "2026-10-01" / hours[0].name)
    cfg = _cfg(tmp_path, raw)
    lake = open_lake(cfg, spark)
    first = run_stream(cfg, spark, str(raw), once=True, lake=lake)
    assert first["micro_batches"] == 1 and first["files"] == 1 and first["accepted"] > 0

    # a new hour (gzip) and the first hour delivered again under another name
    with (
        open(hours[1], "rb") as src,
        gzip.open(raw / "events" / "2026-10-01" / f"{hours[1].name}.gz", "wb") as dst,
    ):
        dst.write(src.read())
    shutil.copy(hours[0], raw / "events" / "2026-10-01" / f"redelivered-{hours[0].name}")
    (raw / "events" / "2026-10-01" / "_partial.jsonl").write_text('{"half a rec')  # still being written
    second = run_stream(cfg, spark, str(raw), once=True, lake=lake)
    assert second["files"] == 2
    assert second["duplicates"] >= first["accepted"]  # every event of the redelivered file
    n_new = _records(hours[1])
    assert second["input_records"] == first["input_records"] + n_new
    total = lake.row_count(C.SILVER_EVENTS)
    assert total == first["accepted"] + second["accepted"]
    assert lake.read(C.SILVER_EVENTS).select(C.EVENT_ID).distinct().count() == total


def test_a_file_ingest_does_not_read_stops_the_stream_in_one_line_or_is_listed(
    spark, landing, tmp_path, capsys
):
    from recpipe.cli import main

    raw = tmp_path / "raw"
    (raw / "events").mkdir(parents=True)
    hour = sorted((landing / "events" / "2026-10-01").glob("*.jsonl"))[0]
    shutil.copy(hour, raw / "events" / hour.name)
    (raw / "events" / "notes.txt").write_text("not events")
    args = ["stream", "--once", "--input", str(raw), "--set", f"lake.root={tmp_path / 'lake'}"]
    args += ["--set", "data.source=raw", "--set", "stream.update_profiles=false", "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "notes.txt (unknown extension" in err[0] and "ingest.unknown_files=skip" in err[0]
    )

    assert main([*args, "--set", "ingest.unknown_files=skip", "--set", "stream.name=second"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["files"] == 1 and out["accepted"] > 0
    assert list(out["files_not_read"]) == [str(raw / "events" / "notes.txt")]


def test_continuous_mode_picks_up_a_file_that_lands_while_it_runs(spark, landing, tmp_path):
    from recpipe.events.stream import run_stream
    from recpipe.lake import open_lake

    raw = tmp_path / "raw"
    day = raw / "events" / "2026-10-01"
    day.mkdir(parents=True)
    hours = sorted((landing / "events" / "2026-10-01").glob("*.jsonl"))
    shutil.copy(hours[0], day / hours[0].name)
    cfg = _cfg(tmp_path, raw, trigger_seconds=1)
    lake = open_lake(cfg, spark)

    def land_later():
        # atomically, as the README asks: write a hidden name, then rename
        deadline = time.time() + 120
        while time.time() < deadline and not lake.exists(C.OPS_RUNS):
            time.sleep(0.5)
        shutil.copy(hours[1], day / f".{hours[1].name}")
        os.rename(day / f".{hours[1].name}", day / hours[1].name)

    t = threading.Thread(target=land_later, daemon=True)
    t.start()
    out = run_stream(cfg, spark, str(raw), once=False, max_batches=2, lake=lake)
    t.join(timeout=5)
    assert out["mode"] == "continuous"
    assert [b["files"] for b in out["batches"]] == [1, 1]
    assert out["input_records"] == sum(_records(h) for h in hours[:2])


# -- kill in the middle of a micro-batch, restart ---------------------------------------------------
def _stream_cmd(conf: Path, raw: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "jobs" / "stream.py"),
        "--conf",
        str(conf),
        "--once",
        "--input",
        str(raw),
    ]


def _conf_file(tmp_path: Path, lake: Path, raw: Path) -> Path:
    conf = tmp_path / f"conf-{lake.name}.yaml"
    conf.write_text(
        json.dumps(
            {
                "mode": "local",
                "spark": {
                    "master": "local[2]",
                    "log_level": "ERROR",
                    "show_progress": False,
                    "conf": {
                        "spark.sql.shuffle.partitions": 2,
                        "spark.default.parallelism": 2,
                        "spark.ui.enabled": False,
                        "spark.sql.session.timeZone": "UTC",
                    },
                },
                "lake": {"root": str(lake)},
                "data": {"source": "raw", "raw_dir": str(raw)},
                "privacy": {"allow_dev_key": True},
                "stream": {"max_files_per_trigger": 12},
            }
        )
    )
    return conf


def _run(cmd, fault: str | None, fault_log: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (faults.ENV, faults.LOG_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "libs"), env.get("PYTHONPATH", "")])
    if fault:
        env[faults.ENV] = fault
    if fault_log:
        env[faults.LOG_ENV] = str(fault_log)
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)


def _norm(value):
    """Floats to 12 significant digits (sums may associate differently), maps as sorted dicts."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _profiles(lake):
    """Every profile row but the columns naming the attempt, by user."""
    drop = {"updated_at", C.BATCH_ID}
    rows = lake.read(C.GOLD_USER_PROFILES).collect()
    return {
        r[C.USER_ID]: {k: _norm(v) for k, v in r.asDict(recursive=True).items() if k not in drop}
        for r in rows
    }


@pytest.mark.slow
def test_a_stream_killed_in_the_middle_of_micro_batches_and_restarted_loses_and_duplicates_nothing(
    spark, landing, tmp_path
):
    from recpipe.lake import open_lake

    # uninterrupted run, listing the fault points it passes
    ref_lake = tmp_path / "ref"
    points = tmp_path / "points.log"
    done = _run(_stream_cmd(_conf_file(tmp_path, ref_lake, landing), landing), None, points)
    assert done.returncode == 0, done.stderr[-2000:]
    ref = json.loads(done.stdout.strip().splitlines()[-1])
    assert ref["micro_batches"] == 2 and ref["profiles_updated"] > 0
    log = [line.split(maxsplit=1) for line in points.read_text().splitlines()]
    # Kill 1 (a fresh run): right after the second micro-batch committed its events to
    # silver.events (its ops.runs row and its profile merge not done).
    silver = [i for i, (hit, table) in enumerate(log) if ":commit#" in hit and table == C.SILVER_EVENTS]
    assert len(silver) == 2
    first_kill = log[silver[1]][0]
    # Kill 2 (the restart, which replays that micro-batch: its done commits are skipped and reach
    # no point): when the profile merge's files are written and not committed.
    after = log[silver[1] + 1 :]
    k = next(
        n
        for n, (hit, table) in enumerate((h, t) for h, t in after if ":write#" in h)
        if table == C.GOLD_USER_PROFILES
    )
    kills = [first_kill, f"stream:write#{k + 1}"]

    lake_dir = tmp_path / "killed"
    conf = _conf_file(tmp_path, lake_dir, landing)
    for point in kills:
        killed = _run(_stream_cmd(conf, landing), point)
        assert killed.returncode == faults.EXIT_CODE, (point, killed.stderr[-2000:])
        assert f"fault injected at {point}" in killed.stderr
    final = _run(_stream_cmd(conf, landing), None)
    assert final.returncode == 0, final.stderr[-2000:]

    ref_l = open_lake(make_config(ref_lake, landing), spark)
    got_l = open_lake(make_config(lake_dir, landing), spark)
    ids = got_l.read(C.SILVER_EVENTS).select(C.EVENT_ID)
    assert ids.count() == ids.distinct().count() == ref["accepted"]
    assert _silver_ids(got_l) == _silver_ids(ref_l)
    assert (
        got_l.row_count(C.BRONZE_EVENTS_RAW) == ref_l.row_count(C.BRONZE_EVENTS_RAW) == ref["input_records"]
    )
    assert _profiles(got_l) == _profiles(ref_l)
