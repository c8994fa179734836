"""The crash hook: RECPIPE_FAULT=stage:point[#n] ends the process at exactly that hit, like kill -9."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from recpipe import faults

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import sys
    from recpipe import faults

    faults.enter("ingest")
    try:
        for table in ("bronze.events_raw", "silver.events"):
            faults.point("write", table)
            print("committed", table, flush=True)
            faults.point("commit", table)
        faults.point("runs", "ops.runs")
    finally:
        print("finally ran", flush=True)  # os._exit skips it, as kill -9 would
    print("done", flush=True)
    """
)


def run_script(tmp_path, fault: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECPIPE_FAULT")}
    env[faults.LOG_ENV] = str(tmp_path / "points.log")
    if fault is not None:
        env[faults.ENV] = fault
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)


def test_parse_accepts_stage_point_and_hit_number():
    assert faults.parse("ingest:write") == ("ingest", "write", 1)
    assert faults.parse("features:commit#2") == ("features", "commit", 2)


@pytest.mark.parametrize("spec", ["ingest", "ingest:explode", ":write", "ingest:write#0", "ingest:write#x"])
def test_parse_rejects_a_malformed_spec_naming_it(spec):
    with pytest.raises(ValueError, match="RECPIPE_FAULT="):
        faults.parse(spec)


def test_no_fault_runs_to_the_end_and_logs_every_point(tmp_path):
    proc = run_script(tmp_path, None)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == "done"
    assert (tmp_path / "points.log").read_text().splitlines() == [
        "ingest:write#1 bronze.events_raw",
        "ingest:commit#1 bronze.events_raw",
        "ingest:write#2 silver.events",
        "ingest:commit#2 silver.events",
        "ingest:runs#1 ops.runs",
    ]


@pytest.mark.parametrize(
    ("fault", "printed"),
    [
        ("ingest:write#1", []),
        ("ingest:commit#1", ["committed bronze.events_raw"]),
        ("ingest:write#2", ["committed bronze.events_raw"]),
        ("ingest:runs", ["committed bronze.events_raw", "committed silver.events"]),
    ],
)
def test_fault_exits_137_at_that_hit_without_running_finally(tmp_path, fault, printed):
    proc = run_script(tmp_path, fault)

    assert proc.returncode == faults.EXIT_CODE
    assert proc.stdout.splitlines() == printed
    assert f"fault injected at {fault.split('#')[0]}" in proc.stderr


def test_fault_of_another_stage_does_not_fire(tmp_path):
    proc = run_script(tmp_path, "features:write")

    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "done"


def test_malformed_fault_fails_when_the_stage_starts(monkeypatch):
    monkeypatch.setenv(faults.ENV, "ingest:nowhere")
    with pytest.raises(ValueError, match="ingest:nowhere"):
        faults.enter("ingest")
