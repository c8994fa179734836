"""delta-spark backend: the same interface on Spark's Delta connector (clusters with the Delta jars).

Not exercised on machines without the jars (no Maven access); the contract tests run it wherever
:func:`recpipe.lake.delta_spark_available` is true and skip it, with that reason, elsewhere.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, DataFrameWriter
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from recpipe.frames import one_row
from recpipe.lake.base import CommitResult, Lake, LakeError, Txn, check_schema, stats_properties


class DeltaSparkLake(Lake):
    backend_name = "delta-spark"

    def _dt(self, table: str) -> Any:
        from delta.tables import DeltaTable

        return DeltaTable.forPath(self.spark, self.path(table))

    def exists(self, table: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, self.path(table))

    def version(self, table: str) -> int | None:
        if not self.exists(table):
            return None
        return int(self._dt(table).history(1).select("version").first()[0])

    def schema(self, table: str, version: int | None = None) -> StructType:
        return self.read(table, version).schema

    def read(self, table: str, version: int | None = None) -> DataFrame:
        if not self.exists(table):
            raise LakeError(f"table {table} does not exist at {self.path(table)}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(table))

    def txn_version(self, table: str, app_id: str) -> int | None:
        if not self.exists(table):
            return None
        # Delta's idempotent writes (txnAppId/txnVersion) are recorded as SetTransaction actions.
        log = self.spark.read.json(f"{self.path(table)}/_delta_log/*.json")
        if "txn" not in log.columns:
            return None
        row = one_row(log.where(F.col("txn.appId") == app_id).agg(F.max("txn.version")))
        return None if row[0] is None else int(row[0])

    def _writer(
        self, table: str, df: DataFrame, mode: str, partition_by: list[str] | None, txn: Txn | None
    ) -> DataFrameWriter:
        w = df.write.format("delta").mode(mode)
        if not self.exists(table):
            # "delta."-prefixed writer options become table properties of a new table.
            for key, value in stats_properties(df.columns).items():
                w = w.option(key, value)
        if partition_by:
            w = w.partitionBy(*partition_by)
        if txn is not None:
            w = w.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        return w

    def _done(self, table: str, txn: Txn | None) -> CommitResult | None:
        if txn is None:
            return None
        v = self.txn_version(table, txn.app_id)
        if v is not None and v >= txn.version:
            return CommitResult(
                table, self.version(table), False, skipped_reason=f"already committed by {txn}"
            )
        return None

    def _result(self, table: str, rows: int = 0, removed: int = 0) -> CommitResult:
        return CommitResult(table, self.version(table), True, rows_written=rows, rows_removed=removed)

    def append(
        self, table: str, df: DataFrame, partition_by: list[str] | None = None, txn: Txn | None = None
    ) -> CommitResult:
        if (done := self._done(table, txn)) is not None:
            return done
        if self.exists(table):
            check_schema(table, self.schema(table), df.schema)
        self._writer(table, df, "append", partition_by, txn).save(self.path(table))
        return self._result(table)

    def overwrite(
        self,
        table: str,
        df: DataFrame,
        partition_by: list[str] | None = None,
        partitions: dict[str, list[Any]] | None = None,
        txn: Txn | None = None,
        replace_schema: bool = False,
        add_columns: bool = False,
    ) -> CommitResult:
        if (done := self._done(table, txn)) is not None:
            return done
        w = self._writer(table, df, "overwrite", partition_by, txn)
        if add_columns and not replace_schema:
            # Delta's own schema evolution, bounded by ours: new columns only.
            if self.exists(table):
                check_schema(table, self.schema(table), df.schema, add_columns=True)
            w = w.option("mergeSchema", "true")
        if replace_schema:
            if partitions:
                raise LakeError(
                    f"overwrite of {table}: a new schema replaces the whole table, not partitions"
                )
            w = w.option("overwriteSchema", "true")
        if partitions:
            cond = " AND ".join(
                f"`{c}` IN ({','.join(repr(str(v)) for v in vals)})" for c, vals in partitions.items()
            )
            w = w.option("replaceWhere", cond)
        w.save(self.path(table))
        return self._result(table)

    def insert_new(
        self,
        table: str,
        df: DataFrame,
        keys: list[str],
        partition_by: list[str] | None = None,
        txn: Txn | None = None,
        add_columns: bool = False,
    ) -> CommitResult:
        if not self.exists(table):
            return self.append(table, df, partition_by, txn)
        if (done := self._done(table, txn)) is not None:
            return done
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        check_schema(table, self.schema(table), df.schema, add_columns=add_columns)
        merge = self._dt(table).alias("t").merge(df.alias("s"), cond)
        if add_columns:  # Delta's own schema evolution, bounded by ours: new columns only
            merge = merge.withSchemaEvolution()
        merge.whenNotMatchedInsertAll().execute()
        return self._result(table)

    def upsert(
        self,
        table: str,
        df: DataFrame,
        keys: list[str],
        partition_by: list[str] | None = None,
        txn: Txn | None = None,
    ) -> CommitResult:
        if not self.exists(table):
            return self.append(table, df, partition_by, txn)
        if (done := self._done(table, txn)) is not None:
            return done
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        (
            self._dt(table)
            .alias("t")
            .merge(df.alias("s"), cond)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
        return self._result(table)

    def delete(self, table: str, predicate: str, txn: Txn | None = None) -> CommitResult:
        before = self.read(table).where(predicate).count()
        self._dt(table).delete(predicate)
        return self._result(table, removed=before)

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        rows = self._dt(table).history(limit).collect() if limit else self._dt(table).history().collect()
        return [r.asDict(recursive=True) for r in rows]

    def vacuum(self, table: str, retention_hours: float, dry_run: bool = False) -> list[str]:
        # The retention asked for is explicit (forget --vacuum asks 0): lift Delta's 7-day floor
        # for this call only, as the delta-rs backend does with enforce_retention_duration=False.
        check = "spark.databricks.delta.retentionDurationCheck.enabled"
        before = self.spark.conf.get(check, None)
        self.spark.conf.set(check, "false")
        try:
            self._dt(table).vacuum(retention_hours)
        finally:
            if before is None:
                self.spark.conf.unset(check)
            else:
                self.spark.conf.set(check, before)
        return []

    def expire_log(self, table: str) -> list[str]:
        from recpipe.lake.deltars import DeltaRsLake

        # The Python API of delta-spark has no checkpoint/log cleanup call; delta-rs does both on
        # the same table folder (standard Delta log, no Spark connector needed).
        return DeltaRsLake(self.spark, self.root).expire_log(table)

    def row_count(self, table: str) -> int:
        return self.read(table).count()

    def list_tables(self) -> list[str]:
        from recpipe.lake.deltars import DeltaRsLake

        # Listing folders needs no Delta connector; reuse the filesystem walk.
        return DeltaRsLake(self.spark, self.root).list_tables()
