"""Crash anywhere, rerun, same result: each stage is killed at its named points, rerun, and compared.

``RECPIPE_FAULT=stage:point#n`` (``recpipe.faults``) ends the stage's process with
``os._exit(137)`` (no cleanup, as ``kill -9``) at:

- ``write``: its first Parquet write of a data table, before the commit;
- ``between``: after the commit of its first data table, before the next table's commit (stages
  that commit two or more data tables);
- ``runs``: after its commits, before its ``ops.runs`` row.

One tiny world (synthetic logs shared by every test) is run stage by stage in this process; the
lake before and after each stage is kept: a test's starting point and its uninterrupted result.
A test copies the starting lake and runs ``jobs/<stage>.py --conf C --date D`` in a subprocess
killed at ``write``, reruns it killed at ``between``, reruns it killed at ``runs`` (each run a
rerun of the killed one), then reruns it to the end (in this process, through the same CLI entry),
and compares every table with the uninterrupted run: all rows (``assertDataFrameEqual``; columns
holding wall-clock times or attempt ids left out), no duplicate rows, and the files kept next to
the tables (the feature spec). ``ops.runs`` must equal the uninterrupted run's (a killed attempt
writes no row) but for the attempt's own versions and counts; ``ops.data_quality`` logs the checks of every attempt, so there the same checks
with the same results must be present. Train has its own kill-and-resume test (test_train.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import MapType
from pyspark.testing import assertDataFrameEqual

from recpipe import faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RUN_DATE = dt.date(2026, 10, 8)
STAGES = ["ingest", "features", "examples", "recommend"]
POINTS = ("write", "between", "runs")

# Columns whose value is a wall-clock time or an attempt's id: they differ between any two runs.
VOLATILE = {
    "run_id",
    "ingested_at",
    "updated_at",
    "generated_at",
    "checked_at",
    "created_at",
    "started_at",
    "finished_at",
    "duration_s",
    "summary_json",
}
# Attempt logs: one entry per attempt (ops.runs) or per check made (ops.data_quality).
ATTEMPT_LOGS = {"ops.runs", "ops.data_quality"}
# ops.runs columns about the attempt itself: table versions (a redone, identical commit is a new
# version) and key counts (what the attempt did: a rerun that finds the day's output committed, e.g.
# features, counts nothing).
RUNS_ATTEMPT_COLUMNS = {"table_versions", "input_versions", "counts"}

CONF = """
mode: local
spark:
  master: local[2]
  log_level: ERROR
  show_progress: false
  conf:
    spark.sql.shuffle.partitions: 2
    spark.default.parallelism: 2
    spark.ui.enabled: false
    spark.sql.session.timeZone: UTC
    spark.sql.execution.arrow.pyspark.enabled: true
lake:
  root: {lake}
data:
  source: raw
  raw_dir: {raw}
privacy:
  allow_dev_key: true
"""


def stage_args(stage: str, conf: Path, lake: Path) -> list[str]:
    return [stage, "--conf", str(conf), "--set", f"lake.root={lake}", "--date", RUN_DATE.isoformat()]


def run_in_process(stage: str, conf: Path, lake: Path, fault_log: Path | None = None) -> float:
    """The stage through the CLI entry in this process (the test session); returns seconds."""
    from recpipe.cli import main

    old = os.environ.pop(faults.ENV, None)
    if fault_log is not None:
        os.environ[faults.LOG_ENV] = str(fault_log)
    t0 = time.perf_counter()
    try:
        rc = main(stage_args(stage, conf, lake))
    finally:
        os.environ.pop(faults.LOG_ENV, None)
        if old is not None:
            os.environ[faults.ENV] = old
    assert rc == 0, f"recpipe {stage} failed (rc {rc})"
    return time.perf_counter() - t0


class World:
    """Raw logs, the config, and the lake before/after each stage of one uninterrupted day."""

    def __init__(self, base: Path) -> None:
        from recpipe.datasets.synthetic import generate

        self.base = base
        self.raw = base / "raw"
        # two days of logs before the run date: ingest has two batches (day folders); examples need
        # the second (features as of the first day are empty: no events before it)
        generate(self.raw, events=1500, seed=5, start=RUN_DATE - dt.timedelta(days=2), days=2)
        self.conf = base / "conf.yaml"
        self.conf.write_text(CONF.format(lake=base / "unused", raw=self.raw))
        self.points: dict[str, list[tuple[str, int, str]]] = {}
        self.done = 0

    def lake(self, i: int) -> Path:
        """The lake after the first ``i`` stages (built on first use, uninterrupted, in order)."""
        while self.done < i:
            stage = STAGES[self.done]
            before, after = self.base / f"lake-{self.done}", self.base / f"lake-{self.done + 1}"
            shutil.rmtree(after, ignore_errors=True)  # left by a failed earlier attempt
            if before.exists():
                shutil.copytree(before, after)
            log_file = self.base / f"points-{stage}.log"
            took = run_in_process(stage, self.conf, after, log_file)
            print(f"uninterrupted {stage}: {took:.1f}s", file=sys.stderr)
            self.points[stage] = []
            for line in log_file.read_text().splitlines():
                hit, _, detail = line.partition(" ")
                name, _, n = hit.split(":", 1)[1].partition("#")
                self.points[stage].append((name, int(n), detail))
            self.done += 1
        return self.base / f"lake-{i}"


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("crash"))


def points_of(points: list[tuple[str, int, str]]) -> tuple[str, ...]:
    """The kill points of a stage: ``between`` only when it commits two or more data tables (the
    examples stage commits one: it reads the feature tables and never writes them)."""
    data = {table for p, _, table in points if p == "commit" and table not in ATTEMPT_LOGS}
    return POINTS if len(data) >= 2 else tuple(p for p in POINTS if p != "between")


def crash_point(points: list[tuple[str, int, str]], point: str) -> str:
    """The ``RECPIPE_FAULT`` point for a case name, from the points of the uninterrupted run."""
    if point == "write":  # the first write of a data table
        return f"write#{next(n for p, n, table in points if p == 'write' and table not in ATTEMPT_LOGS)}"
    if point == "runs":
        assert ("runs", 1) in [(p, n) for p, n, _ in points], points
        return "runs#1"
    data = [(n, table) for p, n, table in points if p == "commit" and table not in ATTEMPT_LOGS]
    assert len({t for _, t in data}) >= 2, f"the stage commits fewer than two data tables: {points}"
    first_table = data[0][1]
    n = next(n for n, t in data if t == first_table)
    return f"commit#{n}"


def table_frame(spark, lake_root: Path, table: str):
    from recpipe.lake.deltars import DeltaRsLake

    df = DeltaRsLake(spark, str(lake_root)).read(table)
    drop = [c for c in df.columns if c in VOLATILE or (table == "ops.runs" and c in RUNS_ATTEMPT_COLUMNS)]
    df = df.drop(*drop)
    # maps as their sorted entries (set operations such as distinct() refuse map columns)
    maps = [f.name for f in df.schema.fields if isinstance(f.dataType, MapType)]
    return df.withColumns({c: F.to_json(F.array_sort(F.map_entries(c))) for c in maps})


def side_files(lake_root: Path) -> dict[str, bytes]:
    """Files kept inside table folders that are not Delta data or log files (the feature spec)."""
    out = {}
    for p in lake_root.rglob("*"):
        rel = p.relative_to(lake_root)
        if not p.is_file() or "_delta_log" in rel.parts or "_staging" in rel.parts:
            continue
        if p.name.endswith((".parquet", ".crc")) or rel.parts[0].startswith("_"):
            continue
        out[str(rel)] = p.read_bytes()
    return out


def normalized_json(data: bytes) -> object:
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(json.loads(data))


def assert_same_lake(spark, actual: Path, expected: Path) -> None:
    from recpipe.lake.deltars import DeltaRsLake

    tables = DeltaRsLake(spark, str(expected)).list_tables()
    assert DeltaRsLake(spark, str(actual)).list_tables() == tables
    for table in tables:
        got, want = table_frame(spark, actual, table), table_frame(spark, expected, table)
        if table == "ops.data_quality":
            # a log of the checks each attempt made; `details` holds the batch's time bounds
            got, want = (f.drop("table_version", "details").distinct() for f in (got, want))
        n, distinct = got.count(), got.distinct().count()
        assert n == distinct, f"{table}: {n - distinct} duplicate rows after the rerun"
        assertDataFrameEqual(got, want, checkRowOrder=False)
    got_files, want_files = side_files(actual), side_files(expected)
    assert sorted(got_files) == sorted(want_files)
    for name, data in want_files.items():
        if name.endswith(".json"):
            assert normalized_json(got_files[name]) == normalized_json(data), name
        else:
            assert got_files[name] == data, name


def table_versions(lake_root: Path) -> dict[str, int]:
    """Every table's latest version, read from the Delta logs (delta-rs, no Spark)."""
    from deltalake import DeltaTable

    return {
        f"{p.parent.parent.name}.{p.parent.name}": DeltaTable(str(p.parent)).version()
        for p in sorted(lake_root.glob("*/*/_delta_log"))
    }


def orphan_files(lake_root: Path, table: str) -> int:
    """Parquet files in ``table``'s folder that its latest snapshot does not reference."""
    from deltalake import DeltaTable

    folder = lake_root.joinpath(*table.split("."))
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*.parquet") if "_staging" not in p.parts}
    committed = set(DeltaTable(str(folder)).file_uris()) if (folder / "_delta_log").exists() else set()
    committed = {str(Path(u.removeprefix("file://")).relative_to(folder)) for u in committed}
    return len(on_disk - committed)


def crash(stage: str, fault: str, conf: Path, lake: Path, cwd: Path) -> tuple[str, float]:
    """Run ``jobs/<stage>.py`` with ``RECPIPE_FAULT=fault``; assert it died there; (table, seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECPIPE_FAULT")}
    env[faults.ENV] = fault
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / "jobs" / f"{stage}.py"), *stage_args(stage, conf, lake)[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
    )
    took = time.perf_counter() - t0
    assert proc.returncode == faults.EXIT_CODE, f"{fault}: rc {proc.returncode}\n{proc.stderr[-3000:]}"
    marker = f"fault injected at {fault} ("
    assert marker in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.split(marker, 1)[1].split(")", 1)[0], took


@pytest.mark.parametrize("stage", STAGES)
def test_stage_killed_at_each_point_reruns_to_the_uninterrupted_result(spark, world, tmp_path, stage):
    i = STAGES.index(stage) + 1
    expected = world.lake(i)  # the uninterrupted run, and the lake before it
    lake = tmp_path / "lake"
    # given: the lake as the day's earlier stages left it
    if world.lake(i - 1).exists():
        shutil.copytree(world.lake(i - 1), lake)

    # when: the stage's job is killed at each point in turn, every run a rerun of the killed one
    timings = {}
    for point in points_of(world.points[stage]):
        fault = f"{stage}:{crash_point(world.points[stage], point)}"
        before = table_versions(lake) if lake.exists() else {}
        table, timings[fault] = crash(stage, fault, world.conf, lake, tmp_path)
        after = table_versions(lake) if lake.exists() else {}
        if point == "write":
            # died with the Parquet files written and not committed: no data table changed
            assert {t: v for t, v in after.items() if t not in ATTEMPT_LOGS} == {
                t: v for t, v in before.items() if t not in ATTEMPT_LOGS
            }
            assert orphan_files(lake, table) > 0
        elif point == "between":
            assert after.get(table, -1) > before.get(table, -1), f"{table} was not committed"
    # ... then rerun without a fault
    timings["rerun"] = run_in_process(stage, world.conf, lake)
    print(f"{stage}: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()), file=sys.stderr)

    # then: every table as after the uninterrupted run, no duplicates
    assert_same_lake(spark, lake, expected)
