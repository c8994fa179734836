"""Deletion on request: remove every row of a user from every table that holds it.

Tables keyed by the pseudonymized ``user_id`` are matched on the pseudonym; bronze tables, which
keep the raw record, are matched on the raw id inside the JSON. Each delete is its own Delta
commit (rewriting only the files that held the user); older table versions still reference the
old files until ``vacuum`` runs past the retention period, so run ``recpipe vacuum`` (or let the
scheduled one run) to erase the bytes. The request is recorded in ``ops.deletions`` with the
pseudonym only, never the raw id.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from pyspark.sql import SparkSession

from recpipe import constants as C
from recpipe.config import Config
from recpipe.events.transforms import pseudonymize_py
from recpipe.lake import Lake, open_lake

log = logging.getLogger(__name__)

OPS_DELETIONS = "ops.deletions"
RAW_TABLES = (C.BRONZE_EVENTS_RAW, C.BRONZE_QUARANTINE)


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def forget_user(
    cfg: Config, spark: SparkSession, raw_user_id: str, lake: Lake | None = None, vacuum: bool = False
) -> dict[str, Any]:
    """Delete ``raw_user_id``'s rows everywhere; returns rows removed per table."""
    if not raw_user_id or not raw_user_id.strip():
        raise ValueError("forget: empty user id")
    lake = lake or open_lake(cfg, spark)
    pseudonym = pseudonymize_py(raw_user_id.strip(), cfg.pseudonym_key())
    removed: dict[str, int] = {}
    for table in lake.list_tables():
        if table in (OPS_DELETIONS,):
            continue
        cols = lake.schema(table).fieldNames()
        if table in RAW_TABLES:
            # Conservative: any raw line holding the quoted id, even a malformed one.
            pred = f"instr({C.RAW}, {_sql_string(json.dumps(raw_user_id.strip()))}) > 0"
        elif C.USER_ID in cols:
            pred = f"{C.USER_ID} = {_sql_string(pseudonym)}"
        else:
            continue
        result = lake.delete(table, pred)
        removed[table] = result.rows_removed
        if vacuum and result.rows_removed:
            lake.vacuum(table, retention_hours=0)
        log.info("forget %s: %s -> %d rows", pseudonym, table, result.rows_removed)
    row = [(pseudonym, dt.datetime.now(dt.UTC), sum(removed.values()), bool(vacuum))]
    lake.append(
        OPS_DELETIONS,
        spark.createDataFrame(
            row, "user_pseudonym string, requested_at timestamp, rows_removed long, vacuumed boolean"
        ),
    )
    return {
        "job": "forget",
        "user_pseudonym": pseudonym,
        "rows_removed": removed,
        "total_removed": sum(removed.values()),
        "vacuumed": vacuum,
    }
