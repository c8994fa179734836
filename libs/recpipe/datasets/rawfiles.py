"""Writers for recpipe's *raw* event layout (the contract read by the ingest job).

Layout under an output directory ``OUT``::

    OUT/events/YYYY-MM-DD/HH.jsonl   one JSON object per line, file = UTC hour of the event
    OUT/items.jsonl                  one item (catalogue row) per line, sorted by item_id
    OUT/manifest.json                what was imported, counts, skipped lines, mapping

Event lines carry, in this order: ``user_id, item_id, event_type, ts, session_id, request_id,
position, dwell_ms, device, country, propensity, is_history``. ``ts`` is ISO-8601 UTC with
milliseconds and a ``Z`` suffix. ``is_history`` is always written (``false`` unless the event is a
reconstructed past click, e.g. a MIND click history entry).

Importers hand events to :class:`EventWriter` as pandas DataFrames with an integer ``ts_ms``
column (epoch milliseconds, UTC). The writer keeps a bounded in-memory buffer, spills sorted runs
to Arrow IPC files when the buffer is full (memory-mapped again when writing), and finally writes
every hour file in a deterministic order: sorted by ``ts`` and then by ``user_id, event_type,
request_id, position, item_id, session_id, is_history`` (nulls last). Output therefore does not
depend on input order or chunk sizes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import constants as C

EVENT_TYPES = ("impression", "click", "read", "like", "share", "hide")

#: Field order of an event line (the ingest contract): the raw fields, without a source event id
#: and without the serving-log fields (generated and imported logs are not from a served list).
EVENT_FIELDS = tuple(f for f in C.RAW_FIELDS if f != "event_id" and f not in C.SERVING_LOG_FIELDS)

#: Field order of an items.jsonl line.
ITEM_FIELDS = (
    "item_id",
    "title",
    "text",
    "category",
    "subcategory",
    "tags",
    "publisher",
    "published_ts",
    "expires_ts",
    "language",
    "status",
)

MS_PER_HOUR = 3_600_000

# Internal (spool) schema of events handed to EventWriter.add.
_SPOOL_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("ts_ms", pa.int64()),
        ("session_id", pa.string()),
        ("request_id", pa.string()),
        ("position", pa.int64()),
        ("propensity", pa.float64()),
        ("is_history", pa.bool_()),
    ]
)
_OPTIONAL_DEFAULTS = {
    "session_id": None,
    "request_id": None,
    "position": None,
    "propensity": None,
    "is_history": False,
}
_SORT_KEYS = [
    ("ts_ms", "ascending"),
    ("user_id", "ascending"),
    ("event_type", "ascending"),
    ("request_id", "ascending"),
    ("position", "ascending"),
    ("item_id", "ascending"),
    ("session_id", "ascending"),
    ("is_history", "ascending"),
]


# --------------------------------------------------------------------------- time helpers


def format_ts_ms(ts_ms: Any) -> npt.NDArray[Any]:
    """Vectorised epoch-milliseconds -> ``"YYYY-MM-DDTHH:MM:SS.mmmZ"`` (object array).

    Missing values (NaN / pandas NA) become ``None``.
    """
    s = pd.Series(ts_ms)
    mask = s.isna().to_numpy()
    vals = s.fillna(0).to_numpy(dtype="int64")
    out = np.char.add(np.datetime_as_string(vals.astype("datetime64[ms]"), unit="ms"), "Z")
    out = out.astype(object)
    if mask.any():
        out[mask] = None
    return out


def to_epoch_ms(ts: pd.Series) -> pd.Series:
    """tz-aware/naive datetime Series (naive = UTC) -> int64 epoch milliseconds (NaT must be removed)."""
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize("UTC")
    return (ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").astype("int64") // 1_000_000).astype(
        "int64"
    )


def _hour_relpath(hour: int) -> str:
    s = np.datetime_as_string(
        np.array([hour * MS_PER_HOUR], dtype="int64").astype("datetime64[ms]"), unit="h"
    )[0]
    day, hh = s.split("T")
    return f"{day}/{hh}.jsonl"


# --------------------------------------------------------------------------- output dir


def prepare_out_dir(out_dir: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse (or with ``overwrite`` clear) a previous import's outputs there.

    Only recpipe's own raw outputs (``events/``, ``items.jsonl``, ``manifest.json``) are removed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = [p for p in (out / "events", out / "items.jsonl", out / "manifest.json") if p.exists()]
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds raw import output ({', '.join(p.name for p in existing)}); "
                "pass overwrite=True to replace it"
            )
        for p in existing:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return out


def _json_lines(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    text: str = df.to_json(orient="records", lines=True, force_ascii=False)
    # pandas escapes "/" as "\/" (valid JSON, but noisy). "\/" in its output can only come from a "/",
    # because a literal backslash is always written as "\\" followed by the next (escaped) char.
    text = text.replace("\\/", "/")
    if not text.endswith("\n"):
        text += "\n"
    return text


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    Path(path).write_text(
        json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8"
    )


# --------------------------------------------------------------------------- events


class EventWriter:
    """Collects event DataFrames and writes ``OUT/events/YYYY-MM-DD/HH.jsonl`` deterministically.

    ``add(df)`` accepts columns ``user_id, item_id, event_type, ts_ms`` (required) and optionally
    ``session_id, request_id, position, propensity, is_history``. Call :meth:`close` once to write
    the files; it returns statistics (counts by type, users, time range, number of files).
    """

    def __init__(
        self, out_dir: str | os.PathLike[str], *, spill_rows: int = 2_000_000, write_batch_rows: int = 500_000
    ) -> None:
        self.out_dir = Path(out_dir)
        self.events_dir = self.out_dir / "events"
        self.spill_rows = int(spill_rows)
        self.write_batch_rows = int(write_batch_rows)
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._runs: list[tuple[pa.Table, dict[int, tuple[int, int]]]] = []
        self._tmpdir: str | None = None
        self._counts: Counter[str] = Counter()
        self._users: list[pa.Array] = []
        self._items: list[pa.Array] = []
        self._min_ts: int | None = None
        self._max_ts: int | None = None
        self._closed = False
        self.stats: dict[str, Any] | None = None

    # -- input
    def add(self, df: pd.DataFrame) -> None:
        if self._closed:
            raise RuntimeError("EventWriter is closed")
        if df is None or len(df) == 0:
            return
        missing = {"user_id", "item_id", "event_type", "ts_ms"} - set(df.columns)
        if missing:
            raise ValueError(f"events lack columns {sorted(missing)}")
        bad_types = set(pd.unique(df["event_type"])) - set(EVENT_TYPES)
        if bad_types:
            raise ValueError(f"unknown event types {sorted(map(str, bad_types))}")
        cols = {}
        n = len(df)
        for field in _SPOOL_SCHEMA:
            if field.name in df.columns:
                col = df[field.name]
                if field.name == "position":
                    col = col.astype("Int64")
                elif field.name == "propensity":
                    col = col.astype("float64")
                elif field.name == "is_history":
                    col = col.fillna(False).astype(bool)
                elif field.name == "ts_ms":
                    col = col.astype("int64")
                cols[field.name] = pa.array(col, type=field.type, from_pandas=True)
            else:
                default = _OPTIONAL_DEFAULTS[field.name]
                if default is None:
                    cols[field.name] = pa.nulls(n, type=field.type)
                else:
                    cols[field.name] = pa.array(np.full(n, default), type=field.type)
        table = pa.table(cols, schema=_SPOOL_SCHEMA)
        for name in ("user_id", "item_id", "event_type"):
            if table.column(name).null_count:
                raise ValueError(f"events have null {name}")

        vc = pc.value_counts(table.column("event_type")).to_pylist()
        for entry in vc:
            self._counts[entry["values"]] += entry["counts"]
        self._users.append(pc.unique(table.column("user_id")))
        self._items.append(pc.unique(table.column("item_id")))
        mm = pc.min_max(table.column("ts_ms")).as_py()
        self._min_ts = mm["min"] if self._min_ts is None else min(self._min_ts, mm["min"])
        self._max_ts = mm["max"] if self._max_ts is None else max(self._max_ts, mm["max"])
        if len(self._users) > 64:  # keep the distinct-id accumulators compact
            self._users = [pc.unique(pa.concat_arrays(self._users))]
            self._items = [pc.unique(pa.concat_arrays(self._items))]

        self._buffer.append(table)
        self._buffered += n
        if self._buffered >= self.spill_rows:
            self._flush_buffer(spill=True)

    # -- internals
    def _flush_buffer(self, spill: bool) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer).combine_chunks()
        self._buffer, self._buffered = [], 0
        ts = table.column("ts_ms").to_numpy()
        hour = np.floor_divide(ts, MS_PER_HOUR)
        table = table.append_column("hour", pa.array(hour, type=pa.int64()))
        table = table.sort_by([("hour", "ascending")] + _SORT_KEYS)
        hours_sorted = table.column("hour").to_numpy()
        uniq, starts = np.unique(hours_sorted, return_index=True)
        ends = np.append(starts[1:], len(hours_sorted))
        index = {int(h): (int(s), int(e)) for h, s, e in zip(uniq, starts, ends, strict=True)}
        table = table.drop_columns(["hour"])
        if spill:
            if self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix=".spool-", dir=self.out_dir)
            path = os.path.join(self._tmpdir, f"run-{len(self._runs):05d}.arrow")
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            del table
            table = pa.ipc.open_file(pa.memory_map(path, "r")).read_all()
        self._runs.append((table, index))

    def _write_batch(self, slices: list[pa.Table], hours: list[int]) -> int:
        table = pa.concat_tables(slices)
        if len(self._runs) > 1:
            table = table.sort_by(_SORT_KEYS)
        table = table.combine_chunks()
        n = table.num_rows
        lines = event_lines(table)  # one string per row, each ending in "\n"
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=n + 1, offset=lines.offset * 8)
        data = lines.buffers()[2]
        hour = np.floor_divide(table.column("ts_ms").to_numpy(), MS_PER_HOUR)
        # rows are sorted by ts, so each hour is one contiguous block
        uniq, starts = np.unique(hour, return_index=True)
        ends = np.append(starts[1:], n)
        for h, s, e in zip(uniq, starts, ends, strict=True):
            path = self.events_dir / _hour_relpath(int(h))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(memoryview(data)[offsets[s] : offsets[e]])
        return len(uniq)

    # -- output
    def close(self) -> dict[str, Any]:
        if self._closed:
            # (None only after a close() that raised: the with-block callers never read it then)
            return cast(dict[str, Any], self.stats)
        self._closed = True
        self._flush_buffer(spill=False)
        self.events_dir.mkdir(parents=True, exist_ok=True)
        files = 0
        try:
            all_hours = sorted(set().union(*(idx.keys() for _, idx in self._runs))) if self._runs else []
            slices: list[pa.Table] = []
            batch_hours: list[int] = []
            rows = 0
            for h in all_hours:
                for table, idx in self._runs:
                    rng = idx.get(h)
                    if rng is not None:
                        slices.append(table.slice(rng[0], rng[1] - rng[0]))
                        rows += rng[1] - rng[0]
                batch_hours.append(h)
                if rows >= self.write_batch_rows:
                    files += self._write_batch(slices, batch_hours)
                    slices, batch_hours, rows = [], [], 0
            if slices:
                files += self._write_batch(slices, batch_hours)
        finally:
            self._runs = []
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
        users = pc.unique(pa.concat_arrays(self._users)) if self._users else pa.array([], pa.string())
        items = pc.unique(pa.concat_arrays(self._items)) if self._items else pa.array([], pa.string())
        self.item_ids = items
        self.stats = {
            "events": {t: int(self._counts.get(t, 0)) for t in EVENT_TYPES if self._counts.get(t, 0)},
            "events_total": int(sum(self._counts.values())),
            "users": int(len(users)),
            "items_in_events": int(len(items)),
            "event_files": int(files),
            "min_ts": None if self._min_ts is None else format_ts_ms([self._min_ts])[0],
            "max_ts": None if self._max_ts is None else format_ts_ms([self._max_ts])[0],
        }
        return self.stats

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._tmpdir is not None:
            self._runs = []
            shutil.rmtree(self._tmpdir, ignore_errors=True)


_CONTROL_CHARS = r"[\x00-\x1f]"


def _json_string(arr: pa.Array) -> pa.Array:
    """Arrow string array -> JSON literals (quoted, escaped; ``null`` for nulls), vectorised."""
    arr = arr.cast(pa.string())
    if arr.null_count == len(arr):
        return pa.array(np.full(len(arr), "null", dtype=object), pa.string())
    if pc.any(pc.match_substring_regex(arr, _CONTROL_CHARS)).as_py():  # rare: let json do it
        return pa.array(
            [("null" if v is None else json.dumps(v, ensure_ascii=False)) for v in arr.to_pylist()]
        )
    esc = pc.replace_substring(arr, "\\", "\\\\")
    esc = pc.replace_substring(esc, '"', '\\"')
    return pc.fill_null(pc.binary_join_element_wise('"', esc, '"', ""), "null")


def event_lines(table: pa.Table) -> pa.Array:
    """Spool-schema table -> one JSON line (with trailing newline) per event, in ``EVENT_FIELDS`` order."""
    n = table.num_rows
    ts = pc.strftime(table.column("ts_ms").cast(pa.timestamp("ms")), format="%Y-%m-%dT%H:%M:%SZ")
    position = pc.fill_null(table.column("position").cast(pa.string()), "null")
    prop = table.column("propensity")
    prop = pc.if_else(pc.is_finite(prop), prop, pa.scalar(None, pa.float64()))
    propensity = pc.fill_null(prop.cast(pa.string()), "null")
    is_history = pc.if_else(pc.fill_null(table.column("is_history"), False), "true", "false")
    null = pa.array(np.full(n, "null", dtype=object), pa.string())
    values = {
        "user_id": _json_string(table.column("user_id").combine_chunks()),
        "item_id": _json_string(table.column("item_id").combine_chunks()),
        "event_type": _json_string(table.column("event_type").combine_chunks()),
        "ts": _json_string(ts.combine_chunks() if isinstance(ts, pa.ChunkedArray) else ts),
        "session_id": _json_string(table.column("session_id").combine_chunks()),
        "request_id": _json_string(table.column("request_id").combine_chunks()),
        "position": position,
        "dwell_ms": null,
        "device": null,
        "country": null,
        "propensity": propensity,
        "is_history": is_history,
    }
    parts: list[Any] = []
    for i, name in enumerate(EVENT_FIELDS):
        parts.append(("{" if i == 0 else ",") + json.dumps(name) + ":")
        parts.append(values[name])
    parts.append("}\n")
    out = pc.binary_join_element_wise(*parts, "")
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    return out.cast(pa.large_string())


# --------------------------------------------------------------------------- items


def write_items(out_dir: str | os.PathLike[str], items: pd.DataFrame) -> int:
    """Write ``OUT/items.jsonl`` (sorted by item_id). Missing columns are written as null,
    ``tags`` as ``[]`` and ``status`` as ``"active"``."""
    df = items.copy()
    n = len(df)
    for col in ITEM_FIELDS:
        if col not in df.columns:
            if col == "tags":
                df[col] = [[] for _ in range(n)]
            elif col == "status":
                df[col] = "active"
            else:
                df[col] = np.full(n, None, dtype=object)
    df = df[list(ITEM_FIELDS)]
    df = df.astype(object)
    df = df.where(df.notna(), None)
    df["tags"] = [list(t) if isinstance(t, (list, tuple, np.ndarray)) else [] for t in df["tags"]]
    df["status"] = df["status"].fillna("active")
    df = df.sort_values("item_id", kind="stable").reset_index(drop=True)
    if df["item_id"].duplicated().any():
        raise ValueError("duplicate item_id in items")
    path = Path(out_dir) / "items.jsonl"
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for start in range(0, n, 200_000):
            fh.write(_json_lines(df.iloc[start : start + 200_000]))
    return n


# --------------------------------------------------------------------------- reading helpers


def iter_line_chunks(
    path: str | os.PathLike[str], chunk_lines: int = 200_000, encoding: str = "utf-8"
) -> Iterator[pd.Series]:
    """Yield the file's lines (without line terminators) as pandas Series of at most
    ``chunk_lines`` strings; the Series index is the 1-based line number."""
    line_no = 0
    with open(path, encoding=encoding, newline="") as fh:
        while True:
            part = list(itertools.islice(fh, max(1, int(chunk_lines))))
            if not part:
                break
            s = pd.Series(part, dtype=object, index=pd.RangeIndex(line_no + 1, line_no + 1 + len(part)))
            line_no += len(part)
            yield s.str.rstrip("\r\n")


def split_fixed_columns(lines: pd.Series, sep: str, ncols: int, skipped: Counter[str]) -> pd.DataFrame:
    """Split lines into exactly ``ncols`` string columns. Blank lines are counted as
    ``blank_line`` and lines with another number of fields as ``wrong_column_count`` in
    ``skipped``; both are dropped."""
    blank = lines.str.strip() == ""
    if blank.any():
        skipped["blank_line"] += int(blank.sum())
        lines = lines[~blank]
    nsep = lines.str.count(re.escape(sep))
    bad = nsep != ncols - 1
    if bad.any():
        skipped["wrong_column_count"] += int(bad.sum())
        lines = lines[~bad]
    if lines.empty:
        return pd.DataFrame({i: pd.Series([], dtype=object) for i in range(ncols)})
    return lines.str.split(sep, n=ncols - 1, expand=True, regex=False)


def merge_counters(*counters: Mapping[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counters:
        total.update(c)
    return {k: int(v) for k, v in sorted(total.items()) if v}
