"""All Delta Lake IO goes through this package (see ARCHITECTURE.md, "the lake layer")."""

from __future__ import annotations

from pyspark.sql import SparkSession

from recpipe.config import Config
from recpipe.lake.base import (
    CommitResult,
    ConcurrentCommitError,
    Lake,
    LakeError,
    SchemaMismatchError,
    Txn,
)

__all__ = [
    "CommitResult",
    "ConcurrentCommitError",
    "Lake",
    "LakeError",
    "SchemaMismatchError",
    "Txn",
    "delta_spark_available",
    "open_lake",
]


def delta_spark_available(spark: SparkSession) -> tuple[bool, str]:
    """Whether the Delta Lake Spark connector is on this session's classpath (and why not)."""
    try:
        # pyspark types _jvm as Optional (None only before a context starts; this one is running).
        spark.sparkContext._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]  # noqa: SLF001
    except Exception:  # py4j raises a generic Py4JJavaError wrapping ClassNotFoundException
        return False, "io.delta.tables.DeltaTable is not on the Spark classpath (no Delta jars)"
    ext = spark.conf.get("spark.sql.extensions", "") or ""
    if "io.delta.sql.DeltaSparkSessionExtension" not in ext:
        return False, "spark.sql.extensions does not include io.delta.sql.DeltaSparkSessionExtension"
    return True, "delta-spark connector loaded"


def open_lake(cfg: Config, spark: SparkSession) -> Lake:
    """The lake of ``cfg.lake`` with the configured backend (``auto`` prefers delta-spark)."""
    backend = cfg.lake.backend
    if backend in ("auto", "delta-spark"):
        ok, why = delta_spark_available(spark)
        if ok:
            from recpipe.lake.deltaspark import DeltaSparkLake

            return DeltaSparkLake(spark, cfg.lake.root, cfg.lake.commit_retries)
        if backend == "delta-spark":
            raise LakeError(f"lake.backend is delta-spark but {why} ({cfg.source_file})")
    from recpipe.lake.deltars import DeltaRsLake

    return DeltaRsLake(spark, cfg.lake.root, cfg.lake.commit_retries)
