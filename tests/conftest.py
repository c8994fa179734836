"""One Spark session for the whole test run (conventions.md #6); per-test tables in tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` next to the checkout, or $RECPIPE_SHARED_DATA."""
    env = os.environ.get("RECPIPE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    from recpipe.spark import DEFAULT_CONF, LOCAL_DEFAULT_CONF, REQUIRED_CONF

    tmp = tmp_path_factory.mktemp("spark")
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("recpipe-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        # The full suite runs backfills, crash reruns and the click-only MIND run in one session:
        # 1 GB, then 4 GB of driver heap ran out there (recommend's broadcasts failed in
        # test_recommend after 20 minutes of earlier tests; it passed alone).
        .config("spark.driver.memory", "6g")
        # One session runs ~300 tests: keep the status store small (SQL plan metrics of every
        # execution piled up to ~700k objects) so the heap is left to broadcasts and caches.
        .config("spark.sql.ui.retainedExecutions", "20")
        .config("spark.ui.retainedJobs", "50")
        .config("spark.ui.retainedStages", "50")
        .config("spark.ui.retainedTasks", "2000")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.local.dir", str(tmp / "local"))
        .config("spark.sql.warehouse.dir", str(tmp / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={tmp}")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    # The same settings the lake layer relies on in every environment, and a local session's
    # defaults (recpipe.spark).
    for key, value in {**DEFAULT_CONF, **LOCAL_DEFAULT_CONF, **REQUIRED_CONF}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module", autouse=True)
def _release_cached_frames():
    """Frames a module's tests or fixtures cached are dropped when the module ends: the shared
    session must not carry every module's caches into the next one."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.catalog.clearCache()


def make_config(lake_root, raw_dir, **sections):
    """A validated Config for tests: local mode, the given lake root and raw folder."""
    from recpipe.config import config_from_dict

    data = {
        "mode": "local",
        "lake": {"root": str(lake_root)},
        "data": {"source": "raw", "raw_dir": str(raw_dir)},
        "privacy": {"allow_dev_key": True},
        "spark": {"show_progress": False},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_dict(data, file="<tests>")


@pytest.fixture(scope="session")
def synthetic_lake(spark, tmp_path_factory):
    """Small synthetic logs (20k events, 14 days) ingested once into a lake shared by tests.

    Returns ``(cfg, lake, raw_dir, manifest)``. Tests may add gold tables; tests that damage
    tables must build their own lake.
    """
    import json

    from recpipe.datasets.synthetic import generate
    from recpipe.events.ingest import run_ingest
    from recpipe.lake import open_lake

    base = tmp_path_factory.mktemp("synthetic")
    raw = base / "raw"
    generate(raw, events=20_000, seed=3)
    cfg = make_config(base / "lake", raw)
    lake = open_lake(cfg, spark)
    run_ingest(cfg, spark, input_dir=str(raw), batch_id="synthetic-test", lake=lake)
    manifest = json.loads((raw / "manifest.json").read_text())
    return cfg, lake, raw, manifest
