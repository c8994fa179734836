"""Input pipeline: the examples' Delta snapshot files -> per-rank row shards -> tf.data.

Reads the Parquet files of one snapshot version directly (delta-rs resolves the file list; no Spark in
the training processes). Each rank gets a contiguous, disjoint range of rows of the split, balanced
by ROWS (not files): rank ``r`` of ``n`` reads rows ``[r*N//n, (r+1)*N//n)`` of the files in path order
and opens only the files overlapping its range. Training shards are padded (rows of the rank's own
shard repeated) to ``ceil(N/n)`` rows, so every rank runs exactly the same number of steps per epoch
(uneven step counts would leave one rank waiting in allreduce forever).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recpipe.features.spec import FeatureSpec
from recpipe.lake.fs import filesystem

__all__ = [
    "SPLIT",
    "Shard",
    "read_split",
    "shard_range",
    "snapshot_files",
    "train_dataset",
]

SPLIT = "split"


def _split_rows(pf: pq.ParquetFile, split: str) -> tuple[int, bool]:
    """Rows of ``split`` in a file holding a ``split`` column, and whether rows must be filtered.

    Row-group statistics decide without reading data when a row group holds one split only
    (the usual case: splits are time ranges and files are written per date).
    """
    idx = pf.schema_arrow.get_field_index(SPLIT)
    rows, mixed = 0, False
    for g in range(pf.num_row_groups):
        rg = pf.metadata.row_group(g)
        st = rg.column(idx).statistics
        if st is not None and st.has_min_max and st.null_count == 0:
            if st.min == st.max:
                rows += rg.num_rows if st.min == split else 0
                continue
            if not (st.min <= split <= st.max):
                mixed = True  # this row group holds none, other rows may: filter the file
                continue
        col = pf.read_row_group(g, columns=[SPLIT]).column(0)
        rows += int(pc.sum(pc.equal(col, split)).as_py() or 0)
        mixed = True
    return rows, mixed


def snapshot_files(table_path: str, version: int | None, split: str) -> list[tuple[str, int]]:
    """``(file uri, rows of split)`` of snapshot ``version``, in a stable order.

    Tables partitioned by ``split`` are pruned by partition; otherwise (e.g. partitioned by date)
    files are pruned with the ``split`` column's Parquet statistics and rows filtered on read.
    """
    return [(uri, n) for uri, n, _ in _snapshot_files(table_path, version, split)]


def _snapshot_files(table_path: str, version: int | None, split: str) -> list[tuple[str, int, bool]]:
    from deltalake import DeltaTable

    dt = DeltaTable(table_path, version=version)
    by_partition = SPLIT in dt.metadata().partition_columns
    if by_partition:
        uris = sorted(dt.file_uris(partition_filters=[(SPLIT, "=", split)]))
    else:
        uris = sorted(dt.file_uris())
    out = []
    for uri in uris:
        fs, path = filesystem(uri, resolve=False)
        with fs.open_input_file(path) as fh:
            pf = pq.ParquetFile(fh)
            if by_partition:
                out.append((uri, pf.metadata.num_rows, False))
                continue
            if pf.schema_arrow.get_field_index(SPLIT) < 0:
                raise ValueError(f"{table_path}: data file {uri} has no {SPLIT!r} column")
            rows, mixed = _split_rows(pf, split)
        if rows:
            out.append((uri, rows, mixed))
    return out


def shard_range(total: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[start, end)`` of rank ``rank`` of ``size``: disjoint, covering, sizes differ by <= 1."""
    return total * rank // size, total * (rank + 1) // size


def _read_file(uri: str, columns: list[str] | None, split: str, mixed: bool) -> pa.Table:
    fs, path = filesystem(uri, resolve=False)
    with fs.open_input_file(path) as fh:
        names = set(pq.read_schema(fh).names)
        fh.seek(0)
        # A file written before a feature column was added to the table (lake add_columns) lacks
        # it: the column reads as null there, as Delta readers see it (the inputs fill nulls).
        absent = [] if columns is None else [c for c in columns if c not in names]
        present = None if columns is None else [c for c in columns if c in names]
        cols = present if not mixed or present is None else list(dict.fromkeys([*present, SPLIT]))
        t = pq.read_table(fh, columns=cols)
    if mixed:
        t = t.filter(pc.equal(t.column(SPLIT), split))
    for c in absent:
        t = t.append_column(c, pa.nulls(t.num_rows, pa.float64()))
    return t if columns is None else t.select(columns)


def read_split(
    table_path: str,
    version: int | None,
    split: str,
    columns: list[str] | None = None,
    rank: int = 0,
    size: int = 1,
) -> pa.Table:
    """The rank's row range of ``split`` in snapshot ``version`` (all rows when size == 1)."""
    files = _snapshot_files(table_path, version, split)
    if not files:
        raise ValueError(f"{table_path} version {version} has no rows in split {split!r}")
    total = sum(n for _, n, _ in files)
    start, end = shard_range(total, rank, size)
    pieces = []
    offset = 0
    for uri, n, mixed in files:
        lo, hi = max(start, offset), min(end, offset + n)
        if lo < hi:
            pieces.append(_read_file(uri, columns, split, mixed).slice(lo - offset, hi - lo))
        offset += n
    if not pieces:
        uri, _, mixed = files[0]
        return _read_file(uri, columns, split, mixed).slice(0, 0)
    return pa.concat_tables(pieces, promote_options="permissive")


@dataclass
class Shard:
    """One rank's training rows as model inputs, padded to the common per-rank row count."""

    x: dict[str, npt.NDArray[Any]]
    y: npt.NDArray[Any]
    rows: int  # rows after padding (identical on every rank)
    real_rows: int  # rows of the rank's own range
    # Columns read beside the inputs (``extra`` of :meth:`load`), padded like them, as float64
    # with NaN for nulls (e.g. ``position`` for train.position_bias=ipw).
    extra: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    # Per-row loss weights (None: unweighted), e.g. train.position_bias=ipw's.
    w: npt.NDArray[Any] | None = None

    @classmethod
    def load(
        cls,
        table_path: str,
        version: int | None,
        split: str,
        spec: FeatureSpec,
        rank: int,
        size: int,
        pad: bool = True,
        extra: tuple[str, ...] = (),
    ) -> Shard:
        from recpipe.model.inputs import labels, to_model_inputs

        wanted = list(dict.fromkeys([*spec.columns, spec.label, *extra]))
        table = read_split(table_path, version, split, wanted, rank, size)
        total = sum(n for _, n in snapshot_files(table_path, version, split))
        real = table.num_rows
        target = math.ceil(total / size) if pad else real
        if target > real:
            if real == 0:
                raise ValueError(f"rank {rank} has no {split} rows to pad from ({total} rows, {size} ranks)")
            table = pa.concat_tables([table, table.take(np.arange(target - real) % real)])
        more = {
            c: table.column(c).cast(pa.float64()).fill_null(math.nan).to_numpy(zero_copy_only=False)
            for c in extra
        }
        return cls(to_model_inputs(table, spec), labels(table, spec), table.num_rows, real, more)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


def epoch_order(rows: int, seed: int, epoch: int, rank: int) -> npt.NDArray[Any]:
    """The seeded shuffle of a rank's rows for one epoch (same seed/epoch/rank -> same order)."""
    return np.random.default_rng([seed & (2**63 - 1), epoch, rank]).permutation(rows)


def train_dataset(
    shard: Shard, batch_size: int, seed: int, epoch: int, rank: int, skip_batches: int = 0
) -> Any:
    """One epoch of shuffled batches ``(x, y)``, or ``(x, y, w)`` with loss weights, as tf.data,
    starting after ``skip_batches`` (resume)."""
    import tensorflow as tf

    order = epoch_order(shard.rows, seed, epoch, rank)[skip_batches * batch_size :]
    x = {k: v[order] for k, v in shard.x.items()}
    parts = (x, shard.y[order]) if shard.w is None else (x, shard.y[order], shard.w[order])
    ds = tf.data.Dataset.from_tensor_slices(parts)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def eval_batches(x: dict[str, npt.NDArray[Any]], batch_size: int) -> Iterator[dict[str, npt.NDArray[Any]]]:
    """Unshuffled batches of model inputs (for prediction)."""
    n = len(next(iter(x.values()))) if x else 0
    for i in range(0, n, batch_size):
        yield {k: v[i : i + batch_size] for k, v in x.items()}
