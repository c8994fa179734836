"""A lake whose input tables read at fixed versions: a stage for run date D sees its inputs as
the day's upstream stages left them, however often it reruns and whatever later days wrote."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from recpipe.lake import CommitResult, Lake, Txn


class PinnedLake(Lake):
    """``lake`` with ``read``/``version``/``schema`` of the ``pins`` tables at the pinned version.

    Everything else (writes, history, other tables) goes to ``lake`` unchanged.
    """

    def __init__(self, lake: Lake, pins: dict[str, int]) -> None:
        super().__init__(lake.spark, lake.root, lake.commit_retries)
        self.inner = lake
        self.pins = dict(pins)
        self.backend_name = lake.backend_name

    def __getattr__(self, name: str) -> Any:  # backend extras (e.g. partition_columns)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def path(self, table: str) -> str:
        return self.inner.path(table)

    def exists(self, table: str) -> bool:
        return self.inner.exists(table)

    def version(self, table: str) -> int | None:
        return self.pins[table] if table in self.pins else self.inner.version(table)

    def schema(self, table: str, version: int | None = None) -> StructType:
        return self.inner.schema(table, self.pins.get(table) if version is None else version)

    def read(self, table: str, version: int | None = None) -> DataFrame:
        return self.inner.read(table, self.pins.get(table) if version is None else version)

    def txn_version(self, table: str, app_id: str) -> int | None:
        return self.inner.txn_version(table, app_id)

    def append(
        self, table: str, df: DataFrame, partition_by: list[str] | None = None, txn: Txn | None = None
    ) -> CommitResult:
        return self.inner.append(table, df, partition_by, txn)

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
        return self.inner.overwrite(
            table, df, partition_by, partitions, txn, replace_schema=replace_schema, add_columns=add_columns
        )

    def insert_new(
        self,
        table: str,
        df: DataFrame,
        keys: list[str],
        partition_by: list[str] | None = None,
        txn: Txn | None = None,
        add_columns: bool = False,
    ) -> CommitResult:
        return self.inner.insert_new(table, df, keys, partition_by, txn, add_columns=add_columns)

    def upsert(
        self,
        table: str,
        df: DataFrame,
        keys: list[str],
        partition_by: list[str] | None = None,
        txn: Txn | None = None,
    ) -> CommitResult:
        return self.inner.upsert(table, df, keys, partition_by, txn)

    def delete(self, table: str, predicate: str, txn: Txn | None = None) -> CommitResult:
        return self.inner.delete(table, predicate, txn)

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self.inner.history(table, limit)

    def vacuum(self, table: str, retention_hours: float, dry_run: bool = False) -> list[str]:
        return self.inner.vacuum(table, retention_hours, dry_run)

    def expire_log(self, table: str) -> list[str]:
        return self.inner.expire_log(table)

    def row_count(self, table: str) -> int:
        if table in self.pins:
            return self.read(table).count()
        return self.inner.row_count(table)

    def list_tables(self) -> list[str]:
        return self.inner.list_tables()
