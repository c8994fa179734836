"""The ingest job: raw event files -> bronze.events_raw, bronze.quarantine, silver.events, silver.items.

Every input record is accepted, counted as a duplicate, or quarantined with a reason; the counts
add up to the input and are appended to ``ops.runs``. Each table write carries an idempotency
token for the batch, so re-running a batch leaves every table version unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe import faults, quality
from recpipe.config import Config, IngestConfig
from recpipe.events import transforms as T
from recpipe.lake import CommitResult, Lake, Txn, open_lake
from recpipe.lake.fs import filesystem, resolved, with_scheme_of

log = logging.getLogger(__name__)

ITEMS_FILE = "items.jsonl"
EVENTS_DIR = "events"
# Files at the batch root that are not event files: the catalog, the importers' and the
# generator's manifest, and the generator's ground truth.
KNOWN_ROOT_FILES = (ITEMS_FILE, "manifest.json", "ground_truth.parquet")
# The file name endings each `ingest.format` reads; `.gz` files are gunzipped while reading.
FORMAT_EXTENSIONS = {
    "jsonl": (".jsonl", ".json", ".jsonl.gz", ".json.gz"),
    "csv": (".csv", ".csv.gz"),
    "parquet": (".parquet",),
}


class IngestError(RuntimeError):
    """The batch cannot be ingested; nothing further was written."""


def read_bytes(path: str) -> bytes:
    """Read a whole file's bytes as stored, local or object store (runs on executors).

    No transparent decompression (pyarrow would gunzip ``.gz`` by name): ``transforms.decompress``
    does it, so a corrupt gzip is reported as such instead of failing the job.
    """
    fs, p = filesystem(path)
    with fs.open_input_stream(p, compression=None) as fh:
        data: bytes = fh.read()
        return data


@dataclass
class BatchFiles:
    """The files of one batch folder: those ingest reads, and why it does not read the others."""

    files: list[str]
    not_read: dict[str, str] = field(default_factory=dict)


def _format_of(name: str) -> str | None:
    lower = name.lower()
    return next((f for f, exts in FORMAT_EXTENSIONS.items() if lower.endswith(exts)), None)


def not_read_reason(name: str, size: int | None, fmt: str, unit: str) -> str | None:
    """Why ingest of ``fmt`` does not read a file of this name and size (None: it does);
    ``unit`` names what is ingested ("batch", "stream") in the reason."""
    kind = _format_of(name)
    if not size:
        return "empty file"
    if kind == fmt:
        return None
    if kind is not None:
        return f"a {kind} file: read with ingest.format={kind} (this {unit}: {fmt})"
    return f"unknown extension: ingest.format={fmt} reads {', '.join(FORMAT_EXTENSIONS[fmt])}"


def scan_input(input_dir: str, fmt: str, date: dt.date | None = None) -> BatchFiles:
    """Every file of a batch folder, sorted: the event files of ``fmt`` and the files not read.

    Event files are ``events/**`` (or the folder itself when it has no ``events/``), only
    ``events/<date>/`` with ``date``. Without ``date`` every other file of the folder is accounted
    for too, except :data:`KNOWN_ROOT_FILES` at its root. Names starting with ``.`` or ``_``
    (``_SUCCESS``, ``.crc``, spool folders) are skipped, as Spark's own file sources do.
    """
    fs, base = filesystem(input_dir)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise IngestError(f"input folder not found: {input_dir}")
    root = f"{base}/{EVENTS_DIR}"
    has_events = fs.get_file_info(root).type == pafs.FileType.Directory
    if not has_events:
        root = base
    if date is not None:
        root = f"{root}/{date.isoformat()}"
    scope = root if date is not None else base
    out = BatchFiles([])
    for i in fs.get_file_info(pafs.FileSelector(scope, recursive=True, allow_not_found=True)):
        rel = i.path[len(scope) :].lstrip("/")
        if i.type != pafs.FileType.File or any(p.startswith((".", "_")) for p in rel.split("/")):
            continue
        if date is None and rel in KNOWN_ROOT_FILES:
            continue
        path = with_scheme_of(i.path, input_dir)
        why = not_read_reason(i.base_name, i.size, fmt, "batch")
        if why is None and not i.path.startswith(root + "/"):
            why = f"outside {EVENTS_DIR}/ (only files under {EVENTS_DIR}/ are events)"
        if why is None:
            out.files.append(path)
        else:
            out.not_read[path] = why
    out.files.sort()
    out.not_read = dict(sorted(out.not_read.items()))
    return out


def list_event_files(input_dir: str, fmt: str, date: dt.date | None = None) -> list[str]:
    """The batch's event files, sorted: ``events/YYYY-MM-DD/*.jsonl`` (or .csv/.parquet, .gz)."""
    return scan_input(input_dir, fmt, date).files


def no_event_files_error(input_dir: str, fmt: str, date: dt.date | None, batch: BatchFiles) -> IngestError:
    """The error for a batch folder without event files: the formats looked for, the files found
    and the ``ingest.format`` that reads them (for planners that scan a folder before ingest)."""
    where = f"{input_dir}" + (f" for {date}" if date else "")
    msg = f"no event files under {where}: ingest.format={fmt} reads {', '.join(FORMAT_EXTENSIONS[fmt])}"
    if not batch.not_read:
        return IngestError(msg + "; found no other files")
    names = [Path(f).name for f in batch.not_read]
    msg += f"; found {len(names)} other file(s): {', '.join(names[:5])}" + (", ..." if len(names) > 5 else "")
    kinds = sorted({k for f in batch.not_read if (k := _format_of(f)) is not None and k != fmt})
    if kinds:
        reads = "; ".join(f"--set ingest.format={k} reads {', '.join(FORMAT_EXTENSIONS[k])}" for k in kinds)
        msg += f" ({reads})"
    return IngestError(msg)


def check_not_read(cfg: IngestConfig, batch_id: str, not_read: dict[str, str]) -> None:
    """``ingest.unknown_files: fail`` -> stop the batch (before anything is written)."""
    if not_read and cfg.unknown_files == "fail":
        listed = "; ".join(f"{f} ({why})" for f, why in list(not_read.items())[:10])
        more = f" and {len(not_read) - 10} more" if len(not_read) > 10 else ""
        raise IngestError(
            f"batch {batch_id}: {len(not_read)} file(s) that ingest does not read: {listed}{more}; "
            "nothing was written (remove or fix them, or --set ingest.unknown_files=skip)"
        )


def default_batch_id(input_dir: str, files: list[str]) -> str:
    """A deterministic batch id from the folder name and its file list with sizes."""
    fs, _ = filesystem(input_dir)
    h = hashlib.sha1()
    for f in files:
        h.update(f.encode())
        h.update(str(fs.get_file_info(filesystem(f)[1]).size).encode())
    return f"{Path(input_dir.rstrip('/')).name}-{h.hexdigest()[:12]}"


def _read_tabular(spark: SparkSession, cfg: Config, files: list[str], sources: dict[str, str]) -> DataFrame:
    """CSV/Parquet sources (``.csv.gz`` gunzipped by Spark) mapped onto the raw fields.

    ``sources``: canonical field -> source column, from ``ingest.column_mapping``.
    """
    if cfg.ingest.format == "csv":
        src = (
            spark.read.option("header", True)
            .option("sep", cfg.ingest.csv_delimiter)
            .option("inferSchema", False)
            .csv(files)
        )
    else:
        src = spark.read.parquet(*files)
    absent = {f: c for f, c in sources.items() if c not in src.columns}
    if absent:
        raise IngestError(
            f"{cfg.source_file}: ingest.column_mapping names columns the {cfg.ingest.format} source "
            f"does not have: {', '.join(f'{f}: {c!r}' for f, c in absent.items())} "
            f"(its columns: {src.columns})"
        )
    cols = []
    for f in C.RAW_FIELDS:
        name = sources.get(f, f)
        if name in src.columns:
            c = F.col(f"`{name}`")
            cols.append(c.cast("boolean" if f == "is_history" else "string").alias(f))
        else:
            cols.append(F.lit(None).cast("boolean" if f == "is_history" else "string").alias(f))
    order = F.monotonically_increasing_id()
    with_file = src.withColumn(C.SOURCE_FILE, F.input_file_name()).withColumn("_order", order)
    w = Window.partitionBy(C.SOURCE_FILE).orderBy("_order")
    return with_file.select(
        F.col(C.SOURCE_FILE),
        F.row_number().over(w).cast("long").alias(C.LINE),
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in src.columns])).alias(C.RAW),
        F.lit(None).cast("string").alias("parse_error"),
        *cols,
    )


def _paths(spark: SparkSession, cfg: Config, files: list[str]) -> DataFrame:
    tasks = cfg.ingest.read_tasks or spark.sparkContext.defaultParallelism
    return spark.createDataFrame([(f,) for f in files], "path string").repartition(
        min(tasks, len(files)) or 1
    )


def read_raw(spark: SparkSession, cfg: Config, files: list[str]) -> DataFrame:
    """Parse the batch's files into one row per input record (``transforms.PARSED_DDL``).

    ``ingest.column_mapping`` applies to every format: source columns (JSON keys for jsonl) are
    read under their canonical names, then constants and epoch units are applied. A JSONL file
    that yields no records gives one row with ``line`` = ``transforms.FILE_ROW_LINE``.
    """
    specs = cfg.ingest.column_specs()
    sources = {f: s.column for f, s in specs.items() if s.column is not None}
    if cfg.ingest.format != "jsonl":
        parsed = _read_tabular(spark, cfg, files, sources)
    else:
        parsed = T.read_jsonl_files(_paths(spark, cfg, files), read_bytes, sources)
    consts = {f: s.const for f, s in specs.items() if s.const is not None}
    units = {f: s.unit for f, s in specs.items() if s.unit is not None}
    return T.apply_column_specs(parsed, consts, units)


def probe_gzip_files(spark: SparkSession, cfg: Config, files: list[str]) -> dict[str, str]:
    """The ``.gz`` files among ``files`` that hold no records (corrupt, empty), with the reason.

    Needed for sources Spark parses itself (CSV), where a corrupt gzip fails the whole job.
    """
    gz = [f for f in files if f.lower().endswith(".gz")]
    if not gz:
        return {}
    rows = T.probe_files(_paths(spark, cfg, gz), read_bytes).where(F.col("error").isNotNull()).collect()
    return {r["path"]: r["error"] for r in rows}


def read_items(spark: SparkSession, input_dir: str, batch_id: str, now: dt.datetime) -> DataFrame | None:
    """``items.jsonl`` -> the ``silver.items`` schema; None when the batch has no catalog."""
    fs, base = filesystem(input_dir)
    path = f"{base}/{ITEMS_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    raw_schema = (
        "item_id string, title string, text string, category string, subcategory string, "
        "tags array<string>, publisher string, published_ts string, expires_ts string, "
        "language string, status string, _corrupt_record string"
    )
    uri = with_scheme_of(path, input_dir)
    df = spark.read.schema(raw_schema).option("mode", "PERMISSIVE").json(uri)
    return df.select(
        F.trim("item_id").alias(C.ITEM_ID),
        "title",
        "text",
        "category",
        "subcategory",
        "tags",
        "publisher",
        T.parse_timestamp(F.col("published_ts")).alias("published_ts"),
        T.parse_timestamp(F.col("expires_ts")).alias("expires_ts"),
        "language",
        F.coalesce(F.lower(F.trim("status")), F.lit("active")).alias("status"),
        F.lit(batch_id).alias(C.BATCH_ID),
        F.lit(now).cast("timestamp").alias("updated_at"),
        "_corrupt_record",
    )


def run_ingest(
    cfg: Config,
    spark: SparkSession,
    input_dir: str | None = None,
    batch_id: str | None = None,
    date: dt.date | None = None,
    lake: Lake | None = None,
) -> dict[str, Any]:
    """Ingest one batch; returns the reconciliation summary (also stored in ``ops.runs``)."""
    t_start = time.perf_counter()
    input_dir = input_dir or cfg.data.raw_dir
    lake = lake or open_lake(cfg, spark)
    batch = scan_input(input_dir, cfg.ingest.format, date)
    if not batch.files:
        raise no_event_files_error(input_dir, cfg.ingest.format, date, batch)
    batch_id = batch_id or default_batch_id(input_dir, batch.files)
    check_batch_files(cfg, spark, batch, batch_id, input_dir, date)
    return ingest_batch(cfg, spark, lake, input_dir, batch, batch_id, date, t_start=t_start)


def check_batch_files(
    cfg: Config, spark: SparkSession, batch: BatchFiles, batch_id: str, input_dir: str, date: dt.date | None
) -> None:
    """Stop before anything is written when the batch has files ingest does not read (with
    ``ingest.unknown_files: fail``), or when no event file is left (CSV: corrupt gzips set aside)."""
    check_not_read(cfg.ingest, batch_id, batch.not_read)
    if cfg.ingest.format == "csv":
        _set_aside(batch, probe_gzip_files(spark, cfg, batch.files))
        check_not_read(cfg.ingest, batch_id, batch.not_read)
    if not batch.files:
        raise no_event_files_error(input_dir, cfg.ingest.format, date, batch)


@dataclass
class _Classified:
    """A batch's records, classified: ``all`` (persisted) also holds one row per file that gave
    no records, ``records`` only the records; their counts per (file, reason) and per reason."""

    all: DataFrame
    records: DataFrame
    by_file_reason: list[Any]
    reason_counts: dict[str | None, int]
    input_records: int
    quarantined: dict[str, int]


@dataclass
class _Deduped:
    """The batch's new events (persisted), the event dates it touches and its counts."""

    new: DataFrame
    dates: list[dt.date]
    new_by_file: list[Any]
    accepted: int
    late: int | None
    duplicates: int


def _read_and_classify(
    cfg: Config, spark: SparkSession, batch: BatchFiles, batch_id: str, max_ts: dt.datetime
) -> _Classified:
    """Read, parse and classify ``batch.files``; files that gave no records are set aside."""
    parsed = read_raw(spark, cfg, batch.files)
    classified_all = T.classify(
        parsed,
        cfg.ingest.allowed_event_types,
        cfg.ingest.event_type_aliases,
        cfg.ingest.min_event_ts.isoformat(),
        F.lit(max_ts).cast("timestamp"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    # Files that gave no records (a corrupt or empty gzip) are accounted for, not records.
    is_file_row = F.col(C.LINE) == T.FILE_ROW_LINE
    no_records = classified_all.where(is_file_row).select(C.SOURCE_FILE, "parse_error").collect()
    if no_records:
        _set_aside(batch, {r[0]: r[1] for r in no_records})
        if cfg.ingest.unknown_files == "fail":
            classified_all.unpersist()
            check_not_read(cfg.ingest, batch_id, batch.not_read)
    classified = classified_all.where(~is_file_row)
    # One small aggregate by (file, reason) gives the batch's reason counts and the report's per-file rows.
    by_file_reason = classified.groupBy(C.SOURCE_FILE, C.REASON).agg(F.count("*").alias("n")).collect()
    reason_counts: dict[str | None, int] = {}
    for r in by_file_reason:
        reason_counts[r[C.REASON]] = reason_counts.get(r[C.REASON], 0) + r["n"]
    input_records = sum(reason_counts.values())
    quarantined = {k: v for k, v in reason_counts.items() if k is not None}
    return _Classified(classified_all, classified, by_file_reason, reason_counts, input_records, quarantined)


def _stop_if_too_few_valid(
    cfg: Config,
    lake: Lake,
    c: _Classified,
    batch: BatchFiles,
    batch_id: str,
    run_id: str,
    started: dt.datetime,
    t_start: float,
) -> None:
    """Too few valid records (a wrong mapping, the wrong files): stop before anything is
    published, recording the failed attempt in ``ops.runs``."""
    # Nothing is written but the failed attempt's ops.runs row; bronze is not written
    # either, because a later run of the same batch id with a fixed config must write its own
    # quarantine (bronze writes are idempotent per batch id and would keep this run's rows).
    problem = _too_few_valid(cfg, c.records, c.reason_counts, batch_id)
    if problem is None:
        return
    c.all.unpersist()
    failed = {
        "job": "ingest",
        "batch_id": batch_id,
        "run_id": run_id,
        "error": problem,
        "input_records": c.input_records,
        "accepted": 0,
        "duplicates": None,
        "quarantined": sum(c.quarantined.values()),
        "quarantined_by_reason": dict(sorted(c.quarantined.items())),
        "files": len(batch.files),
        "files_not_read": batch.not_read,
        "table_versions": {},
        "duration_s": round(time.perf_counter() - t_start, 3),
    }
    # A token per attempt: the batch's own token stays free for the run that succeeds.
    _record_run(lake, failed, started, status="failed", txn=Txn(f"recpipe.ingest.failed/{run_id}", 1))
    raise IngestError(f"{problem}; nothing was published (attempt {run_id} is in ops.runs)")


def _dedupe(
    cfg: Config,
    lake: Lake,
    c: _Classified,
    batch_id: str,
    key: str,
    ingested_col: Column,
    timings: dict[str, float],
) -> _Deduped:
    """Normalize and dedupe the valid records: within the batch, then against events stored by
    other batches; the new events are persisted, the step's seconds go to ``timings["dedupe_s"]``."""
    t0 = time.perf_counter()
    valid = T.to_silver(c.records.where(F.col(C.REASON).isNull()), key, batch_id, ingested_col)
    first = T.dedupe_within_batch(valid).where(F.col("_rank") == 1).drop("_rank")
    # The event dates of the batch's valid records (from the cache): the partitions it touches.
    dates = [
        r[0]
        for r in c.records.where(F.col(C.REASON).isNull()).select(F.to_date("ts_parsed")).distinct().collect()
    ]
    if lake.exists(C.SILVER_EVENTS):
        stored = (
            lake.read(C.SILVER_EVENTS)
            .where(F.col(C.EVENT_DATE).isin(dates) & (F.col(C.BATCH_ID) != batch_id))
            .select(C.EVENT_ID)
        )
        new = first.join(stored, C.EVENT_ID, "left_anti")
    else:
        new = first
    new = new.persist(StorageLevel.MEMORY_AND_DISK)
    valid_count = c.reason_counts.get(None, 0)
    is_late = F.date_trunc("hour", F.col(C.EVENT_TS)) < _file_hour(F.col(C.SOURCE_FILE))
    new_by_file = (
        new.groupBy(C.SOURCE_FILE)
        .agg(F.count("*").alias("n"), F.sum(is_late.cast("long")).alias("late"))
        .collect()
    )
    accepted = sum(int(r["n"]) for r in new_by_file)
    late = sum(int(r["late"] or 0) for r in new_by_file) if cfg.ingest.format == "jsonl" else None
    duplicates = valid_count - accepted
    timings["dedupe_s"] = time.perf_counter() - t0
    if duplicates < 0:
        raise IngestError(f"batch {batch_id}: {accepted} accepted events out of {valid_count} valid records")
    return _Deduped(new, dates, new_by_file, accepted, late, duplicates)


def _write_batch(
    spark: SparkSession,
    lake: Lake,
    c: _Classified,
    d: _Deduped,
    input_dir: str,
    batch_id: str,
    ingested_col: Column,
    started: dt.datetime,
    catalog: bool,
) -> tuple[dict[str, CommitResult], dict[str, Any] | None]:
    """Write bronze.events_raw, bronze.quarantine, silver.events and (with ``catalog``)
    silver.items, each commit idempotent for this batch; the commits and the items' summary.
    Events stored concurrently by another batch move from ``d.accepted`` to ``d.duplicates``."""
    txn = Txn(f"recpipe.ingest/{batch_id}", 1)
    commits = {}
    raw_rows = c.records.select(
        F.lit(batch_id).alias(C.BATCH_ID), C.SOURCE_FILE, C.LINE, C.RAW, ingested_col.alias(C.INGESTED_AT)
    )
    commits[C.BRONZE_EVENTS_RAW] = lake.append(C.BRONZE_EVENTS_RAW, raw_rows, txn=txn)
    q_rows = c.records.where(F.col(C.REASON).isNotNull()).select(
        F.lit(batch_id).alias(C.BATCH_ID),
        C.SOURCE_FILE,
        C.LINE,
        C.RAW,
        C.REASON,
        C.DETAIL,
        ingested_col.alias(C.INGESTED_AT),
    )
    commits[C.BRONZE_QUARANTINE] = lake.append(C.BRONZE_QUARANTINE, q_rows, txn=txn)
    silver_rows = d.new.drop(C.SOURCE_FILE, C.LINE)
    # add_columns: a silver.events written before the serving-log contract gets its columns
    # (C.SERVING_LOG_SCHEMA) with this batch's commit; the rows stored before read them as null.
    commits[C.SILVER_EVENTS] = lake.insert_new(
        C.SILVER_EVENTS,
        silver_rows,
        keys=[C.EVENT_ID],
        partition_by=[C.EVENT_DATE],
        txn=txn,
        add_columns=True,
    )
    sc = commits[C.SILVER_EVENTS]
    if sc.committed and sc.rows_written != d.accepted:
        # Another batch stored some of these events between our dedupe and our commit.
        log.warning(
            "batch %s: %d events were stored concurrently by another batch",
            batch_id,
            d.accepted - sc.rows_written,
        )
        d.duplicates += d.accepted - sc.rows_written
        d.accepted = sc.rows_written
    items_summary = _ingest_items(spark, lake, input_dir, batch_id, started, txn) if catalog else None
    if items_summary is not None:
        commits[C.SILVER_ITEMS] = items_summary.pop("_commit")
    return commits, items_summary


def _quality_gate(
    cfg: Config, lake: Lake, batch_id: str, dates: list[dt.date], max_ts: dt.datetime
) -> quality.QualityReport:
    """Validate the partitions this batch touched of the latest silver.events and record the
    report (returned)."""
    # Not cached: each of the suite's few aggregate passes reads only the Parquet columns it
    # needs, which costs less than building an in-memory copy of every column first (10^6
    # events on 2 shared cores: 5-9 s, 12-24 s cached).
    version = lake.version(C.SILVER_EVENTS)
    to_check = lake.read(C.SILVER_EVENTS, version).where(F.col(C.EVENT_DATE).isin(dates))
    min_ts = cfg.ingest.min_event_ts
    report = quality.validate(
        to_check,
        "silver_events",
        quality.silver_events_checks(cfg.ingest.allowed_event_types, min_ts, max_ts),
        C.SILVER_EVENTS,
        version,
    )
    quality.record(lake, report, run_id=f"ingest/{batch_id}/v{version}")
    return report


def _ok_summary(
    lake: Lake,
    batch: BatchFiles,
    batch_id: str,
    run_id: str,
    c: _Classified,
    d: _Deduped,
    commits: dict[str, CommitResult],
    items_summary: dict[str, Any] | None,
    report: quality.QualityReport,
    timings: dict[str, float],
    t_start: float,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The summary of a batch that was written (with the tables' versions now)."""
    versions = {t: lake.version(t) for t in commits}
    sc = commits[C.SILVER_EVENTS]
    summary: dict[str, Any] = {
        "job": "ingest",
        "batch_id": batch_id,
        "run_id": run_id,
        "input_records": c.input_records,
        "accepted": d.accepted,
        "duplicates": d.duplicates,
        "quarantined": sum(c.quarantined.values()),
        "quarantined_by_reason": dict(sorted(c.quarantined.items())),
        "late_events": d.late,
        "event_dates": sorted(x.isoformat() for x in d.dates),
        "files": len(batch.files),
        "files_not_read": batch.not_read,
        "items": items_summary,
        "already_ingested": not sc.committed and sc.skipped_reason is not None,
        "table_versions": versions,
        "quality": report.summary(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "duration_s": round(time.perf_counter() - t_start, 3),
        **(extra or {}),
    }
    return summary


def ingest_batch(
    cfg: Config,
    spark: SparkSession,
    lake: Lake,
    input_dir: str,
    batch: BatchFiles,
    batch_id: str,
    date: dt.date | None = None,
    catalog: bool = True,
    extra: dict[str, Any] | None = None,
    t_start: float | None = None,
) -> dict[str, Any]:
    """Ingest the event files ``batch.files`` as batch ``batch_id`` (every commit carries the
    batch's token: a rerun with the same id and files writes nothing twice); ``input_dir`` names
    the landing folder (its ``items.jsonl`` is upserted when ``catalog``). ``extra`` is added to
    the summary (the stream's micro-batch). Returns the summary, also stored in ``ops.runs``."""
    t_start = time.perf_counter() if t_start is None else t_start
    started = dt.datetime.now(dt.UTC)
    files = batch.files
    run_id = f"ingest-{batch_id}-{uuid.uuid4().hex[:8]}"
    key = cfg.pseudonym_key()
    timings: dict[str, float] = {}
    log.info("ingest batch %s: %d files from %s", batch_id, len(files), input_dir)

    # The batch's ingest time is fixed by its first run (stored in bronze), so reruns are identical.
    ingested_at = _batch_ingest_time(lake, batch_id) or started.replace(microsecond=0)
    max_ts = ingested_at + dt.timedelta(seconds=cfg.ingest.max_future_seconds)

    # 1. read + parse; stop before anything is published when too few records are valid
    t0 = time.perf_counter()
    c = _read_and_classify(cfg, spark, batch, batch_id, max_ts)
    timings["read_parse_s"] = time.perf_counter() - t0
    _stop_if_too_few_valid(cfg, lake, c, batch, batch_id, run_id, started, t_start)

    # 2. normalize + dedupe (within the batch, then against events stored by other batches)
    ingested_col = F.lit(ingested_at).cast("timestamp")
    d = _dedupe(cfg, lake, c, batch_id, key, ingested_col, timings)

    # 3. write (each commit idempotent for this batch)
    t0 = time.perf_counter()
    commits, items_summary = _write_batch(
        spark, lake, c, d, input_dir, batch_id, ingested_col, started, catalog
    )
    timings["write_commit_s"] = time.perf_counter() - t0
    timings["commit_s"] = sum(r.timings.get("commit_s", 0.0) for r in commits.values())
    for df in (c.all, d.new):
        df.unpersist()

    # 4. quality gate on the partitions this batch touched
    t0 = time.perf_counter()
    report = _quality_gate(cfg, lake, batch_id, d.dates, max_ts)
    timings["quality_gate_s"] = time.perf_counter() - t0

    summary = _ok_summary(
        lake, batch, batch_id, run_id, c, d, commits, items_summary, report, timings, t_start, extra
    )
    _record_run(lake, summary, started, status="ok" if report.success else "quality_failed")
    by_file = records_by_file(input_dir, c.by_file_reason, d.new_by_file, cfg.ingest.format == "jsonl")
    summary["report_html"] = write_ingest_report(cfg, summary, by_file, date)
    if cfg.quality.fail_on_critical:
        report.raise_if_failed()
    return summary


def records_by_file(
    input_dir: str, by_file_reason: list[Any], new_by_file: list[Any], with_late: bool
) -> list[dict[str, Any]]:
    """Per source file: records read, accepted (new events), quarantined, late (JSONL only)."""
    # Spark's file names are URIs (file:///abs/...): shown relative to the input folder.
    root = resolved(input_dir).rstrip("/") + "/"
    rows: dict[str, dict[str, Any]] = {}
    late0 = 0 if with_late else None  # a file whose records are all duplicates or quarantined

    def row(f: str) -> dict[str, Any]:
        i = f.find(root)
        name = f[i + len(root) :] if i >= 0 else f
        return rows.setdefault(
            f, {"file": name, "records": 0, "accepted": 0, "quarantined": 0, "late_events": late0}
        )

    for r in by_file_reason:
        out = row(r[C.SOURCE_FILE])
        out["records"] += int(r["n"])
        if r[C.REASON] is not None:
            out["quarantined"] += int(r["n"])
    for r in new_by_file:
        out = row(r[C.SOURCE_FILE])
        out["accepted"] = int(r["n"])
        if with_late:
            out["late_events"] = int(r["late"] or 0)
    return [rows[f] for f in sorted(rows)]


def write_ingest_report(
    cfg: Config, summary: dict[str, Any], by_file: list[dict[str, Any]], date: dt.date | None
) -> str | None:
    """``ingest-<batch id>.json`` (the summary plus per-file counts) and its page in the reports
    folder; the page's path, or None (a report never fails the batch)."""
    from recpipe.reports.store import safe_name, write_json_and_html

    report = {**summary, "day": date.isoformat() if date else None, "records_by_file": by_file}
    stem = f"ingest-{safe_name(summary['batch_id'])}"
    return write_json_and_html(cfg.artifacts_dir("reports"), stem, "ingest", report)


def _file_hour(col: Column) -> Column:
    """``.../events/YYYY-MM-DD/HH.jsonl`` -> the delivery hour as a timestamp (null otherwise)."""
    hour = F.regexp_replace(
        F.regexp_extract(col, r"\d{4}-\d{2}-\d{2}/\d{2}(?=\.jsonl?(\.gz)?$)", 0), "/", " "
    )
    return F.when(hour != "", F.to_timestamp(hour, "yyyy-MM-dd HH"))


def _batch_ingest_time(lake: Lake, batch_id: str) -> dt.datetime | None:
    if not lake.exists(C.BRONZE_EVENTS_RAW):
        return None
    row = (
        lake.read(C.BRONZE_EVENTS_RAW).where(F.col(C.BATCH_ID) == batch_id).agg(F.min(C.INGESTED_AT)).first()
    )
    if row is None or row[0] is None:
        return None
    ts: dt.datetime = row[0]
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def _ingest_items(
    spark: SparkSession, lake: Lake, input_dir: str, batch_id: str, now: dt.datetime, txn: Txn
) -> dict[str, Any] | None:
    items = read_items(spark, input_dir, batch_id, now)
    if items is None:
        return None
    items = items.cache()
    bad = items.where(F.col("_corrupt_record").isNotNull() | T._blank(F.col(C.ITEM_ID)))
    n_bad = bad.count()
    if n_bad:
        q = bad.select(
            F.lit(batch_id).alias(C.BATCH_ID),
            F.lit(f"{input_dir}/{ITEMS_FILE}").alias(C.SOURCE_FILE),
            F.lit(None).cast("long").alias(C.LINE),
            F.coalesce("_corrupt_record", F.to_json(F.struct(C.ITEM_ID, "title"))).alias(C.RAW),
            F.lit("item_invalid").alias(C.REASON),
            F.lit("malformed item or missing item_id").alias(C.DETAIL),
            F.lit(now).cast("timestamp").alias(C.INGESTED_AT),
        )
        lake.append(C.BRONZE_QUARANTINE, q, txn=Txn(f"recpipe.ingest.items/{batch_id}", 1))
    good = items.where(F.col("_corrupt_record").isNull() & ~T._blank(F.col(C.ITEM_ID))).drop(
        "_corrupt_record"
    )
    good = good.dropDuplicates([C.ITEM_ID])
    total = items.count()
    commit = lake.upsert(C.SILVER_ITEMS, good, keys=[C.ITEM_ID], txn=txn)
    items.unpersist()
    return {"input_records": total, "upserted": total - n_bad, "rejected": n_bad, "_commit": commit}


def _set_aside(batch: BatchFiles, not_read: dict[str, str]) -> None:
    """Move files found to hold no records from ``batch.files`` to ``batch.not_read``."""
    for f, why in not_read.items():
        if f in batch.files:
            batch.files.remove(f)
        batch.not_read[f] = why
    batch.not_read = dict(sorted(batch.not_read.items()))


def _too_few_valid(
    cfg: Config, classified: DataFrame, reason_counts: dict[str | None, int], batch_id: str
) -> str | None:
    """Why the batch must not be published (no valid record, or fewer than
    ``ingest.min_accepted_share`` of its input), naming the top quarantine reasons; else None.

    Valid = not quarantined: an event already stored (a redelivery, a rerun) counts as valid.
    """
    total = sum(reason_counts.values())
    valid = reason_counts.get(None, 0)
    share = valid / total if total else 0.0
    min_share = cfg.ingest.min_accepted_share
    if valid > 0 and share >= min_share:
        return None
    msg = (
        f"batch {batch_id}: {valid} of {total} input records ({share:.1%}) passed validation, "
        f"ingest.min_accepted_share is {min_share}"
    )
    if total == valid:
        return msg
    by_detail = (
        classified.where(F.col(C.REASON).isNotNull()).groupBy(C.REASON, C.DETAIL).agg(F.count("*").alias("n"))
    )
    top = (
        by_detail.withColumn("total", F.sum("n").over(Window.partitionBy(C.REASON)))
        .withColumn("rk", F.row_number().over(Window.partitionBy(C.REASON).orderBy(F.desc("n"), C.DETAIL)))
        .where(F.col("rk") == 1)
        .orderBy(F.desc("total"), C.REASON)
        .limit(3)
        .collect()
    )
    parts = [f"{r[C.REASON]} {r['total']} (most often '{(r[C.DETAIL] or '')[:80]}': {r['n']})" for r in top]
    msg += "; top quarantine reasons: " + ", ".join(parts)
    if reason_counts.get(C.MISSING_FIELD):
        msg += (
            "; map the source's columns or constants with ingest.column_mapping, e.g. "
            "event_type: {const: click} (see recpipe ingest --help)"
        )
    return msg


def _record_run(
    lake: Lake, summary: dict[str, Any], started: dt.datetime, status: str, txn: Txn | None = None
) -> None:
    faults.point("runs", C.OPS_RUNS)  # commits done, run row not yet (crash tests)
    # Through the stage contract's recorder: under `recpipe.stages` it becomes part of the
    # stage attempt's row instead of a second row.
    from recpipe.stages.runs import RunRow, record

    row = RunRow(
        run_id=summary["run_id"],
        job=summary["job"],
        status=status,
        started_at=started,
        finished_at=dt.datetime.now(dt.UTC),
        duration_s=float(summary["duration_s"]),
        summary=summary,
        batch_id=summary["batch_id"],
        input_records=summary["input_records"],
        accepted=summary["accepted"],
        duplicates=summary["duplicates"],
        quarantined=summary["quarantined_by_reason"],
        table_versions=summary["table_versions"],
    )
    record(lake, row, txn=txn or Txn(f"recpipe.ingest/{summary['batch_id']}", 1))
