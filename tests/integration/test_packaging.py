"""The recpipe wheel works on its own: installed into a clean virtualenv, a job runs under spark-submit.

The clean venv gets the wheel plus its dependencies pinned to the versions of the running
environment (``pip freeze`` as constraints), so pip takes them from its cache (~/.cache/pip) when it
can. Measured here: wheel ~1 s, clean install ~35 s, ``spark-submit jobs/ingest.py`` on 2,000 events
~90 s (2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def java_home() -> str | None:
    """$JAVA_HOME, else the JDK of the ``java`` on PATH."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    return str(Path(java).resolve().parents[1]) if java else None


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    print(f"{time.perf_counter() - t0:6.1f}s  {' '.join(map(str, cmd))[:160]}", file=sys.stderr)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def clean_env(venv: Path) -> dict[str, str]:
    """An environment that cannot see the development venv: only the clean venv's bin on PATH."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = str(venv / "bin" / "python")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if java_home():
        env["JAVA_HOME"] = java_home()
    return env


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    # given: a wheel built from the working tree (no build isolation: offline, seconds)
    shutil.rmtree(REPO / "build" / "lib", ignore_errors=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            REPO,
            "-w",
            tmp / "dist",
        ],
        cwd=REPO,
    )
    (wheel,) = (tmp / "dist").glob("recpipe-*.whl")
    # and a clean venv (the base interpreter, no system site-packages) with the wheel and the
    # dependency versions of this environment
    freeze = run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).stdout
    constraints = tmp / "constraints.txt"
    constraints.write_text(
        "\n".join(line for line in freeze.splitlines() if line and not line.startswith(("#", "-e")))
    )
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv])
    env = clean_env(venv)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, "-c", constraints], env=env, cwd=tmp)
    return venv


def test_wheel_installs_clean_with_console_script(clean_venv, tmp_path):
    env = clean_env(clean_venv)
    proc = run(
        [
            clean_venv / "bin" / "python",
            "-c",
            "import recpipe.cli, recpipe.lake; print(recpipe.cli.__file__)",
        ],
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout.strip().startswith(str(clean_venv)), "recpipe must come from the clean venv"
    run([clean_venv / "bin" / "python", "-m", "pip", "check"], env=env, cwd=tmp_path)
    assert (clean_venv / "bin" / "recpipe").exists()
    assert (clean_venv / "bin" / "spark-submit").exists()


def test_ingest_job_runs_under_spark_submit(clean_venv, tmp_path):
    env = clean_env(clean_venv)
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    # given: a tiny synthetic data set, written by the installed console script
    run(
        [
            clean_venv / "bin" / "recpipe",
            "generate",
            "--conf",
            REPO / "conf/local.yaml",
            "--out",
            raw,
            "--events",
            "2000",
        ],
        env=env,
        cwd=tmp_path,
    )

    # when: the thin job runs through the clean venv's spark-submit on local[2]
    proc = run(
        [
            clean_venv / "bin" / "spark-submit",
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.ui.showConsoleProgress=false",
            REPO / "jobs" / "ingest.py",
            "--conf",
            REPO / "conf/local.yaml",
            "--set",
            f"lake.root={lake}",
            "--set",
            "spark.show_progress=false",
            "--input",
            raw,
            "--batch-id",
            "packaging-test",
        ],
        env=env,
        cwd=tmp_path,
        timeout=600,
    )

    # then: the JSON summary is the last stdout line (spark-submit merges the driver's stderr into
    # its stdout: PythonRunner redirectErrorStream), and Delta tables that delta-rs can open
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = json.loads((raw / "manifest.json").read_text())
    assert summary["job"] == "ingest"
    assert summary["batch_id"] == "packaging-test"
    assert summary["accepted"] == manifest["clean_events"]
    assert summary["quality"]["success"] is True
    from deltalake import DeltaTable

    events = DeltaTable(str(lake / "silver" / "events"))
    assert events.version() == 0
    assert events.to_pyarrow_dataset().count_rows() == manifest["clean_events"]
    assert DeltaTable(str(lake / "silver" / "items")).version() == 0
