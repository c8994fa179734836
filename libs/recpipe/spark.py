"""Build the Spark session from configuration."""

from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

from recpipe.config import Config

log = logging.getLogger(__name__)

# Settings the lake layer relies on, whatever the environment.
REQUIRED_CONF = {
    # Delta readers expect INT64 microsecond timestamps, not Spark's legacy INT96.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
    # Staging folders are renamed by the driver; no _SUCCESS marker needed inside tables.
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.hadoop.parquet.enable.summary-metadata": "false",
}


def build_session(cfg: Config, app_suffix: str | None = None) -> SparkSession:
    """A session named and configured from ``cfg``.

    The master is set here only in local mode (``conf/local.yaml``); on a cluster spark-submit
    decides. In local mode the Python workers run this interpreter, so they see the same packages.
    """
    name = cfg.spark.app_name + (f"-{app_suffix}" if app_suffix else "")
    builder = SparkSession.builder.appName(name)
    if cfg.mode == "local":
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        # TensorFlow in the Python workers (scoring, Horovod ranks): warnings and errors only.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        builder = builder.master(cfg.spark.master)
    conf = {**cfg.spark.conf, **REQUIRED_CONF}
    conf.setdefault("spark.ui.showConsoleProgress", str(cfg.spark.show_progress).lower())
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    log.info("spark session %s (master %s, spark %s)", name, spark.sparkContext.master, spark.version)
    return spark
