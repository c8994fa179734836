"""The ingest job: raw event files -> bronze.events_raw, bronze.quarantine, silver.events, silver.items.

Every input record is accepted, counted as a duplicate, or quarantined with a reason; the counts
add up to the input and are appended to ``ops.runs``. Each table write carries an idempotency
token for the batch, so re-running a batch leaves every table version unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe import quality
from recpipe.config import Config
from recpipe.events import transforms as T
from recpipe.lake import Lake, Txn, open_lake

log = logging.getLogger(__name__)

ITEMS_FILE = "items.jsonl"
EVENTS_DIR = "events"


class IngestError(RuntimeError):
    """The batch cannot be ingested; nothing further was written."""


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def read_bytes(path: str) -> bytes:
    """Read a whole file, local or object store (runs on executors)."""
    fs, p = _fs(path)
    with fs.open_input_stream(p) as fh:
        return fh.read()


def list_event_files(input_dir: str, fmt: str, date: dt.date | None = None) -> list[str]:
    """The batch's event files, sorted: ``events/YYYY-MM-DD/*.jsonl`` (or .csv/.parquet)."""
    fs, base = _fs(input_dir)
    info = fs.get_file_info(base)
    if info.type != pafs.FileType.Directory:
        raise IngestError(f"input folder not found: {input_dir}")
    root = f"{base}/{EVENTS_DIR}"
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        root = base
    if date is not None:
        root = f"{root}/{date.isoformat()}"
    ext = {"jsonl": (".jsonl", ".json"), "csv": (".csv",), "parquet": (".parquet",)}[fmt]
    files = [
        i.path
        for i in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        if i.type == pafs.FileType.File and i.base_name.endswith(ext) and i.base_name != ITEMS_FILE
    ]
    prefix = "" if "://" not in input_dir else input_dir.split("://", 1)[0] + "://"
    return sorted(prefix + f for f in files)


def default_batch_id(input_dir: str, files: list[str]) -> str:
    """A deterministic batch id from the folder name and its file list with sizes."""
    fs, _ = _fs(input_dir)
    h = hashlib.sha1()
    for f in files:
        h.update(f.encode())
        h.update(str(fs.get_file_info(_fs(f)[1]).size).encode())
    return f"{Path(input_dir.rstrip('/')).name}-{h.hexdigest()[:12]}"


def _read_tabular(spark: SparkSession, cfg: Config, files: list[str]) -> DataFrame:
    """CSV/Parquet sources mapped onto the raw fields through ``ingest.column_mapping``."""
    if cfg.ingest.format == "csv":
        src = (
            spark.read.option("header", True)
            .option("sep", cfg.ingest.csv_delimiter)
            .option("inferSchema", False)
            .csv(files)
        )
    else:
        src = spark.read.parquet(*files)
    mapping = cfg.ingest.column_mapping
    unknown = [k for k in mapping if k not in C.RAW_FIELDS]
    if unknown:
        raise IngestError(f"{cfg.source_file}: ingest.column_mapping has unknown fields {unknown}")
    cols = []
    for f in C.RAW_FIELDS:
        name = mapping.get(f, f)
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


def read_raw(spark: SparkSession, cfg: Config, files: list[str]) -> DataFrame:
    """Parse the batch's files into one row per input record (``transforms.PARSED_DDL``)."""
    if cfg.ingest.format != "jsonl":
        return _read_tabular(spark, cfg, files)
    tasks = cfg.ingest.read_tasks or spark.sparkContext.defaultParallelism
    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(
        min(tasks, len(files)) or 1
    )
    return T.read_jsonl_files(paths, read_bytes)


def read_items(spark: SparkSession, input_dir: str, batch_id: str, now: dt.datetime) -> DataFrame | None:
    """``items.jsonl`` -> the ``silver.items`` schema; None when the batch has no catalog."""
    fs, base = _fs(input_dir)
    path = f"{base}/{ITEMS_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    raw_schema = (
        "item_id string, title string, text string, category string, subcategory string, "
        "tags array<string>, publisher string, published_ts string, expires_ts string, "
        "language string, status string, _corrupt_record string"
    )
    uri = path if "://" not in input_dir else input_dir.split("://", 1)[0] + "://" + path
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
    started = dt.datetime.now(dt.UTC)
    input_dir = input_dir or cfg.data.raw_dir
    lake = lake or open_lake(cfg, spark)
    files = list_event_files(input_dir, cfg.ingest.format, date)
    if not files:
        raise IngestError(
            f"no {cfg.ingest.format} event files under {input_dir}" + (f" for {date}" if date else "")
        )
    batch_id = batch_id or default_batch_id(input_dir, files)
    run_id = f"ingest-{batch_id}-{uuid.uuid4().hex[:8]}"
    key = cfg.pseudonym_key()
    timings: dict[str, float] = {}
    log.info("ingest batch %s: %d files from %s", batch_id, len(files), input_dir)

    # The batch's ingest time is fixed by its first run (stored in bronze), so reruns are identical.
    ingested_at = _batch_ingest_time(lake, batch_id) or started.replace(microsecond=0)
    max_ts = ingested_at + dt.timedelta(seconds=cfg.ingest.max_future_seconds)

    # 1. read + parse
    t0 = time.perf_counter()
    parsed = read_raw(spark, cfg, files)
    classified = T.classify(
        parsed,
        cfg.ingest.allowed_event_types,
        cfg.ingest.event_type_aliases,
        cfg.ingest.min_event_ts,
        F.lit(max_ts).cast("timestamp"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    reason_counts = {
        r[C.REASON]: r["n"] for r in classified.groupBy(C.REASON).agg(F.count("*").alias("n")).collect()
    }
    input_records = sum(reason_counts.values())
    quarantined = {k: v for k, v in reason_counts.items() if k is not None}
    timings["read_parse_s"] = time.perf_counter() - t0

    # 2. normalize + dedupe (within the batch, then against events stored by other batches)
    t0 = time.perf_counter()
    ingested_col = F.lit(ingested_at).cast("timestamp")
    valid = T.to_silver(classified.where(F.col(C.REASON).isNull()), key, batch_id, ingested_col)
    first = T.dedupe_within_batch(valid).where(F.col("_rank") == 1).drop("_rank")
    # The event dates of the batch's valid records (from the cache): the partitions it touches.
    dates = [
        r[0]
        for r in classified.where(F.col(C.REASON).isNull())
        .select(F.to_date("ts_parsed"))
        .distinct()
        .collect()
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
    valid_count = reason_counts.get(None, 0)
    is_late = F.date_trunc("hour", F.col(C.EVENT_TS)) < _file_hour(F.col(C.SOURCE_FILE))
    agg = new.agg(F.count("*").alias("n"), F.sum(is_late.cast("long")).alias("late")).first()
    accepted = int(agg["n"])
    late = int(agg["late"] or 0) if cfg.ingest.format == "jsonl" else None
    duplicates = valid_count - accepted
    timings["dedupe_s"] = time.perf_counter() - t0
    if duplicates < 0:
        raise IngestError(f"batch {batch_id}: {accepted} accepted events out of {valid_count} valid records")

    # 3. write (each commit idempotent for this batch)
    t0 = time.perf_counter()
    txn = Txn(f"recpipe.ingest/{batch_id}", 1)
    commits = {}
    raw_rows = classified.select(
        F.lit(batch_id).alias(C.BATCH_ID), C.SOURCE_FILE, C.LINE, C.RAW, ingested_col.alias(C.INGESTED_AT)
    )
    commits[C.BRONZE_EVENTS_RAW] = lake.append(C.BRONZE_EVENTS_RAW, raw_rows, txn=txn)
    q_rows = classified.where(F.col(C.REASON).isNotNull()).select(
        F.lit(batch_id).alias(C.BATCH_ID),
        C.SOURCE_FILE,
        C.LINE,
        C.RAW,
        C.REASON,
        C.DETAIL,
        ingested_col.alias(C.INGESTED_AT),
    )
    commits[C.BRONZE_QUARANTINE] = lake.append(C.BRONZE_QUARANTINE, q_rows, txn=txn)
    silver_rows = new.drop(C.SOURCE_FILE, C.LINE)
    commits[C.SILVER_EVENTS] = lake.insert_new(
        C.SILVER_EVENTS, silver_rows, keys=[C.EVENT_ID], partition_by=[C.EVENT_DATE], txn=txn
    )
    sc = commits[C.SILVER_EVENTS]
    if sc.committed and sc.rows_written != accepted:
        # Another batch stored some of these events between our dedupe and our commit.
        log.warning(
            "batch %s: %d events were stored concurrently by another batch",
            batch_id,
            accepted - sc.rows_written,
        )
        duplicates += accepted - sc.rows_written
        accepted = sc.rows_written
    items_summary = _ingest_items(spark, lake, input_dir, batch_id, started, txn)
    if items_summary is not None:
        commits[C.SILVER_ITEMS] = items_summary.pop("_commit")
    timings["write_commit_s"] = time.perf_counter() - t0
    timings["commit_s"] = sum(c.timings.get("commit_s", 0.0) for c in commits.values())
    for c in (classified, new):
        c.unpersist()

    # 4. quality gate on the partitions this batch touched
    t0 = time.perf_counter()
    version = lake.version(C.SILVER_EVENTS)
    to_check = lake.read(C.SILVER_EVENTS, version).where(F.col(C.EVENT_DATE).isin(dates)).cache()
    min_ts = dt.datetime.fromisoformat(cfg.ingest.min_event_ts.replace("Z", "+00:00"))
    report = quality.validate(
        to_check,
        "silver_events",
        quality.silver_events_checks(cfg.ingest.allowed_event_types, min_ts, max_ts),
        C.SILVER_EVENTS,
        version,
    )
    to_check.unpersist()
    quality.record(lake, report, run_id=f"ingest/{batch_id}/v{version}")
    timings["quality_gate_s"] = time.perf_counter() - t0

    versions = {t: lake.version(t) for t in commits}
    summary: dict[str, Any] = {
        "job": "ingest",
        "batch_id": batch_id,
        "run_id": run_id,
        "input_records": input_records,
        "accepted": accepted,
        "duplicates": duplicates,
        "quarantined": sum(quarantined.values()),
        "quarantined_by_reason": dict(sorted(quarantined.items())),
        "late_events": late,
        "files": len(files),
        "items": items_summary,
        "already_ingested": not sc.committed and sc.skipped_reason is not None,
        "table_versions": versions,
        "quality": report.summary(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "duration_s": round(time.perf_counter() - t_start, 3),
    }
    _record_run(lake, summary, started, status="ok" if report.success else "quality_failed")
    if cfg.quality.fail_on_critical:
        report.raise_if_failed()
    return summary


def _file_hour(col):
    """``.../events/YYYY-MM-DD/HH.jsonl`` -> the delivery hour as a timestamp (null otherwise)."""
    hour = F.regexp_replace(F.regexp_extract(col, r"\d{4}-\d{2}-\d{2}/\d{2}(?=\.jsonl?$)", 0), "/", " ")
    return F.when(hour != "", F.to_timestamp(hour, "yyyy-MM-dd HH"))


def _batch_ingest_time(lake: Lake, batch_id: str) -> dt.datetime | None:
    if not lake.exists(C.BRONZE_EVENTS_RAW):
        return None
    row = (
        lake.read(C.BRONZE_EVENTS_RAW).where(F.col(C.BATCH_ID) == batch_id).agg(F.min(C.INGESTED_AT)).first()
    )
    if row is None or row[0] is None:
        return None
    ts = row[0]
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


def _record_run(lake: Lake, summary: dict[str, Any], started: dt.datetime, status: str) -> None:
    finished = dt.datetime.now(dt.UTC)
    row = (
        summary["run_id"],
        summary["job"],
        summary["batch_id"],
        status,
        started,
        finished,
        float(summary["duration_s"]),
        summary["input_records"],
        summary["accepted"],
        summary["duplicates"],
        summary["quarantined_by_reason"],
        {k: int(v) for k, v in summary["table_versions"].items() if v is not None},
        json.dumps(summary, default=str),
    )
    df = lake.spark.createDataFrame([row], C.OPS_RUNS_SCHEMA)
    lake.append(C.OPS_RUNS, df, txn=Txn(f"recpipe.ingest/{summary['batch_id']}", 1))
