"""delta-rs backend: Spark writes the Parquet files, delta-rs commits them to the Delta log.

Write path: Spark writes a staging folder inside the table (``_staging/<write id>``, ignored by
Delta readers); the driver moves the files into the table's partition folders under unique names,
reads per-file stats from the Parquet footers and commits exactly those files in one atomic Delta
commit with delta-rs, carrying an app transaction for idempotency. Files of a write that never
committed are invisible to readers and removed by :meth:`DeltaRsLake.vacuum`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from recpipe import faults
from recpipe.constants import PERSONAL_COLUMNS
from recpipe.lake import fs as lakefs
from recpipe.lake.base import (
    STATS_COLUMNS_PROPERTY,
    CommitResult,
    ConcurrentCommitError,
    Lake,
    LakeError,
    Txn,
    check_schema,
    stats_properties,
)

log = logging.getLogger(__name__)

STAGING_DIR = "_staging"
LOG_RETENTION = "delta.logRetentionDuration"
DEFAULT_LOG_RETENTION = "interval 30 days"  # the Delta protocol's default
EXPIRE_NOW = "interval 0 seconds"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _spark_to_arrow(schema: StructType) -> pa.Schema:
    arrow = to_arrow_schema(schema, timezone="UTC")
    # Every column nullable in the Delta schema: nullability is not part of our contract.
    return pa.schema([f.with_nullable(True) for f in arrow])


def _stat_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bytes):
        return None
    return v


def _file_stats(meta: pq.FileMetaData) -> str:
    """Delta per-file stats (numRecords, minValues, maxValues, nullCount) from a Parquet footer.

    Personal columns (user ids, raw records) get none: see :func:`recpipe.lake.base.stats_columns`.
    """
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for ci in range(meta.num_columns):
        name = meta.schema.column(ci).path
        if "." in name or name in PERSONAL_COLUMNS:  # nested and personal columns: no stats
            continue
        lo = hi = None
        n_null = 0
        ok = True
        for ri in range(meta.num_row_groups):
            st = meta.row_group(ri).column(ci).statistics
            if st is None:
                ok = False
                break
            n_null += st.null_count or 0
            if st.has_min_max:
                a, b = _stat_value(st.min), _stat_value(st.max)
                if a is None or b is None:
                    ok = False
                    break
                lo = a if lo is None or a < lo else lo
                hi = b if hi is None or b > hi else hi
        if not ok:
            continue
        nulls[name] = n_null
        if lo is not None:
            mins[name], maxs[name] = lo, hi
    return json.dumps({"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})


def _already_committed(table: str, dt: DeltaTable | None, txn: Txn | None) -> CommitResult | None:
    """A skipped result when the table's app transaction says ``txn`` is already committed."""
    if txn is not None and dt is not None:
        done = dt.transaction_version(txn.app_id)
        if done is not None and done >= txn.version:
            return CommitResult(table, dt.version(), False, skipped_reason=f"already committed by {txn}")
    return None


def _partition_columns(table: str, dt: DeltaTable | None, partition_by: list[str] | None) -> list[str]:
    """The partition columns to write: the table's (``partition_by`` must match them when given),
    or ``partition_by`` for a new table."""
    pcols = list(partition_by or [])
    if dt is not None:
        table_pcols = list(dt.metadata().partition_columns)
        if partition_by is not None and pcols != table_pcols:
            raise LakeError(
                f"write to {table} refused: partition columns {pcols} differ from the table's {table_pcols}"
            )
        pcols = table_pcols
    return pcols


class DeltaRsLake(Lake):
    backend_name = "delta-rs"

    def __init__(self, spark: SparkSession, root: str, commit_retries: int = 3) -> None:
        root = lakefs.absolute(root)
        super().__init__(spark, root, commit_retries)
        self.fs, self._root_fs_path = lakefs.filesystem(self.root, resolve=False)

    # -- helpers -----------------------------------------------------------------------------
    def _fs_path(self, uri: str) -> str:
        return lakefs.fs_path(uri)

    def _table(self, table: str, version: int | None = None) -> DeltaTable | None:
        try:
            dt = DeltaTable(self.path(table))
        except TableNotFoundError:
            return None
        if version is not None:
            try:
                dt.load_as_version(version)
            except DeltaError as exc:
                raise LakeError(f"{table}: version {version} cannot be loaded: {exc}") from None
        return dt

    def _require(self, table: str, version: int | None = None) -> DeltaTable:
        dt = self._table(table, version)
        if dt is None:
            raise LakeError(f"table {table} does not exist at {self.path(table)}")
        return dt

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.path(table))

    def version(self, table: str) -> int | None:
        dt = self._table(table)
        return None if dt is None else dt.version()

    def schema(self, table: str, version: int | None = None) -> StructType:
        dt = self._require(table, version)
        return from_arrow_schema(pa.schema(dt.schema().to_arrow()), prefer_timestamp_ntz=False)

    def partition_columns(self, table: str) -> list[str]:
        dt = self._table(table)
        return [] if dt is None else list(dt.metadata().partition_columns)

    def txn_version(self, table: str, app_id: str) -> int | None:
        dt = self._table(table)
        return None if dt is None else dt.transaction_version(app_id)

    def read(self, table: str, version: int | None = None) -> DataFrame:
        dt = self._require(table, version)
        schema = from_arrow_schema(pa.schema(dt.schema().to_arrow()), prefer_timestamp_ntz=False)
        files = dt.file_uris()
        if not files:
            return self.spark.createDataFrame([], schema)
        try:
            df = self.spark.read.schema(schema).option("basePath", self.path(table)).parquet(*files)
        except AnalysisException as exc:
            if "PATH_NOT_FOUND" not in str(exc):
                raise
            raise LakeError(
                f"{table} version {dt.version()} refers to data files that no longer exist "
                f"(removed by vacuum?): {str(exc).splitlines()[0]}"
            ) from None
        return df.select(*schema.fieldNames())

    def row_count(self, table: str) -> int:
        dt = self._require(table)
        actions = pa.table(dt.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return 0
        return int(pc.sum(actions.column("num_records")).as_py() or 0)

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self._require(table).history(limit)

    def list_tables(self) -> list[str]:
        out = []
        sel = pafs.FileSelector(self._root_fs_path, allow_not_found=True)
        for layer in self.fs.get_file_info(sel):
            if layer.type != pafs.FileType.Directory:
                continue
            for t in self.fs.get_file_info(pafs.FileSelector(layer.path)):
                if t.type == pafs.FileType.Directory and DeltaTable.is_deltatable(
                    f"{self.root}/{layer.base_name}/{t.base_name}"
                ):
                    out.append(f"{layer.base_name}.{t.base_name}")
        return sorted(out)

    # -- write path --------------------------------------------------------------------------
    def _write_files(
        self, table: str, df: DataFrame, partition_by: list[str]
    ) -> tuple[list[AddAction], float]:
        """Write ``df`` as Parquet files inside the table folder; return their add actions."""
        t0 = time.perf_counter()
        table_path = self.path(table)
        write_id = uuid.uuid4().hex[:16]
        staging = f"{table_path}/{STAGING_DIR}/{write_id}"
        writer = df.write.mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(staging)
        staging_fs = self._fs_path(staging)
        infos = self.fs.get_file_info(pafs.FileSelector(staging_fs, recursive=True))
        actions = []
        now_ms = int(time.time() * 1000)
        for n, info in enumerate(sorted(infos, key=lambda i: i.path)):
            if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
                continue
            rel_dir = os.path.dirname(os.path.relpath(info.path, staging_fs))
            rel_dir = "" if rel_dir == "." else rel_dir
            pvalues: dict[str, str | None] = {}
            for part in [p for p in rel_dir.split("/") if p]:
                key, _, raw = part.partition("=")
                value = unquote(raw)
                pvalues[unquote(key)] = None if value == HIVE_NULL else value
            rel = f"{rel_dir}/" if rel_dir else ""
            rel += f"part-{n:05d}-{write_id}.snappy.parquet"
            dest = f"{self._fs_path(table_path)}/{rel}"
            self.fs.create_dir(os.path.dirname(dest), recursive=True)
            self.fs.move(info.path, dest)
            with self.fs.open_input_file(dest) as fh:
                meta = pq.ParquetFile(fh).metadata
            actions.append(
                AddAction(
                    path=rel,
                    size=self.fs.get_file_info(dest).size,
                    partition_values=pvalues,
                    modification_time=now_ms,
                    data_change=True,
                    stats=_file_stats(meta),
                )
            )
        self.fs.delete_dir(staging_fs)
        return actions, time.perf_counter() - t0

    def _discard(self, table: str, actions: list[AddAction]) -> None:
        base = self._fs_path(self.path(table))
        for a in actions:
            try:
                self.fs.delete_file(f"{base}/{a.path}")
            except OSError:
                log.warning("could not remove uncommitted file %s/%s (vacuum will)", base, a.path)

    def _commit(
        self,
        table: str,
        df_fn: Callable[[DeltaTable | None], DataFrame | None],
        partition_by: list[str] | None,
        txn: Txn | None,
        operation: str,
        mode: str = "append",
        partition_filters: Callable[[DeltaTable], list[tuple[str, str, Any]] | None] | None = None,
        removes_fn: Callable[[DeltaTable], tuple[list[RemoveAction], int]] | None = None,
        blind: bool = False,
        replace_schema: bool = False,
        add_columns: bool = False,
    ) -> CommitResult:
        """Optimistic commit: compute from a snapshot, write, commit; on a conflict, redo."""
        attempts = self.commit_retries + 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            dt = self._table(table)
            if (done := _already_committed(table, dt, txn)) is not None:
                return done
            df = df_fn(dt)
            removes: list[RemoveAction] = []
            rows_removed = 0
            if removes_fn is not None and dt is not None:
                removes, rows_removed = removes_fn(dt)
            if df is None and not removes:
                return CommitResult(table, dt.version() if dt else None, False, skipped_reason="no change")
            if dt is not None and df is not None and not replace_schema:
                checked = self._check_and_add_columns(table, dt, df, df_fn, mode, add_columns)
                if checked is None:
                    continue  # a concurrent commit: redo from the next snapshot
                dt, df = checked
            pcols = _partition_columns(table, dt, partition_by)
            actions, t_write, schema = self._write_data(table, dt, df, pcols)
            rows = sum(json.loads(a.stats)["numRecords"] for a in actions)
            props = CommitProperties(
                custom_metadata={"recpipe.operation": operation, "recpipe.attempt": str(attempt)},
                # Conflicts are retried here, recomputing from the new snapshot, unless blind.
                max_commit_retries=3 if blind else 0,
                app_transactions=[Transaction(txn.app_id, txn.version)] if txn else None,
            )
            t0 = time.perf_counter()
            conflict = self._commit_actions(
                table, dt, actions, removes, schema, pcols, mode, partition_filters, props
            )
            if conflict is not None:
                last_error = conflict
                log.warning(
                    "%s: concurrent commit (%s), retrying %d/%d", table, conflict, attempt + 1, attempts
                )
                continue
            faults.point("commit", table)  # committed, the stage not finished (crash tests)
            new_version = self.version(table)
            return CommitResult(
                table,
                new_version,
                True,
                rows_written=rows,
                rows_removed=rows_removed,
                files_added=len(actions),
                files_removed=len(removes),
                timings={"write_s": t_write, "commit_s": time.perf_counter() - t0},
            )
        raise ConcurrentCommitError(
            f"commit to {table} failed after {attempts} attempts, other writers kept committing "
            f"first: {last_error}. Nothing was committed by this write."
        )

    def _check_and_add_columns(
        self,
        table: str,
        dt: DeltaTable,
        df: DataFrame,
        df_fn: Callable[[DeltaTable | None], DataFrame | None],
        mode: str,
        add_columns: bool,
    ) -> tuple[DeltaTable, DataFrame | None] | None:
        """Check ``df`` against the table's schema; with ``add_columns``, an append first adds the
        new columns and recomputes ``df`` from the snapshot that has them. Returns the snapshot and
        data to write, or None when a concurrent commit got in the way (redo the attempt)."""
        check_schema(table, self.schema(table), df.schema, add_columns=add_columns)
        if add_columns and mode == "append":
            added = self._add_columns(table, dt, df)
            if added is False:
                return None
            if added:  # recompute from the snapshot that has the columns
                dt = self._require(table)
                return dt, df_fn(dt)
        return dt, df

    def _write_data(
        self, table: str, dt: DeltaTable | None, df: DataFrame | None, pcols: list[str]
    ) -> tuple[list[AddAction], float, pa.Schema]:
        """Write ``df``'s files (none without data: only removes); return their add actions, the
        write time and the schema to commit."""
        if df is not None:
            missing = [c for c in pcols if c not in df.columns]
            if missing:
                raise LakeError(f"write to {table} refused: partition columns {missing} not in data")
            actions, t_write = self._write_files(table, df, pcols)
            faults.point("write", table)  # files written, not committed (crash tests)
            return actions, t_write, _spark_to_arrow(df.schema)
        assert dt is not None  # no rows to write: only removes, which come from a snapshot
        return [], 0.0, pa.schema(dt.schema().to_arrow())

    def _commit_actions(
        self,
        table: str,
        dt: DeltaTable | None,
        actions: list[AddAction],
        removes: list[RemoveAction],
        schema: pa.Schema,
        pcols: list[str],
        mode: str,
        partition_filters: Callable[[DeltaTable], list[tuple[str, str, Any]] | None] | None,
        props: CommitProperties,
    ) -> Exception | None:
        """Commit the written files (and removes) in one Delta commit, creating the table when there
        is none. Returns the conflict to retry on (the files discarded); other errors raise."""
        try:
            if dt is None:
                create_table_with_add_actions(
                    self.path(table),
                    DeltaSchema.from_arrow(schema),
                    actions,
                    mode="error",
                    partition_by=pcols or None,
                    configuration=stats_properties(schema.names) or None,
                    commit_properties=props,
                )
            else:
                filters = partition_filters(dt) if partition_filters else None
                dt.create_write_transaction(
                    actions + removes,
                    mode=mode,
                    schema=schema,
                    partition_by=pcols or None,
                    partition_filters=filters,
                    commit_properties=props,
                )
        except (CommitFailedError, DeltaError) as exc:
            self._discard(table, actions)
            if (
                dt is None
                and "already exists" not in str(exc).lower()
                and not isinstance(exc, CommitFailedError)
            ):
                raise LakeError(f"commit to {table} failed: {exc}") from exc
            return exc
        except Exception:
            self._discard(table, actions)
            raise
        return None

    def _add_columns(self, table: str, dt: DeltaTable, df: DataFrame) -> bool | None:
        """Add the columns of ``df`` that the table lacks in a schema-only commit, before an
        append (whose commit keeps the table's schema). None: nothing to add; True: added;
        False: a concurrent commit got in the way (nothing added)."""
        have = set(dt.schema().to_arrow().names)
        new = [f for f in DeltaSchema.from_arrow(_spark_to_arrow(df.schema)).fields if f.name not in have]
        if not new:
            return None
        try:
            dt.alter.add_columns(new)
        except (CommitFailedError, DeltaError) as exc:
            log.warning("%s: concurrent commit while adding columns (%s), retrying", table, exc)
            return False
        log.info("%s: added columns %s", table, [f.name for f in new])
        return True

    def append(
        self, table: str, df: DataFrame, partition_by: list[str] | None = None, txn: Txn | None = None
    ) -> CommitResult:
        return self._commit(table, lambda dt: df, partition_by, txn, "append", blind=True)

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
        if replace_schema and partitions:
            raise LakeError(f"overwrite of {table}: a new schema replaces the whole table, not partitions")

        def filters(dt: DeltaTable) -> list[tuple[str, str, Any]] | None:
            if not partitions:
                return None
            pcols = list(dt.metadata().partition_columns)
            for col in partitions:
                if col not in pcols:
                    raise LakeError(f"overwrite of {table}: {col!r} is not a partition column {pcols}")
            return [(c, "in", [str(v) for v in vals]) for c, vals in partitions.items()]

        if partitions:
            bad = (
                df.where(
                    ~F.expr(
                        " AND ".join(
                            f"`{c}` IN ({','.join(repr(str(v)) for v in vals)})"
                            for c, vals in partitions.items()
                        )
                    )
                )
                .limit(1)
                .count()
            )
            if bad:
                raise LakeError(
                    f"overwrite of {table} refused: the data has rows outside the partitions {partitions}"
                )
        return self._commit(
            table,
            lambda dt: df,
            partition_by,
            txn,
            "overwrite",
            mode="overwrite",
            partition_filters=filters,
            replace_schema=replace_schema,
            add_columns=add_columns,
        )

    def _existing_keys(self, dt: DeltaTable, table: str, df: DataFrame, keys: list[str]) -> DataFrame:
        existing = self.read(table, dt.version())
        pcols = [c for c in dt.metadata().partition_columns if c in df.columns]
        if pcols:
            # Partition pruning: only the partitions the new data touches can hold its keys.
            values = [r[0] for r in df.select(pcols[0]).distinct().collect()]
            existing = existing.where(F.col(pcols[0]).isin(values))
        return existing.select(*keys)

    def insert_new(
        self,
        table: str,
        df: DataFrame,
        keys: list[str],
        partition_by: list[str] | None = None,
        txn: Txn | None = None,
        add_columns: bool = False,
    ) -> CommitResult:
        def new_rows(dt: DeltaTable | None) -> DataFrame:
            if dt is None:
                return df
            return df.join(self._existing_keys(dt, table, df, keys), on=keys, how="left_anti")

        return self._commit(table, new_rows, partition_by, txn, "insert_new", add_columns=add_columns)

    def _rewrite(
        self,
        table: str,
        mark: Callable[[DataFrame], DataFrame],
        replacement: DataFrame | None,
        txn: Txn | None,
        operation: str,
    ) -> CommitResult:
        """Remove the files holding matching rows, add back their other rows (+ ``replacement``).

        ``mark(snapshot)`` returns the snapshot with a boolean ``_match`` column (rows to drop).
        """
        state: dict[str, Any] = {}

        def data(dt: DeltaTable | None) -> DataFrame | None:
            if dt is None:
                return replacement
            marked = mark(self.read(table, dt.version()).withColumn("_file", F.input_file_name()))
            # One pass: the files that hold matching rows, and how many rows match.
            hits = marked.where("_match").groupBy("_file").count().collect()
            state["files"] = [r["_file"] for r in hits]
            state["removed"] = sum(r["count"] for r in hits)
            if not hits:
                return replacement
            kept = marked.where(F.col("_file").isin(state["files"]) & ~F.col("_match"))
            kept = kept.drop("_file", "_match")
            return kept if replacement is None else kept.unionByName(replacement)

        def removes(dt: DeltaTable) -> tuple[list[RemoveAction], int]:
            base = self.path(table)
            adds = pa.table(dt.get_add_actions(flatten=False)).to_pylist()
            by_uri = {}
            for a in adds:
                uri = f"{base}/{a['path']}"
                by_uri[os.path.normpath(self._fs_path(uri))] = a
            out = []
            now_ms = int(time.time() * 1000)
            for f in state.get("files", []):
                a = by_uri.get(os.path.normpath(self._fs_path(unquote(f))))
                if a is None:
                    raise LakeError(f"{table}: file {f} is not in snapshot {dt.version()}")
                out.append(
                    RemoveAction(
                        path=a["path"],
                        data_change=True,
                        deletion_timestamp=now_ms,
                        size=a["size_bytes"],
                        partition_values=a.get("partition_values") or {},
                    )
                )
            return out, state.get("removed", 0)

        return self._commit(table, data, None, txn, operation, removes_fn=removes)

    def delete(self, table: str, predicate: str, txn: Txn | None = None) -> CommitResult:
        self._require(table)
        try:
            pred = F.expr(predicate)
            self.read(table).where(pred).limit(0).collect()
        except Exception as exc:
            raise LakeError(f"delete from {table}: invalid predicate {predicate!r}: {exc}") from None
        return self._rewrite(
            table, lambda snap: snap.withColumn("_match", F.coalesce(pred, F.lit(False))), None, txn, "delete"
        )

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
        # Rows of the table whose key is in the incoming data (a join, no keys collected).
        incoming = df.select(*keys).distinct().withColumn("_match", F.lit(True))

        def mark(snap: DataFrame) -> DataFrame:
            return snap.join(incoming, keys, "left").fillna(False, subset=["_match"])

        return self._rewrite(table, mark, df, txn, "upsert")

    def expire_log(self, table: str) -> list[str]:
        dt = self._require(table)
        log_dir = f"{self._fs_path(self.path(table))}/_delta_log"
        before = {i.path for i in self.fs.get_file_info(pafs.FileSelector(log_dir))}
        config = dt.metadata().configuration
        props = {LOG_RETENTION: EXPIRE_NOW}
        # The value to restore (a run that crashed before restoring left EXPIRE_NOW behind).
        retention = config.get(LOG_RETENTION, DEFAULT_LOG_RETENTION)
        retention = DEFAULT_LOG_RETENTION if retention == EXPIRE_NOW else retention
        if STATS_COLUMNS_PROPERTY not in config:  # a table created before stats were restricted
            props.update(stats_properties(dt.schema().to_arrow().names))
        # cleanup_metadata deletes the log entries older than the table's log retention that the
        # latest checkpoint makes unnecessary; the retention is 0 only while it runs.
        dt.alter.set_table_properties(props)
        try:
            dt = self._require(table)
            dt.create_checkpoint()
            dt.cleanup_metadata()
        finally:
            dt.alter.set_table_properties({LOG_RETENTION: retention})
        after = {i.path for i in self.fs.get_file_info(pafs.FileSelector(log_dir))}
        return sorted(before - after)

    def vacuum(self, table: str, retention_hours: float, dry_run: bool = False) -> list[str]:
        dt = self._require(table)
        removed = dt.vacuum(
            retention_hours=int(retention_hours),
            dry_run=dry_run,
            enforce_retention_duration=False,
            full=True,
        )
        # Staging folders of writes that crashed before their files were moved.
        staging = f"{self._fs_path(self.path(table))}/{STAGING_DIR}"
        cutoff = time.time() - retention_hours * 3600
        for info in self.fs.get_file_info(pafs.FileSelector(staging, allow_not_found=True)):
            if info.mtime is not None and info.mtime.timestamp() <= cutoff:
                removed.append(info.path)
                if not dry_run:
                    self.fs.delete_dir(info.path)
        return list(removed)
