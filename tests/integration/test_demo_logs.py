"""Issue 17: the demo's stderr reads as progress, not noise.

``recpipe run`` with the demo config (``conf/local.yaml``) on a small synthetic world (20k events,
the demo's 14 days) as a user runs it, in a subprocess: its stderr must hold no Python traceback,
no Java stack frame, no Spark/Parquet ``WARN`` line at all (the deprecated Parquet option, double
caching, windows without partitions, large task binaries, ...), no TensorFlow ``E`` line, no
netlib BLAS line and no progress bar; stdout ends with the usual JSON line. Noise counts are in
the assertion message. About 5 minutes on 2 cores, hence the ``e2e`` marker (``make test-e2e``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# The console script, as a user runs it (not `python -c`: pyspark.sql.connect takes a __main__
# without __file__ for its doctests and exits 0 when imported).
RECPIPE = str(Path(sys.executable).with_name("recpipe"))

# log4j's pattern (Spark's and recpipe's log4j2.properties): "26/12/02 15:24:41 WARN Logger: ..."
JAVA_WARN = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d WARN ")
JAVA_FRAME = re.compile(r"^\s*(\[\d+\]<stderr>:)?\s*at [\w$./<>-]+\(.*\)\s*$")
STAGE_LINE = re.compile(r"INFO recpipe\.stages\.contract: stage (\w+) .*: ok in ")


def noise_counts(stderr: str) -> dict[str, int]:
    """How many lines of each kind of noise ``stderr`` holds."""
    lines = stderr.splitlines()
    return {
        "python tracebacks": sum("Traceback (most recent call last)" in ln for ln in lines),
        "java stack frames": sum(bool(JAVA_FRAME.match(ln)) for ln in lines),
        # e.g. "Broadcasting large task binary" (recommend's candidate union carried every source's
        # plan until the sources were checkpointed), "Block rdd_... already exists".
        "java WARN lines": sum(bool(JAVA_WARN.match(ln)) for ln in lines),
        "progress bars": stderr.count("[Stage "),
        # "Unable to register cuFFT/cuDNN/cuBLAS factory": the full (CUDA) tensorflow package
        # installed over tensorflow-cpu by tf-keras' dependencies (setup-env.sh installs it --no-deps).
        "tensorflow E lines": sum("E external/local_xla" in ln for ln in lines),
        # ALS without a system BLAS/LAPACK (setup-env.sh installs libblas3/liblapack3).
        "netlib lines": sum(ln.startswith("netlib-") for ln in lines),
    }


def test_noise_counts_count_the_noise():
    sample = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "x.py", line 1, in <module>',
            "\tat org.apache.spark.SparkContext.runJob(SparkContext.scala:2517)",
            "\tat java.base/java.lang.Thread.run(Thread.java:840)",
            "26/12/02 15:25:42 WARN CacheManager: Asked to cache already cached data.",
            "26/12/02 15:46:56 WARN DAGScheduler: Broadcasting large task binary with size 1646.4 KiB",
            "[Stage 41:>                  (0 + 1) / 1]26/12/02 15:25:33 INFO x: y",
            "2026-12-02 15:24:48,397 INFO recpipe.spark: spark session (master local[2])",
            "2026-12-02 18:10:13.544999: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:485]"
            " Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when"
            " one has already been registered",
            "netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed: libblas.so.3: cannot open shared"
            " object file: No such file or directory",
        ]
    )
    assert noise_counts(sample) == {
        "python tracebacks": 1,
        "java stack frames": 2,
        "java WARN lines": 2,
        "progress bars": 1,
        "tensorflow E lines": 1,
        "netlib lines": 1,
    }


def test_demo_run_stderr_is_free_of_noise(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RECPIPE_FAULT", None)
    proc = subprocess.run(
        [RECPIPE, "run", "--conf", str(REPO / "conf" / "local.yaml")]
        + ["--set", "data.synthetic.events=20000"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the demo config's ./lakehouse and ./data/raw
        env=env,
        timeout=1500,
    )
    (tmp_path / "stderr.log").write_text(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = noise_counts(proc.stderr)
    warns = [ln for ln in proc.stderr.splitlines() if JAVA_WARN.match(ln)]
    message = (f"noise in the demo's stderr (log: {tmp_path / 'stderr.log'}): {counts}, WARN lines: ") + (
        "\n".join(sorted(set(re.sub(r"^\S+ \S+ ", "", w) for w in warns))[:20])
    )
    assert counts == dict.fromkeys(counts, 0), message
    # One progress line per stage, with its counts.
    stages = STAGE_LINE.findall(proc.stderr)
    assert {"ingest", "features", "examples", "train", "recommend", "evaluate"} <= set(stages), stages
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"mode", "run_dates", "generate", "days", "tables", "elapsed_s"} <= set(summary)
    day = summary["days"][summary["run_dates"][-1]]
    assert not [s for s in day if day[s]["status"] in ("failed", "skipped")], day
    assert day["train"]["status"] == "ok" and day["train"]["model_status"] == "current", day["train"]
