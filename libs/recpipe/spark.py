"""Build the Spark session from configuration."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyspark import SparkContext
from pyspark.sql import SparkSession

from recpipe.config import Config, ConfigError

log = logging.getLogger(__name__)

# Settings the lake layer relies on, whatever the environment.
REQUIRED_CONF = {
    # Delta readers expect INT64 microsecond timestamps, not Spark's legacy INT96.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
    # Staging folders are renamed by the driver; no _SUCCESS marker needed inside tables.
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    # No _metadata/_common_metadata summary files. (parquet.enable.summary-metadata, the older
    # name, makes ParquetOutputFormat log a deprecation warning for every write job.)
    "spark.hadoop.parquet.summary.metadata.level": "NONE",
}

# Defaults a configuration may override. A lake read names every data file of the snapshot;
# beyond 32 paths Spark checks them in a listing job of one task per file (up to 10,000): on
# a silver.events of 4,000 files every read cost ~8 s of task scheduling in local mode. 32 tasks
# keep the listing distributed on a cluster (object stores) at ~1 s; in local mode the driver
# lists them itself (~0.7 s), as there is no one to distribute to.
DEFAULT_CONF = {"spark.sql.sources.parallelPartitionDiscovery.parallelism": "32"}
LOCAL_DEFAULT_CONF = {"spark.sql.sources.parallelPartitionDiscovery.threshold": "100000"}


# Memory sizes the launcher copies into JVM options (-Xmx) before any Spark code can check them: a bad
# value ends the JVM with "Invalid maximum heap size" and PySpark's JAVA_GATEWAY_EXITED, which name
# no key. The documented format: a number with a k/m/g/t suffix.
LAUNCH_MEMORY_KEYS = ("spark.driver.memory",)
_JVM_MEMORY = re.compile(r"[1-9][0-9]*[kmgt]", re.IGNORECASE)


def check_launch_conf(conf: Mapping[str, str], file: str) -> None:
    """Raise :class:`ConfigError` for a launch-time value the JVM would refuse to start with."""
    for key in LAUNCH_MEMORY_KEYS:
        value = conf.get(key)
        if value is not None and not _JVM_MEMORY.fullmatch(value):
            raise ConfigError(
                f"{file}: key 'spark.conf.{key}' must be a JVM memory size such as 512m or 4g, got {value!r}"
            )


def check_spark_conf(jvm: Any, conf: Mapping[str, str], file: str) -> None:
    """Parse every value of ``conf`` with Spark's own definition of its key (type, range, enum),
    as Spark would only on first use (a bad ``spark.sql.shuffle.partitions`` fails the first
    query with a Java stack trace); raise :class:`ConfigError` naming the key. Keys Spark does
    not define (plugins, ``spark.hadoop.*``) are passed on as given."""
    # Loading SQLConf registers the spark.sql.* definitions (it touches no session state).
    jvm.java.lang.Class.forName("org.apache.spark.sql.internal.SQLConf$")
    entries = jvm.org.apache.spark.internal.config.ConfigEntry
    for key, value in conf.items():
        entry = entries.findEntry(key)
        if entry is None:
            continue
        try:
            entry.valueConverter().apply(value)
        except Exception as exc:  # py4j raises Py4JJavaError or PySpark's converted Java exception
            raise ConfigError(
                f"{file}: key 'spark.conf.{key}': Spark rejects {value!r}: {java_reason(exc)}"
            ) from None


def java_reason(exc: BaseException) -> str:
    """The first line of a Java exception's message, without PySpark's SQLSTATE suffix."""
    java = getattr(exc, "java_exception", None)
    text = str(java.getMessage()) if java is not None else str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return re.sub(r"\s*SQLSTATE: \w+$", "", lines[0]) if lines else type(exc).__name__


LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")

# Where the image has Spark's GPU discovery script (deploy/gpu/discover-gpus.sh; deploy/docker/Dockerfile).
GPU_DISCOVERY_SCRIPT = "/opt/recpipe/gpu/discover-gpus.sh"


def gpu_conf(cfg: Config) -> dict[str, str]:
    """Spark's GPU resource requests for ``train.gpus_per_worker`` > 0 on a cluster: that many GPUs
    per executor, one per task (so one Horovod rank per GPU), found by the discovery script, from
    Kubernetes' ``nvidia.com`` device plugin. They apply to every task of the application (Spark
    runs at most ``gpus_per_worker`` tasks at a time on an executor). Local mode: none (Spark does
    not schedule GPUs there; the ranks still use the GPUs TensorFlow sees)."""
    n = cfg.train.gpus_per_worker
    if n <= 0 or cfg.mode != "cluster":
        return {}
    return {
        "spark.executor.resource.gpu.amount": str(n),
        "spark.task.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": GPU_DISCOVERY_SCRIPT,
        "spark.executor.resource.gpu.vendor": "nvidia.com",
    }


def session_conf(cfg: Config) -> dict[str, str]:
    """The conf the session is built with: :data:`DEFAULT_CONF` (and in local mode
    :data:`LOCAL_DEFAULT_CONF`) and :func:`gpu_conf`, then ``spark.conf`` (which wins over them),
    then :data:`REQUIRED_CONF`; in local mode the log4j2 file on the driver's JVM options."""
    defaults = {**DEFAULT_CONF, **(LOCAL_DEFAULT_CONF if cfg.mode == "local" else {})}
    conf = {**defaults, **gpu_conf(cfg), **cfg.spark.conf, **REQUIRED_CONF}
    if cfg.mode == "local":
        conf["spark.driver.extraJavaOptions"] = local_java_options(conf)
    conf.setdefault("spark.ui.showConsoleProgress", str(cfg.spark.show_progress).lower())
    return conf


def local_java_options(conf: Mapping[str, str]) -> str:
    """``spark.driver.extraJavaOptions`` of a local session: the configured options plus
    recpipe's log4j2 file (library noise off at the source), unless they name their own."""
    opts = conf.get("spark.driver.extraJavaOptions", "").strip()
    if "log4j2.configurationFile" in opts or "log4j.configurationFile" in opts:
        return opts
    return f"{opts} -Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}".strip()


def build_session(cfg: Config, app_suffix: str | None = None) -> SparkSession:
    """A session named and configured from ``cfg``.

    The master is set here only in local mode (``conf/local.yaml``); on a cluster spark-submit
    decides. In local mode the Python workers run this interpreter, so they see the same packages.
    A conf value Spark refuses is a :class:`ConfigError` naming the key (:func:`check_spark_conf`),
    raised before any job runs.
    """
    name = cfg.spark.app_name + (f"-{app_suffix}" if app_suffix else "")
    builder = SparkSession.builder.appName(name)
    if cfg.mode == "local":
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        # TensorFlow in the Python workers (scoring, Horovod ranks): warnings and errors only.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # One machine: bind to loopback (Spark warned "hostname resolves to a loopback address"
        # and picked an outside interface for a driver nothing outside talks to).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(cfg.spark.master)
    conf = session_conf(cfg)
    if cfg.mode == "local" and cfg.train.gpus_per_worker:
        log.info("train.gpus_per_worker ignored in local mode: Spark schedules GPUs only on a cluster")
    check_launch_conf(conf, cfg.source_file)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # py4j/PySpark wrap the Java error; name the key when a value caused it
        if SparkContext._jvm is not None:  # noqa: SLF001
            check_spark_conf(SparkContext._jvm, conf, cfg.source_file)  # noqa: SLF001
        raise RuntimeError(f"spark session did not start: {java_reason(exc)}") from exc
    check_spark_conf(spark.sparkContext._jvm, conf, cfg.source_file)  # noqa: SLF001
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    log.info("spark session %s (master %s, spark %s)", name, spark.sparkContext.master, spark.version)
    return spark
