"""The item catalog as the later stages read it: ``silver.items``, or items derived from the events.

A catalog is optional. A source that brings only an event log (a news portal's click log) gets
one item per ``item_id`` seen in ``silver.events`` (history excluded): first seen as the
publish-time proxy, no title or text, category ``unknown``, status ``active``. Stages that need
text (the content-similarity candidate source) skip themselves with a logged reason when no item
has any.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.lake import Lake

log = logging.getLogger(__name__)

UNKNOWN_CATEGORY = "unknown"
DERIVED_BATCH = "derived-from-events"


def derive_items(events: DataFrame) -> DataFrame:
    """``silver.events`` -> one ``SILVER_ITEMS_SCHEMA`` row per item seen in the log proper:
    ``published_ts`` = first seen. Items only in a pre-log click history (``is_history``) are
    old content with no known publish time: they stay out of the catalog (features and
    neighbours may still use them; they are never recommended)."""
    logged = events.where(~F.coalesce(F.col(C.IS_HISTORY), F.lit(False)))
    agg = logged.groupBy(C.ITEM_ID).agg(
        F.min(C.EVENT_TS).alias("published_ts"), F.max(C.INGESTED_AT).alias("updated_at")
    )
    values = {
        "published_ts": F.col("published_ts"),
        "updated_at": F.col("updated_at"),
        "category": F.lit(UNKNOWN_CATEGORY),
        "subcategory": F.lit(UNKNOWN_CATEGORY),
        "status": F.lit("active"),
        C.BATCH_ID: F.lit(DERIVED_BATCH),
    }
    return agg.select(
        *[
            (values[f.name] if f.name in values else F.col(f.name) if f.name == C.ITEM_ID else F.lit(None))
            .cast(f.dataType)
            .alias(f.name)
            for f in C.SILVER_ITEMS_SCHEMA.fields
        ]
    )


def has_catalog(lake: Lake) -> bool:
    """Whether ``silver.items`` exists and holds at least one row."""
    return lake.exists(C.SILVER_ITEMS) and lake.read(C.SILVER_ITEMS).limit(1).count() > 0


def read_items(lake: Lake) -> DataFrame:
    """``silver.items`` when the source brought a catalog, else items derived from ``silver.events``."""
    if has_catalog(lake):
        return lake.read(C.SILVER_ITEMS)
    if not lake.exists(C.SILVER_EVENTS):
        raise RuntimeError(f"neither {C.SILVER_ITEMS} nor {C.SILVER_EVENTS} exists: run ingest first")
    log.info("no %s: items derived from %s (first seen = published)", C.SILVER_ITEMS, C.SILVER_EVENTS)
    return derive_items(lake.read(C.SILVER_EVENTS))


def has_text(items: DataFrame) -> bool:
    """Whether any item has a non-blank title or text (what the content source needs)."""
    blank = F.coalesce(F.trim(F.concat_ws(" ", "title", "text")), F.lit("")) == ""
    return items.where(~blank).limit(1).count() > 0
