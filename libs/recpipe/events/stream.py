"""``recpipe stream``: Spark Structured Streaming over the raw landing folder.

The stream's source is Spark's file source (``binaryFile``, recursive, only the file names and
sizes are read): it finds the files that landed since the last micro-batch and records each
micro-batch's file list in its checkpoint *before* the micro-batch runs. Each micro-batch is then
ingested by the batch ingest itself (:func:`recpipe.events.ingest.ingest_batch`: the same parse,
quarantine reasons, pseudonyms, dedupe against the stored events of the dates it touches, quality
gate and ``ops.runs`` row), as batch ``stream-<name>-<micro-batch id>-<hash of its files>``. Every
commit carries that batch's token, so a micro-batch killed half way is replayed by the restarted
query with the same files and the same id: what it committed is skipped, the rest is written,
and nothing is lost or written twice. ``gold.user_profiles`` is then merged from exactly the
events the micro-batch stored in ``silver.events`` (its own token: the merge is applied once).

``--once`` is ``trigger(availableNow=True)``: every file not yet ingested, then stop (scheduled
catch-up). Without it a micro-batch runs every ``stream.trigger_seconds`` until SIGTERM/SIGINT.

Files must land atomically (write ``.name`` or ``_name``, then rename): like Spark's file sources
the stream skips names starting with ``.`` or ``_``, and it reads a file once, when it first sees
it (a file appended to later is not read again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession

from recpipe.config import Config
from recpipe.events import ingest as I
from recpipe.lake import Lake, Txn, open_lake
from recpipe.lake.fs import filesystem, local_path, resolved, with_scheme_of

log = logging.getLogger(__name__)

# The file source's schema; only path and length are selected (the content is read by ingest).
BINARY_SCHEMA = "path string, modificationTime timestamp, length long, content binary"
# The summary's counts, summed over the run's micro-batches (the same keys as `recpipe ingest`).
COUNT_KEYS = ("input_records", "accepted", "duplicates", "quarantined", "files")


def checkpoint_dir(cfg: Config) -> str:
    """``stream.checkpoint_dir``, else ``<lake.root>/_checkpoints/stream/<stream.name>``."""
    if cfg.stream.checkpoint_dir:
        return cfg.stream.checkpoint_dir
    root = resolved(cfg.lake.root)
    return f"{root.rstrip('/')}/_checkpoints/stream/{cfg.stream.name}"


def watched_folder(input_dir: str) -> tuple[str, bool]:
    """The folder the stream watches (``events/`` when the landing folder has one) and whether it
    is the landing folder itself (then its catalog and manifests are not event files)."""
    fs, base = filesystem(input_dir)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise I.IngestError(f"input folder not found: {input_dir}")
    events = f"{base}/{I.EVENTS_DIR}"
    if fs.get_file_info(events).type == pafs.FileType.Directory:
        return with_scheme_of(events, input_dir), False
    return with_scheme_of(base, input_dir), True


def classify_files(rows: list[tuple[str, int]], fmt: str, root: str, is_landing_root: bool) -> I.BatchFiles:
    """A micro-batch's (path, size) rows -> the event files of ``fmt`` and the files not read, by
    the rules of batch ingest (:func:`recpipe.events.ingest.scan_input`)."""
    root = local_path(root).rstrip("/")
    out = I.BatchFiles([])
    for path, size in rows:
        rel = path[len(root) :].lstrip("/") if path.startswith(root + "/") else path
        if is_landing_root and rel in I.KNOWN_ROOT_FILES:
            continue
        why = I.not_read_reason(Path(path).name, size, fmt, "stream")
        if why is None:
            out.files.append(path)
        else:
            out.not_read[path] = why
    out.files.sort()
    out.not_read = dict(sorted(out.not_read.items()))
    return out


def micro_batch_id(name: str, epoch_id: int, rows: list[tuple[str, int]]) -> str:
    """``stream-<name>-<epoch>-<hash>``: stable for a replayed micro-batch (same files from the
    checkpoint), different for other files under the same epoch (a checkpoint that was reset)."""
    h = hashlib.sha1()
    for path, size in sorted(rows):
        h.update(path.encode())
        h.update(str(size).encode())
    return f"stream-{name}-{epoch_id}-{h.hexdigest()[:12]}"


class _Catalog:
    """``items.jsonl`` at the landing root: upserted with the first micro-batch after it changed
    (size or modification time), remembered in the checkpoint folder."""

    def __init__(self, input_dir: str, checkpoint: str) -> None:
        self.fs, base = filesystem(input_dir)
        self.path = f"{base}/{I.ITEMS_FILE}"
        cfs, cbase = filesystem(checkpoint)
        self.cfs, self.state = cfs, f"{cbase}/recpipe_catalog.json"

    def fingerprint(self) -> str | None:
        info = self.fs.get_file_info(self.path)
        if info.type != pafs.FileType.File:
            return None
        return f"{info.size}:{info.mtime_ns}"

    def seen(self) -> str | None:
        if self.cfs.get_file_info(self.state).type != pafs.FileType.File:
            return None
        with self.cfs.open_input_stream(self.state) as fh:
            fingerprint: str | None = json.loads(fh.read().decode()).get("fingerprint")
        return fingerprint

    def remember(self, fingerprint: str) -> None:
        self.cfs.create_dir(self.state.rsplit("/", 1)[0], recursive=True)
        with self.cfs.open_output_stream(self.state) as fh:
            fh.write(json.dumps({"fingerprint": fingerprint}).encode())


class StreamRun:
    """One run of the query: what each micro-batch did, and the first error (raised by the caller
    as itself, not as Spark's wrapped StreamingQueryException)."""

    def __init__(self, cfg: Config, spark: SparkSession, lake: Lake, input_dir: str, max_batches: int | None):
        self.cfg, self.spark, self.lake, self.input_dir = cfg, spark, lake, input_dir
        self.root, self.is_landing_root = watched_folder(input_dir)
        self.catalog = _Catalog(input_dir, checkpoint_dir(cfg))
        self.max_batches = max_batches
        self.batches: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def __call__(self, frame: DataFrame, epoch_id: int) -> None:
        try:
            self._micro_batch(frame, epoch_id)
        except BaseException as exc:
            self.error = self.error or exc
            raise

    def _micro_batch(self, frame: DataFrame, epoch_id: int) -> None:
        rows = sorted((local_path(r["path"]), int(r["length"] or 0)) for r in frame.collect())
        if not rows:
            return
        cfg = self.cfg
        batch = classify_files(rows, cfg.ingest.format, self.root, self.is_landing_root)
        batch_id = micro_batch_id(cfg.stream.name, epoch_id, rows)
        t0 = time.perf_counter()
        info: dict[str, Any] = {"micro_batch": epoch_id, "batch_id": batch_id}
        if not batch.files:
            # Only files ingest does not read: fail (as batch ingest) or note them and move on.
            I.check_not_read(cfg.ingest, batch_id, batch.not_read)
            log.warning(
                "stream %s: micro-batch %d has no event file: %s", cfg.stream.name, epoch_id, batch.not_read
            )
            self.batches.append({**info, "files": 0, "files_not_read": batch.not_read})
            return
        I.check_batch_files(cfg, self.spark, batch, batch_id, self.input_dir, None)
        fingerprint = self.catalog.fingerprint()
        with_catalog = fingerprint is not None and fingerprint != self.catalog.seen()
        extra = {"stream": {"name": cfg.stream.name, "micro_batch": epoch_id}}
        summary = I.ingest_batch(
            cfg, self.spark, self.lake, self.input_dir, batch, batch_id, catalog=with_catalog, extra=extra
        )
        profiles = None
        if cfg.stream.update_profiles:
            from recpipe.features.profiles import update_profiles

            dates = [dt.date.fromisoformat(d) for d in summary.get("event_dates") or []]
            txn = Txn(f"recpipe.profiles/{batch_id}", 1)
            profiles = update_profiles(cfg, self.spark, self.lake, batch_id, txn, event_dates=dates)
        if with_catalog and fingerprint is not None:
            self.catalog.remember(fingerprint)
        out = {
            **info,
            **{
                k: summary.get(k)
                for k in (*COUNT_KEYS, "quarantined_by_reason", "late_events", "files_not_read")
            },
            "items": summary.get("items"),
            "already_ingested": summary.get("already_ingested"),
            "quality_success": (summary.get("quality") or {}).get("success"),
            "profiles": profiles,
            "report_html": summary.get("report_html"),
            "duration_s": round(time.perf_counter() - t0, 3),
            # when the micro-batch's events and profiles were stored (landing-to-profile latency)
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        }
        self.batches.append(out)
        log.info(
            "stream %s: micro-batch %d: %d files, %d records, %d accepted, %d duplicates, %d quarantined, "
            "%s profiles updated (%.1f s)",
            cfg.stream.name,
            epoch_id,
            out["files"],
            out["input_records"],
            out["accepted"],
            out["duplicates"],
            out["quarantined"],
            (profiles or {}).get("users_updated", "no"),
            out["duration_s"],
        )
        if self.max_batches is not None and len(self.batches) >= self.max_batches:
            self.done.set()

    def summary(self, mode: str, checkpoint: str, t_start: float) -> dict[str, Any]:
        ran = [b for b in self.batches if b.get("files")]
        by_reason: dict[str, int] = {}
        for b in ran:
            for k, v in (b.get("quarantined_by_reason") or {}).items():
                by_reason[k] = by_reason.get(k, 0) + v
        not_read: dict[str, str] = {}
        for b in self.batches:
            not_read.update(b.get("files_not_read") or {})
        lates = [b.get("late_events") for b in ran if b.get("late_events") is not None]
        users = sum(((b.get("profiles") or {}).get("users_updated") or 0) for b in ran)
        return {
            "job": "stream",
            "mode": mode,
            "name": self.cfg.stream.name,
            "input": self.input_dir,
            "checkpoint": checkpoint,
            "micro_batches": len(self.batches),
            **{k: sum(int(b.get(k) or 0) for b in ran) for k in COUNT_KEYS},
            "quarantined_by_reason": dict(sorted(by_reason.items())),
            "late_events": sum(lates) if lates else None,
            "files_not_read": dict(sorted(not_read.items())),
            "profiles_updated": users if self.cfg.stream.update_profiles else None,
            "batches": self.batches,
            "duration_s": round(time.perf_counter() - t_start, 3),
        }


def run_stream(
    cfg: Config,
    spark: SparkSession,
    input_dir: str | None = None,
    once: bool = False,
    max_batches: int | None = None,
    lake: Lake | None = None,
) -> dict[str, Any]:
    """Run the landing folder's stream: ``once`` = every new file, then stop; else a micro-batch
    every ``stream.trigger_seconds`` until SIGTERM/SIGINT or ``max_batches`` micro-batches that
    had files. Returns the run's summary (counts summed over its micro-batches)."""
    t_start = time.perf_counter()
    input_dir = input_dir or cfg.data.raw_dir
    lake = lake or open_lake(cfg, spark)
    run = StreamRun(cfg, spark, lake, input_dir, max_batches)
    checkpoint = checkpoint_dir(cfg)
    reader = spark.readStream.format("binaryFile").schema(BINARY_SCHEMA).option("recursiveFileLookup", "true")
    if cfg.stream.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", cfg.stream.max_files_per_trigger)
    source = reader.load(run.root).select("path", "length")
    writer = source.writeStream.foreachBatch(run).option("checkpointLocation", checkpoint)
    if once:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{cfg.stream.trigger_seconds} seconds")
    mode = "once" if once else "continuous"
    log.info("stream %s (%s): watching %s, checkpoint %s", cfg.stream.name, mode, run.root, checkpoint)
    query = writer.start()
    stop_signal: list[int] = []
    previous = {}
    if not once and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda s, _f: stop_signal.append(s))
    try:
        while query.isActive:
            if stop_signal or run.done.is_set():
                why = f"signal {stop_signal[0]}" if stop_signal else f"{max_batches} micro-batches"
                log.info("stream %s: stopping after %s", cfg.stream.name, why)
                query.stop()
                break
            try:
                query.awaitTermination(1)
            except Exception:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if run.error is not None:
        raise run.error
    exc = query.exception()
    if exc is not None:
        raise I.IngestError(f"stream {cfg.stream.name} stopped: {str(exc).splitlines()[0]}")
    out = run.summary(mode, checkpoint, t_start)
    out["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return out
