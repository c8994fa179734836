"""Pure DataFrame -> DataFrame transforms of the ingest job (no IO, no session building)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recpipe import constants as C

_STR_FIELDS = [f for f in C.RAW_FIELDS if f != "is_history"]
# Schema of parsed raw lines (mapInArrow output): one column per raw field, under its canonical name.
PARSED_DDL = (
    "source_file string, line long, raw string, parse_error string, "
    + "".join(f"{f} string, " for f in _STR_FIELDS)
    + "is_history boolean"
)
PARSED_ARROW = pa.schema(
    [("source_file", pa.string()), ("line", pa.int64()), ("raw", pa.string()), ("parse_error", pa.string())]
    + [(f, pa.string()) for f in _STR_FIELDS]
    + [("is_history", pa.bool_())]
)


def _scalar_text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v)
    return json.dumps(v, separators=(",", ":"))


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A parsed row with this line number reports a file that yielded no records (``parse_error`` says
# why: corrupt gzip, empty after decompression); it is not a record.
FILE_ROW_LINE = 0


_EMPTY = "empty file (no records)"


class UnreadableFile(ValueError):
    """A file's bytes cannot be decoded into records (e.g. a corrupt or truncated gzip)."""


def decompress(path: str, data: bytes) -> bytes:
    """The content of an event file: gunzipped when its name ends with ``.gz``, else as is."""
    if not path.lower().endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFile(f"unreadable gzip: {exc}") from None


def parse_jsonl_bytes(
    source_file: str, data: bytes, sources: dict[str, str] | None = None
) -> dict[str, list[Any]]:
    """Split one JSONL file into records; each gets its line number and parse outcome.

    ``sources`` maps a canonical field to the JSON key it is read from (default: its own name).
    """
    keys = {f: (sources or {}).get(f, f) for f in C.RAW_FIELDS}
    cols: dict[str, list[Any]] = {k: [] for k in ("source_file", "line", "raw", "parse_error", *C.RAW_FIELDS)}
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, bline in enumerate(lines, start=1):
        bline = bline.rstrip(b"\r")
        raw = bline.decode("utf-8", errors="replace")
        error = None
        obj: Any = None
        if "\ufffd" in raw and b"\xef\xbf\xbd" not in bline:
            error = "invalid UTF-8"
        else:
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                error = f"invalid JSON: {exc.msg} at column {exc.colno}"
            except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit limit
                error = f"invalid JSON: {exc}"
            else:
                if not isinstance(obj, dict):
                    error = f"not a JSON object ({type(obj).__name__})"
        rec = obj if error is None else {}
        texts = {f: _scalar_text(rec.get(keys[f])) for f in _STR_FIELDS}
        bad = [keys[f] for f, t in texts.items() if t is not None and not _utf8_encodable(t)]
        if bad:  # "\ud800": valid JSON, but no UTF-8 string can hold it
            error = f"invalid JSON: unpaired surrogate escape in {bad[0]!r}"
            texts = dict.fromkeys(texts)
        cols["source_file"].append(source_file)
        cols["line"].append(n)
        cols["raw"].append(raw)
        cols["parse_error"].append(error)
        for f in _STR_FIELDS:
            cols[f].append(texts[f])
        hist = rec.get(keys["is_history"]) if error is None else None
        cols["is_history"].append(hist if isinstance(hist, bool) else None)
    return cols


def _file_row(path: str, error: str) -> dict[str, list[Any]]:
    row: dict[str, list[Any]] = {f: [None] for f in C.RAW_FIELDS}
    row.update(source_file=[path], line=[FILE_ROW_LINE], raw=[None], parse_error=[error])
    return row


def read_jsonl_files(
    files: DataFrame, open_file: Callable[[str], bytes], sources: dict[str, str] | None = None
) -> DataFrame:
    """Parse the JSONL files named in ``files`` (column ``path``) on the executors.

    ``open_file(path) -> bytes`` is shipped to the executors (it must be picklable); ``.gz``
    files are decompressed. A file that yields no records (corrupt gzip, empty after
    decompression) gives one row with ``line`` = :data:`FILE_ROW_LINE` and the reason in
    ``parse_error``, so the driver can account for it. ``sources``: see :func:`parse_jsonl_bytes`.
    """
    schema = PARSED_DDL

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for path in batch.column("path").to_pylist():
                try:
                    data = decompress(path, open_file(path))
                except UnreadableFile as exc:
                    cols = _file_row(path, str(exc))
                else:
                    cols = parse_jsonl_bytes(path, data, sources)
                    if not cols["line"]:
                        cols = _file_row(path, _EMPTY)
                yield pa.RecordBatch.from_pydict(cols, schema=PARSED_ARROW)

    return files.mapInArrow(parse, schema)


def probe_files(files: DataFrame, open_file: Callable[[str], bytes]) -> DataFrame:
    """For each ``path`` in ``files``: why it cannot be read as records (null when it can).

    Runs on the executors; the same :func:`decompress` as :func:`read_jsonl_files`, for sources
    that Spark's own readers parse (a corrupt gzip would otherwise fail the job in the JVM).
    """

    def probe(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            paths = batch.column("path").to_pylist()
            errors: list[str | None] = []
            for path in paths:
                try:
                    data = decompress(path, open_file(path))
                except UnreadableFile as exc:
                    errors.append(str(exc))
                else:
                    errors.append(None if data else _EMPTY)
            yield pa.RecordBatch.from_pydict({"path": paths, "error": errors})

    return files.mapInArrow(probe, "path string, error string")


def _epoch_to_iso(col: Column, unit: str) -> Column:
    """An epoch number in ``unit`` (s/ms/us, decimals allowed) -> ISO-8601 text; other text as is."""
    digits = {"s": 12, "ms": 15, "us": 18}[unit]  # more would overflow (year > 33000)
    factor = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    s = F.trim(col)
    micros = (s.try_cast("decimal(30,9)") * F.lit(factor)).try_cast("long")
    iso = F.date_format(F.timestamp_micros(micros), "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
    return F.when(s.rlike(rf"^-?\d{{1,{digits}}}(\.\d{{1,9}})?$"), iso).otherwise(col)


def apply_column_specs(df: DataFrame, consts: Mapping[str, str], epoch_units: Mapping[str, str]) -> DataFrame:
    """Fill constant fields and turn epoch-number fields into ISO text (``ingest.column_mapping``).

    ``consts``: canonical field -> value for every record; ``epoch_units``: field -> s/ms/us.
    """
    for f, value in consts.items():
        df = df.withColumn(f, F.lit(value).cast("boolean" if f == "is_history" else "string"))
    for f, unit in epoch_units.items():
        df = df.withColumn(f, _epoch_to_iso(F.col(f), unit))
    return df


_ISO_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"
_INT_RE = r"^-?\d{1,15}$"  # epoch ms; longer would overflow


def parse_timestamp(col: Column) -> Column:
    """Epoch milliseconds (integer) or ISO-8601 (``Z``, ``+hh:mm`` or naive = UTC) -> timestamp."""
    s = F.trim(col)
    return (
        F.when(s.rlike(_INT_RE), F.timestamp_millis(s.try_cast("long")))
        .when(s.rlike(_ISO_RE), s.try_cast("timestamp"))
        .otherwise(F.lit(None).cast("timestamp"))
    )


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


# The parsed raw field ``reason`` (a recommendation's reason code) under the name it has from
# :func:`classify` on, where ``reason`` is the quarantine reason; :func:`to_silver` stores it as ``reason``.
REASON_CODE = "reason_code"


def _served_missing(etype: Column) -> Column:
    """The serving-log fields a served record lacks, comma-separated ("" when none or not served).

    Served = ``list_run_id`` set. A served impression needs ``request_id``, ``position``, ``arm``
    and ``propensity``; any other served event (a click, ...) needs ``request_id``, the key that
    attributes it to its impression. Values are range-checked by the invalid-value rules.
    """
    served = ~_blank(F.col(C.LIST_RUN_ID))
    imp = served & (etype == "impression")
    return F.concat_ws(
        ",",
        F.when(served & _blank(F.col(C.REQUEST_ID)), F.lit(C.REQUEST_ID)),
        F.when(imp & F.col(C.POSITION).isNull(), F.lit(C.POSITION)),
        F.when(imp & _blank(F.col(C.ARM)), F.lit(C.ARM)),
        F.when(imp & F.col(C.PROPENSITY).isNull(), F.lit(C.PROPENSITY)),
    )


def classify(
    df: DataFrame,
    allowed_event_types: list[str],
    aliases: dict[str, str],
    min_ts: str,
    max_ts: Column,
) -> DataFrame:
    """Add ``event_type_norm``, ``ts_parsed`` and ``reason``/``detail`` (null reason = valid).

    Checked in order: malformed, missing_field, unknown_event_type, bad_timestamp,
    future_timestamp, invalid_field — a record gets the first reason that applies. invalid_field
    covers values out of range and served records (``list_run_id`` set) without the fields of the
    serving-log contract (:func:`_served_missing`). The raw ``reason`` field becomes
    :data:`REASON_CODE`.
    """
    df = df.withColumnRenamed(C.REASON, REASON_CODE)
    etype = F.lower(F.trim(F.col("event_type")))
    if aliases:
        mapping = F.create_map(*[x for k, v in aliases.items() for x in (F.lit(k), F.lit(v))])
        etype = F.coalesce(F.element_at(mapping, etype), etype)
    ts = parse_timestamp(F.col("ts"))
    missing = [F.when(_blank(F.col(f)), F.lit(f)) for f in C.REQUIRED_RAW_FIELDS]
    missing_list = F.concat_ws(",", *missing)
    pos = F.trim(F.col("position")).try_cast("int")
    dwell = F.trim(F.col("dwell_ms")).try_cast("long")
    prop = F.trim(F.col("propensity")).try_cast("double")
    invalid = F.concat_ws(
        ",",
        F.when(F.col("position").isNotNull() & (pos.isNull() | (pos < 0)), F.lit("position")),
        F.when(F.col("dwell_ms").isNotNull() & (dwell.isNull() | (dwell < 0)), F.lit("dwell_ms")),
        F.when(
            F.col("propensity").isNotNull() & (prop.isNull() | (prop <= 0) | (prop > 1)), F.lit("propensity")
        ),
    )
    served_missing = _served_missing(etype)
    invalid_detail = F.concat_ws(
        "; ",
        F.when(invalid != "", F.concat(F.lit("invalid value in: "), invalid)),
        F.when(
            served_missing != "",
            F.concat(etype, F.lit(" from a served list (list_run_id set) without: "), served_missing),
        ),
    )
    min_col = F.lit(min_ts).cast("timestamp")
    reason = (
        F.when(F.col("parse_error").isNotNull(), F.lit(C.MALFORMED))
        .when(missing_list != "", F.lit(C.MISSING_FIELD))
        .when(~etype.isin(allowed_event_types), F.lit(C.UNKNOWN_EVENT_TYPE))
        .when(ts.isNull() | (ts < min_col), F.lit(C.BAD_TIMESTAMP))
        .when(ts > max_ts, F.lit(C.FUTURE_TIMESTAMP))
        .when(invalid_detail != "", F.lit(C.INVALID_FIELD))
    )
    detail = (
        F.when(F.col("parse_error").isNotNull(), F.col("parse_error"))
        .when(missing_list != "", F.concat(F.lit("missing or empty: "), missing_list))
        .when(~etype.isin(allowed_event_types), F.concat(F.lit("event_type="), F.col("event_type")))
        .when(ts.isNull(), F.concat(F.lit("unparseable ts="), F.col("ts")))
        .when(ts < min_col, F.concat(F.lit(f"ts before {min_ts}: "), F.col("ts")))
        .when(ts > max_ts, F.concat(F.lit("ts in the future: "), F.col("ts")))
        .when(invalid_detail != "", invalid_detail)
    )
    return (
        df.withColumn("event_type_norm", etype)
        .withColumn("ts_parsed", ts)
        .withColumn(C.REASON, reason)
        .withColumn(C.DETAIL, detail)
        .withColumn("position_int", pos)
        .withColumn("dwell_long", dwell)
        .withColumn("propensity_double", prop)
    )


def _hmac_pads(key: str) -> tuple[str, str]:
    k = key.encode()
    if len(k) > 64:
        k = hashlib.sha256(k).digest()
    k = k.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in k).hex()
    opad = bytes(b ^ 0x5C for b in k).hex()
    return ipad, opad


def pseudonymize(col: Column, key: str) -> Column:
    """HMAC-SHA256(key, id) as 32 hex chars, computed natively in Spark (no Python UDF)."""
    ipad, opad = _hmac_pads(key)
    inner = F.unhex(F.sha2(F.concat(F.unhex(F.lit(ipad)), F.encode(col, "UTF-8")), 256))
    outer = F.sha2(F.concat(F.unhex(F.lit(opad)), inner), 256)
    return F.when(col.isNull(), None).otherwise(F.concat(F.lit("p_"), F.substring(outer, 1, 32)))


def pseudonymize_py(value: str, key: str) -> str:
    """The same pseudonym as :func:`pseudonymize`, in Python (deletion requests, tests)."""
    return "p_" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def user_pseudonym(col: Column, key: str) -> Column:
    """The ``silver.events`` user id of a raw ``user_id`` value: trimmed, then pseudonymized.

    The one normalization of user ids: ingest and deletion requests (``recpipe.privacy``) use it.
    """
    return pseudonymize(F.trim(col), key)


def to_silver(df: DataFrame, key: str, batch_id: str, ingested_at: Column) -> DataFrame:
    """Valid classified records -> the ``silver.events`` schema (ids normalized, user pseudonymized),
    ``C.SILVER_EVENTS_FULL_SCHEMA``, plus ``source_file`` and ``line``."""
    user = user_pseudonym(F.col("user_id"), key)
    item = F.trim(F.col("item_id"))
    ts_ms = F.unix_micros(F.col("ts_parsed"))
    derived_id = F.substring(
        F.sha2(
            F.concat_ws(
                "\u001f",
                user,
                item,
                F.col("event_type_norm"),
                ts_ms.cast("string"),
                F.coalesce(F.trim(F.col("request_id")), F.lit("")),
                F.coalesce(F.col("position_int").cast("string"), F.lit("")),
            ),
            256,
        ),
        1,
        32,
    )
    event_id = F.when(_blank(F.col("event_id")), derived_id).otherwise(F.trim(F.col("event_id")))
    nullif_blank: Callable[[str], Column]
    nullif_blank = lambda c: F.when(_blank(F.col(c)), None).otherwise(F.trim(F.col(c)))  # noqa: E731
    return df.select(
        event_id.alias(C.EVENT_ID),
        user.alias(C.USER_ID),
        item.alias(C.ITEM_ID),
        F.col("event_type_norm").alias(C.EVENT_TYPE),
        F.col("ts_parsed").alias(C.EVENT_TS),
        nullif_blank("session_id").alias(C.SESSION_ID),
        nullif_blank("request_id").alias(C.REQUEST_ID),
        F.col("position_int").alias(C.POSITION),
        F.col("dwell_long").alias(C.DWELL_MS),
        F.lower(nullif_blank("device")).alias(C.DEVICE),
        F.upper(nullif_blank("country")).alias(C.COUNTRY),
        F.col("propensity_double").alias(C.PROPENSITY),
        F.coalesce(F.col("is_history"), F.lit(False)).alias(C.IS_HISTORY),
        F.lit(batch_id).alias(C.BATCH_ID),
        ingested_at.alias(C.INGESTED_AT),
        F.to_date(F.col("ts_parsed")).alias(C.EVENT_DATE),
        nullif_blank(C.LIST_RUN_ID).alias(C.LIST_RUN_ID),
        nullif_blank(C.ARM).alias(C.ARM),
        nullif_blank(REASON_CODE).alias(C.REASON),
        F.col(C.SOURCE_FILE),
        F.col(C.LINE),
    )


def dedupe_within_batch(df: DataFrame) -> DataFrame:
    """Keep the first delivery of each event_id (by source file, then line); flags the rest."""
    w = Window.partitionBy(C.EVENT_ID).orderBy(C.SOURCE_FILE, C.LINE)
    return df.withColumn("_rank", F.row_number().over(w))
