"""Deletion on request: remove every row of a user from every table that holds it.

A user is found the way ingest found them. Tables with a ``user_id`` column are matched on the
pseudonym (``transforms.user_pseudonym`` of the id given). Tables with a ``raw`` column (bronze
events and quarantine) are matched on each raw line parsed as ingest parses it (the JSONL parser,
with ``ingest.column_mapping``'s user id key; Spark's JSON reader for the same key, which is how
tabular sources were stored) and normalized by the same function, so ``" U1 "`` and ``"\\u00551"``
are U1; a raw line that merely contains the quoted id (e.g. a malformed one) is removed as well.

Each delete is its own Delta commit that rewrites only the files holding the user. Without
``vacuum`` the old files stay on disk until ``recpipe vacuum`` passes the retention period. With
``vacuum`` every table that has a personal column is vacuumed with retention 0, checkpointed, and
its older log entries are deleted (``Lake.expire_log``): afterwards no data file, commit or
checkpoint under the lake root holds the raw id or the pseudonym (personal columns are never in
Delta file statistics). Time travel to versions before the request ends for those tables.

``ops.deletions`` records each request by a keyed digest of the pseudonym (HMAC with the
pseudonymization key), never the raw id or the pseudonym: whoever holds the key and the raw id can
check that a request was carried out, while the lake keeps no copy of the user.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from recpipe import constants as C
from recpipe.config import Config
from recpipe.events import transforms as T
from recpipe.frames import one_row
from recpipe.lake import Lake, open_lake

log = logging.getLogger(__name__)

OPS_DELETIONS = "ops.deletions"
DELETIONS_SCHEMA = StructType(
    [
        StructField("request_digest", StringType()),
        StructField("requested_at", TimestampType()),
        StructField("rows_removed", MapType(StringType(), LongType())),
        StructField("total_removed", LongType()),
        StructField("vacuumed", BooleanType()),
        StructField("files_erased", MapType(StringType(), LongType())),
        StructField("log_files_expired", MapType(StringType(), LongType())),
        StructField("files_erased_at", TimestampType()),
    ]
)
_PARSED = "_parsed_user"


def request_digest(pseudonym: str, key: str) -> str:
    """The id of a deletion request in ``ops.deletions``: HMAC-SHA256(key, pseudonym), not the pseudonym."""
    mac = hmac.new(key.encode(), b"recpipe.forget\x1f" + pseudonym.encode(), hashlib.sha256)
    return "d_" + mac.hexdigest()[:32]


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _user_key(cfg: Config) -> str | None:
    """The JSON key / source column ingest reads the user id from (None: a constant)."""
    spec = cfg.ingest.column_mapping.get(C.USER_ID, C.USER_ID)
    return spec if isinstance(spec, str) else spec.get("column")


def _with_parsed_user(lines: DataFrame, json_key: str) -> DataFrame:
    """``lines`` (a ``raw`` column) plus the user id that ingest's JSONL parser reads from each."""
    sources = None if json_key == C.USER_ID else {C.USER_ID: json_key}

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            users: list[str | None] = []
            for raw in batch.column(C.RAW).to_pylist():
                if raw is None:
                    users.append(None)
                    continue
                args = (sources,) if sources else ()
                cols = T.parse_jsonl_bytes("", raw.encode("utf-8"), *args)
                users.append(cols[C.USER_ID][0] if len(cols["line"]) == 1 else None)
            yield pa.RecordBatch.from_arrays(
                [batch.column(C.RAW), pa.array(users, pa.string())], names=[C.RAW, _PARSED]
            )

    return lines.select(C.RAW).mapInArrow(parse, f"{C.RAW} string, {_PARSED} string")


def _raw_predicate(
    lake: Lake, table: str, json_key: str | None, raw_id: str, pseudonym: str, key: str
) -> str | None:
    """A predicate selecting the table's raw lines of the user (by digest); None when it has none.

    The predicate names SHA-256 digests of the lines, never the id, so the delete's commit
    carries no copy of the user either.
    """
    matches = [F.instr(F.col(C.RAW), json.dumps(raw_id)) > 0]  # any line holding the quoted id
    lines = lake.read(table).select(C.RAW)
    if json_key is not None:
        lines = _with_parsed_user(lines, json_key)
        matches.append(T.user_pseudonym(F.col(_PARSED), key) == pseudonym)
        if "'" not in json_key and "]" not in json_key:
            spark_parsed = F.get_json_object(F.col(C.RAW), f"$['{json_key}']")
            matches.append(T.user_pseudonym(spark_parsed, key) == pseudonym)
    match: Column = F.lit(False)
    for m in matches:
        match = match | F.coalesce(m, F.lit(False))
    digests = sorted(r[0] for r in lines.where(match).select(F.sha2(F.col(C.RAW), 256)).distinct().collect())
    if not digests:
        return None
    return f"sha2({C.RAW}, 256) IN ({', '.join(_sql_string(d) for d in digests)})"


def _migrate_deletions(lake: Lake, spark: SparkSession, key: str) -> bool:
    """Replace the pseudonyms of an ``ops.deletions`` written by older versions with digests."""
    if not lake.exists(OPS_DELETIONS) or "user_pseudonym" not in lake.schema(OPS_DELETIONS).fieldNames():
        return False
    rows: list[tuple[Any, ...]] = [
        (request_digest(r["user_pseudonym"], key), r["requested_at"], {}, r["rows_removed"])
        + (r["vacuumed"], {}, {}, None)
        for r in lake.read(OPS_DELETIONS).collect()
    ]
    lake.overwrite(OPS_DELETIONS, spark.createDataFrame(rows, DELETIONS_SCHEMA), replace_schema=True)
    log.info("%s: %d requests recorded by pseudonym now recorded by digest", OPS_DELETIONS, len(rows))
    return True


def forget_user(
    cfg: Config, spark: SparkSession, raw_user_id: str, lake: Lake | None = None, vacuum: bool = False
) -> dict[str, Any]:
    """Delete ``raw_user_id``'s rows everywhere; with ``vacuum``, erase the files and log entries.

    Returns the rows removed per table, and with ``vacuum`` the files erased and log files expired
    per table (every table with a personal column, whether or not this call removed rows there).
    """
    if not raw_user_id or not raw_user_id.strip():
        raise ValueError("forget: empty user id")
    lake = lake or open_lake(cfg, spark)
    key = cfg.pseudonym_key()
    raw_id = raw_user_id.strip()
    pseudonym = one_row(spark.range(1).select(T.user_pseudonym(F.lit(raw_user_id), key)))[0]
    digest = request_digest(pseudonym, key)
    json_key = _user_key(cfg)
    removed: dict[str, int] = {}
    if _migrate_deletions(lake, spark, key):
        removed[OPS_DELETIONS] = 0  # its old files hold pseudonyms: erased with the others
    for table in lake.list_tables():
        if table == OPS_DELETIONS:
            continue
        cols = lake.schema(table).fieldNames()
        if not any(c in cols for c in C.PERSONAL_COLUMNS):
            continue
        preds = []
        if C.RAW in cols:
            preds.append(_raw_predicate(lake, table, json_key, raw_id, pseudonym, key))
        if C.USER_ID in cols:
            preds.append(f"{C.USER_ID} = {_sql_string(pseudonym)}")
        found = [p for p in preds if p is not None]
        removed[table] = lake.delete(table, " OR ".join(found)).rows_removed if found else 0
        log.info("forget %s: %s -> %d rows", digest, table, removed[table])
    erased: dict[str, int] = {}
    expired: dict[str, int] = {}
    erased_at = None
    if vacuum:
        for table in removed:
            erased[table] = len(lake.vacuum(table, retention_hours=0))
            expired[table] = len(lake.expire_log(table))
            log.info("forget %s: %s -> %d files erased", digest, table, erased[table])
        erased_at = dt.datetime.now(dt.UTC)
    total = sum(removed.values())
    row = (digest, dt.datetime.now(dt.UTC), removed, total, vacuum, erased, expired, erased_at)
    lake.append(OPS_DELETIONS, spark.createDataFrame([row], DELETIONS_SCHEMA))
    return {
        "job": "forget",
        "request_digest": digest,
        "rows_removed": removed,
        "total_removed": total,
        "vacuumed": vacuum,
        "files_erased": erased,
        "log_files_expired": expired,
    }
