"""The lake interface shared by every backend."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from recpipe.constants import PERSONAL_COLUMNS

# Table property naming the columns Delta writers collect per-file statistics for.
STATS_COLUMNS_PROPERTY = "delta.dataSkippingStatsColumns"


def stats_columns(columns: list[str]) -> list[str]:
    """The columns of a table that get Delta file statistics: all but the personal ones.

    A user id (pseudonym or raw record) in a file's min/max would be a copy of that user in the
    ``_delta_log``, which erasure could not reach without rewriting history (``recpipe.privacy``).
    """
    return [c for c in columns if c not in PERSONAL_COLUMNS]


def stats_properties(columns: list[str]) -> dict[str, str]:
    """Table properties of a new table with ``columns``: statistics only on non-personal columns."""
    if not any(c in PERSONAL_COLUMNS for c in columns):
        return {}
    return {STATS_COLUMNS_PROPERTY: ",".join(stats_columns(columns))}


class LakeError(RuntimeError):
    """A lake operation was refused or failed; nothing was committed."""


class SchemaMismatchError(LakeError):
    """Data does not match the table's schema; no data was written."""


class ConcurrentCommitError(LakeError):
    """Another writer committed first and retries were exhausted; nothing was committed."""


@dataclass(frozen=True)
class Txn:
    """An idempotency token: a commit carrying (app_id, version) is applied at most once per table."""

    app_id: str
    version: int = 1


@dataclass
class CommitResult:
    table: str
    version: int | None
    committed: bool
    rows_written: int = 0
    rows_removed: int = 0
    files_added: int = 0
    files_removed: int = 0
    skipped_reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "version": self.version,
            "committed": self.committed,
            "rows_written": self.rows_written,
            "rows_removed": self.rows_removed,
            "skipped_reason": self.skipped_reason,
        }


def table_parts(name: str) -> tuple[str, str]:
    """``"silver.events"`` -> ``("silver", "events")``; names are ``layer.table``."""
    parts = name.split(".")
    if len(parts) != 2 or not all(p.replace("_", "").isalnum() for p in parts):
        raise LakeError(f"invalid table name {name!r}: expected 'layer.table', e.g. 'silver.events'")
    return parts[0], parts[1]


def check_schema(
    table: str, table_schema: StructType, data_schema: StructType, add_columns: bool = False
) -> None:
    """Refuse data whose columns or types differ from the table's (no silent coercion).

    ``add_columns``: columns the table does not have yet are allowed (they are added to the
    table's schema; the rows already stored read them as null). Missing columns and changed
    types are still refused.
    """
    have = {f.name: f.dataType for f in table_schema.fields}
    got = {f.name: f.dataType for f in data_schema.fields}
    missing = [c for c in have if c not in got]
    extra = [] if add_columns else [c for c in got if c not in have]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    for name, dtype in got.items():
        if name in have and not _same_type(have[name], dtype):
            problems.append(
                f"column '{name}' is {have[name].simpleString()} in the table "
                f"but {dtype.simpleString()} in the data"
            )
    if problems:
        raise SchemaMismatchError(
            f"write to {table} refused, schema mismatch: " + "; ".join(problems) + ". Nothing was written."
        )


def _same_type(a: Any, b: Any) -> bool:
    # Nullability is not part of the contract; compare the type tree only.
    return bool(_strip_nullable(a.jsonValue()) == _strip_nullable(b.jsonValue()))


def _strip_nullable(v: Any) -> Any:
    if isinstance(v, dict):
        return {
            k: _strip_nullable(x)
            for k, x in v.items()
            if k not in ("nullable", "containsNull", "valueContainsNull", "metadata")
        }
    if isinstance(v, list):
        return [_strip_nullable(x) for x in v]
    return v


class Lake(abc.ABC):
    """Delta tables under one root, addressed by ``layer.table`` names."""

    backend_name: str = "abstract"

    def __init__(self, spark: SparkSession, root: str, commit_retries: int = 3) -> None:
        self.spark = spark
        self.root = root.rstrip("/")
        self.commit_retries = commit_retries

    def path(self, table: str) -> str:
        layer, name = table_parts(table)
        return f"{self.root}/{layer}/{name}"

    @abc.abstractmethod
    def exists(self, table: str) -> bool: ...

    @abc.abstractmethod
    def version(self, table: str) -> int | None:
        """Latest committed version, or None when the table does not exist."""

    @abc.abstractmethod
    def schema(self, table: str, version: int | None = None) -> StructType: ...

    @abc.abstractmethod
    def read(self, table: str, version: int | None = None) -> DataFrame:
        """The table's snapshot (latest, or the given version) as a DataFrame."""

    @abc.abstractmethod
    def txn_version(self, table: str, app_id: str) -> int | None:
        """The last idempotency version committed for ``app_id`` on this table."""

    @abc.abstractmethod
    def append(
        self, table: str, df: DataFrame, partition_by: list[str] | None = None, txn: Txn | None = None
    ) -> CommitResult: ...

    @abc.abstractmethod
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
        """Replace the whole table, or only the partitions whose values are given.

        ``replace_schema``: the data's schema becomes the table's (whole-table overwrite only).
        ``add_columns``: the data may have columns the table lacks (a new feature): they are
        added to the schema and read as null in the partitions not rewritten.
        """

    @abc.abstractmethod
    def insert_new(
        self,
        table: str,
        df: DataFrame,
        keys: list[str],
        partition_by: list[str] | None = None,
        txn: Txn | None = None,
        add_columns: bool = False,
    ) -> CommitResult:
        """Append only the rows whose key is not already stored (``df`` must be unique by key).

        ``add_columns``: the data may have columns the table lacks (a new optional field): they
        are added to the schema and the rows already stored read them as null.
        """

    @abc.abstractmethod
    def upsert(
        self,
        table: str,
        df: DataFrame,
        keys: list[str],
        partition_by: list[str] | None = None,
        txn: Txn | None = None,
    ) -> CommitResult:
        """Insert new keys and replace the rows of existing keys (``df`` unique by key)."""

    @abc.abstractmethod
    def delete(self, table: str, predicate: str, txn: Txn | None = None) -> CommitResult:
        """Delete the rows matching a Spark SQL predicate, rewriting only the files that hold them."""

    @abc.abstractmethod
    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def vacuum(self, table: str, retention_hours: float, dry_run: bool = False) -> list[str]: ...

    @abc.abstractmethod
    def expire_log(self, table: str) -> list[str]:
        """Checkpoint the table and delete every older log entry (commits and checkpoints) now.

        After it, the log describes only the live files: entries for removed files, with their
        statistics and partition values, are gone, and so is time travel to older versions.
        Returns the log files deleted.
        """

    @abc.abstractmethod
    def row_count(self, table: str) -> int: ...

    @abc.abstractmethod
    def list_tables(self) -> list[str]: ...
