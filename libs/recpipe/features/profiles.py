"""``gold.user_profiles``: per user, decayed interests, updated per stream micro-batch.

Every weight of a profile row is decayed to the row's ``last_seen`` (the user's latest event,
any type): a positive event of weight ``w`` (``constants.POSITIVE_EVENT_WEIGHTS``) at ``t``
counts ``w * 2^(-(last_seen - t) / half_life)``. Update rule for a user with a stored row ``o``
and a row ``n`` built from the new events (:func:`merge_profiles`)::

    ref = max(o.last_seen, n.last_seen)
    s_x = 2^(-(ref - x.last_seen) / half_life)               for x in (o, n)
    weight = o.weight * s_o + n.weight * s_n                  (interest_weight, every map value)
    text_centroid = (o.c * o.tw * s_o + n.c * n.tw * s_n) / text_weight,
    text_weight = o.tw * s_o + n.tw * s_n
    counts summed, first_seen = min, recent items = the newest k of both (an item at its max ts)

The rule is commutative and associative, so merging batches one after another (late events
included) gives the profile computed from all the events at once (:func:`profiles_from_events`).
:func:`update_profiles` applies it to the users of one ingested batch (the stream calls it);
:func:`profiles_as_of` recomputes point-in-time profiles from ``silver.events`` (training).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pyspark import StorageLevel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from recpipe import constants as C
from recpipe.candidates import sources as S
from recpipe.config import Config
from recpipe.events.items import has_catalog
from recpipe.lake import Lake, Txn

log = logging.getLogger(__name__)

LAST_SEEN = "last_seen"
FIRST_SEEN = "first_seen"
EVENTS_TOTAL = "events_total"
EVENT_COUNTS = "event_counts"
INTEREST_WEIGHT = "interest_weight"
INTERESTS = "interests"
SUBCATEGORY_INTERESTS = "subcategory_interests"
TAG_INTERESTS = "tag_interests"
TEXT_CENTROID = "text_centroid"
TEXT_WEIGHT = "text_weight"
RECENT_ITEMS = "recent_items"
UPDATED_AT = "updated_at"
# The decayed-weight maps: profile column -> silver.items column it is keyed by.
INTEREST_MAPS = {INTERESTS: "category", SUBCATEGORY_INTERESTS: "subcategory", TAG_INTERESTS: "tags"}

RECENT_ITEM = StructType([StructField(C.ITEM_ID, StringType()), StructField(C.EVENT_TS, TimestampType())])
WEIGHT_MAP = MapType(StringType(), DoubleType())
PROFILES_SCHEMA = StructType(
    [
        StructField(C.USER_ID, StringType()),
        StructField(LAST_SEEN, TimestampType()),
        StructField(FIRST_SEEN, TimestampType()),
        StructField(EVENTS_TOTAL, LongType()),
        StructField(EVENT_COUNTS, MapType(StringType(), LongType())),
        StructField(INTEREST_WEIGHT, DoubleType()),
        StructField(INTERESTS, WEIGHT_MAP),
        StructField(SUBCATEGORY_INTERESTS, WEIGHT_MAP),
        StructField(TAG_INTERESTS, WEIGHT_MAP),
        StructField(TEXT_CENTROID, ArrayType(FloatType())),
        StructField(TEXT_WEIGHT, DoubleType()),
        StructField(RECENT_ITEMS, ArrayType(RECENT_ITEM)),
        StructField(C.BATCH_ID, StringType()),
        StructField(UPDATED_AT, TimestampType()),
    ]
)
# The detail of affinities that come from a profile (candidates: "category:tech (profile)").
PROFILE_BASIS = "profile"


# -- transforms ---------------------------------------------------------------------------------
def _hours(later: Column, earlier: Column) -> Column:
    return (F.unix_micros(later) - F.unix_micros(earlier)) / 3.6e9


def _decay(later: Column, earlier: Column, half_life_hours: float) -> Column:
    """``2^(-(later - earlier) / half_life)``."""
    return F.pow(F.lit(2.0), -_hours(later, earlier) / F.lit(float(half_life_hours)))


def _empty(dtype: Any) -> Column:
    return (F.create_map() if isinstance(dtype, MapType) else F.array()).cast(dtype)


def _newest_first(a: Column, b: Column) -> Column:
    """Recent-items order: event_ts desc, then item_id asc."""
    ta, tb, ia, ib = a[C.EVENT_TS], b[C.EVENT_TS], a[C.ITEM_ID], b[C.ITEM_ID]
    return F.when(ta > tb, -1).when(ta < tb, 1).when(ia < ib, -1).when(ia > ib, 1).otherwise(0)


def _weighted_maps(per_item: DataFrame, items: DataFrame) -> tuple[DataFrame, list[str]]:
    """(user_id, one map per :data:`INTEREST_MAPS` column the items have): key -> summed weight
    (tags exploded), all in one aggregation; and the map columns made."""
    made = [col for col, key in INTEREST_MAPS.items() if key in items.columns]

    def tagged(col: str) -> Column:  # the item's keys of map ``col`` as (_m=col, _k=key) structs
        key = INTEREST_MAPS[col]
        values = F.col(key) if isinstance(items.schema[key].dataType, ArrayType) else F.array(key)
        return F.transform(values, lambda v: F.struct(F.lit(col).alias("_m"), v.alias("_k")))

    keys = F.concat(*[F.coalesce(tagged(col), F.array()) for col in made])
    it = items.select(C.ITEM_ID, F.explode(keys).alias("_e"))
    it = it.select(C.ITEM_ID, "_e._m", "_e._k").where(F.col("_k").isNotNull())
    per = per_item.join(it, C.ITEM_ID).groupBy(C.USER_ID, "_m", "_k").agg(F.sum("w").alias("w"))
    entries = {col: F.collect_list(F.when(F.col("_m") == col, F.struct("_k", "w"))) for col in made}
    maps = per.groupBy(C.USER_ID).agg(*[F.map_from_entries(e).alias(col) for col, e in entries.items()])
    return maps, made


def profiles_from_events(
    events: DataFrame,
    items: DataFrame | None,
    vectors: DataFrame | None,
    half_life_hours: float,
    recent_k: int,
    batch_id: str,
) -> DataFrame:
    """``silver.events`` rows -> one :data:`PROFILES_SCHEMA` row per user.

    ``items``: silver.items (item_id, category[, subcategory, tags]) or None (no catalog:
    empty maps). ``vectors``: (item_id, features) unit text vectors (an ML vector or
    array<float>), or None (null centroid).
    """
    # Partitioned by user once: the aggregations below by (user, ...) need no other shuffle.
    ev = events.select(C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_TS).withColumn(
        LAST_SEEN, F.max(C.EVENT_TS).over(Window.partitionBy(C.USER_ID))
    )
    by_type = ev.groupBy(C.USER_ID, LAST_SEEN, C.EVENT_TYPE).agg(
        F.count("*").alias("n"), F.min(C.EVENT_TS).alias("lo")
    )
    base = by_type.groupBy(C.USER_ID, LAST_SEEN).agg(
        F.min("lo").alias(FIRST_SEEN),
        F.sum("n").alias(EVENTS_TOTAL),
        F.map_from_entries(F.collect_list(F.struct(C.EVENT_TYPE, "n"))).alias(EVENT_COUNTS),
    )
    weights = F.create_map(*[x for k, v in C.POSITIVE_EVENT_WEIGHTS.items() for x in (F.lit(k), F.lit(v))])
    pos = ev.where(F.col(C.EVENT_TYPE).isin(list(C.POSITIVE_EVENT_WEIGHTS)))
    # Per (user, item): the decayed weight at the user's last_seen, and the item's last use.
    per_item = pos.groupBy(C.USER_ID, C.ITEM_ID).agg(
        F.sum(
            weights[F.col(C.EVENT_TYPE)] * _decay(F.col(LAST_SEEN), F.col(C.EVENT_TS), half_life_hours)
        ).alias("w"),
        F.max(C.EVENT_TS).alias(C.EVENT_TS),
    )
    # One aggregation per user: the total weight and the newest recent_k items.
    rank = F.row_number().over(Window.partitionBy(C.USER_ID).orderBy(F.desc(C.EVENT_TS), F.asc(C.ITEM_ID)))
    newest = F.when(F.col("_rn") <= recent_k, F.struct(C.ITEM_ID, C.EVENT_TS))
    totals = (
        per_item.withColumn("_rn", rank)
        .groupBy(C.USER_ID)
        .agg(
            F.sum("w").alias(INTEREST_WEIGHT),
            F.array_sort(F.collect_list(newest), _newest_first).alias(RECENT_ITEMS),
        )
    )
    out = base.join(totals, C.USER_ID, "left")
    made: list[str] = []
    if items is not None and any(key in items.columns for key in INTEREST_MAPS.values()):
        maps_df, made = _weighted_maps(per_item, items)
        out = out.join(maps_df, C.USER_ID, "left")
    centroid, text_weight = F.lit(None), F.lit(0.0)
    if vectors is not None:
        vec = vectors.select(C.ITEM_ID, "features")
        if isinstance(vec.schema["features"].dataType, ArrayType):
            vec = vec.select(C.ITEM_ID, array_to_vector(F.col("features")).alias("features"))
        text = (
            per_item.join(vec, C.ITEM_ID)
            .groupBy(C.USER_ID)
            .agg(
                Summarizer.mean(F.col("features"), F.col("w")).alias("_c"),
                F.sum("w").alias("_tw"),
            )
            .select(C.USER_ID, vector_to_array(F.col("_c"), dtype="float32").alias("_c"), "_tw")
        )
        out = out.join(text, C.USER_ID, "left")
        centroid, text_weight = F.col("_c"), F.coalesce("_tw", F.lit(0.0))
    values = {
        INTEREST_WEIGHT: F.coalesce(INTEREST_WEIGHT, F.lit(0.0)),
        **{c: F.coalesce(c, _empty(WEIGHT_MAP)) for c in made},
        TEXT_CENTROID: centroid,
        TEXT_WEIGHT: text_weight,
        RECENT_ITEMS: F.coalesce(RECENT_ITEMS, _empty(ArrayType(RECENT_ITEM))),
        C.BATCH_ID: F.lit(batch_id),
        UPDATED_AT: F.current_timestamp(),
    }
    return _to_schema(out, values)


def _to_schema(df: DataFrame, values: dict[str, Column]) -> DataFrame:
    """``df`` as :data:`PROFILES_SCHEMA`: each column from ``values``, else ``df``'s own, else
    empty (maps) / null."""

    def value(f: StructField) -> Column:
        if f.name in values:
            return values[f.name]
        if f.name in df.columns:
            return F.col(f.name)
        return _empty(f.dataType) if isinstance(f.dataType, MapType) else F.lit(None)

    return df.select(*[value(f).cast(f.dataType).alias(f.name) for f in PROFILES_SCHEMA.fields])


def merge_profiles(old: DataFrame, new: DataFrame, half_life_hours: float, recent_k: int) -> DataFrame:
    """The profiles of the users in ``new``, combined with their rows in ``old`` (when there):
    the update rule of the module docstring. ``old`` may hold other users (they are not
    returned); both are :data:`PROFILES_SCHEMA` frames unique by user."""
    o = old.select(*[F.col(c).alias(f"o_{c}") for c in PROFILES_SCHEMA.fieldNames()])
    j = new.join(o, new[C.USER_ID] == o[f"o_{C.USER_ID}"], "left")
    ref = F.greatest(F.col(LAST_SEEN), F.col(f"o_{LAST_SEEN}"))
    j = j.withColumn("_ref", ref)
    j = j.withColumn("_sn", _decay(F.col("_ref"), F.col(LAST_SEEN), half_life_hours))
    # 0 when the user has no stored row (its columns are null)
    j = j.withColumn(
        "_so", F.coalesce(_decay(F.col("_ref"), F.col(f"o_{LAST_SEEN}"), half_life_hours), F.lit(0.0))
    )
    sn, so = F.col("_sn"), F.col("_so")

    def both(c: str) -> tuple[Column, Column]:
        return F.col(c), F.col(f"o_{c}")

    def scaled_sum(c: str) -> Column:
        n, ol = both(c)
        return F.coalesce(n, F.lit(0.0)) * sn + F.coalesce(ol, F.lit(0.0)) * so

    def map_sum(c: str, scale: bool) -> Column:
        n, ol = both(c)
        dtype = PROFILES_SCHEMA[c].dataType
        n, ol = F.coalesce(n, _empty(dtype)), F.coalesce(ol, _empty(dtype))
        if scale:
            return F.map_zip_with(
                n, ol, lambda _k, a, b: F.coalesce(a, F.lit(0.0)) * sn + F.coalesce(b, F.lit(0.0)) * so
            )
        return F.map_zip_with(n, ol, lambda _k, a, b: F.coalesce(a, F.lit(0)) + F.coalesce(b, F.lit(0)))

    # text centroid: the weighted mean of both sides' means (one side alone: unchanged)
    cn, co = both(TEXT_CENTROID)
    twn = F.coalesce(F.col(TEXT_WEIGHT), F.lit(0.0)) * sn
    two = F.coalesce(F.col(f"o_{TEXT_WEIGHT}"), F.lit(0.0)) * so
    mean = F.zip_with(cn, co, lambda x, y: (x * twn + y * two) / (twn + two))
    centroid = F.when(cn.isNotNull() & co.isNotNull() & (twn + two > 0), mean).otherwise(F.coalesce(cn, co))
    # recent items: both lists newest first, each item at its latest use, the first k
    rn, ro = both(RECENT_ITEMS)
    rtype = PROFILES_SCHEMA[RECENT_ITEMS].dataType
    j = j.withColumn(
        "_r",
        F.array_sort(F.concat(F.coalesce(rn, _empty(rtype)), F.coalesce(ro, _empty(rtype))), _newest_first),
    )
    first_use = F.filter(
        "_r", lambda x, i: ~F.exists(F.slice("_r", F.lit(1), i), lambda y: y[C.ITEM_ID] == x[C.ITEM_ID])
    )
    values = {
        C.USER_ID: F.col(C.USER_ID),
        LAST_SEEN: F.col("_ref"),
        FIRST_SEEN: F.least(*both(FIRST_SEEN)),
        EVENTS_TOTAL: F.col(EVENTS_TOTAL) + F.coalesce(F.col(f"o_{EVENTS_TOTAL}"), F.lit(0)),
        EVENT_COUNTS: map_sum(EVENT_COUNTS, scale=False),
        INTEREST_WEIGHT: scaled_sum(INTEREST_WEIGHT),
        **{c: map_sum(c, scale=True) for c in INTEREST_MAPS},
        TEXT_CENTROID: centroid,
        TEXT_WEIGHT: twn + two,
        RECENT_ITEMS: F.slice(first_use, 1, recent_k),
        C.BATCH_ID: F.col(C.BATCH_ID),
        UPDATED_AT: F.current_timestamp(),
    }
    return _to_schema(j, values)


def interest_shares(profiles: DataFrame, as_of: dt.datetime) -> DataFrame:
    """(user_id, category, share, days_since_last_seen): each category's share of the user's
    decayed positive weight (``interests[category] / interest_weight``; shares do not depend on
    the time the weights are decayed to). Users without category interests have no rows."""
    days = _hours(F.lit(as_of).cast("timestamp"), F.col(LAST_SEEN)) / 24.0
    return profiles.select(
        C.USER_ID, F.explode(INTERESTS).alias("category", "_w"), INTEREST_WEIGHT, days.alias("_days")
    ).select(
        C.USER_ID,
        "category",
        (F.col("_w") / F.col(INTEREST_WEIGHT)).alias("share"),
        F.col("_days").alias("days_since_last_seen"),
    )


def fresh_profiles(profiles: DataFrame, since: dt.datetime, until: dt.datetime) -> DataFrame:
    """The profiles last seen in [since, until): activity after a batch run's event cut-off
    ``since``, and nothing after ``until`` (a later run date's data)."""
    ts = F.col(LAST_SEEN)
    return profiles.where((ts >= F.lit(since).cast("timestamp")) & (ts < F.lit(until).cast("timestamp")))


def profile_affinity(profiles: DataFrame, as_of: dt.datetime) -> DataFrame:
    """(user_id, category, affinity, basis="profile"): :func:`interest_shares` in the shape of
    ``candidates.sources.category_affinity`` (rounded the same way)."""
    return interest_shares(profiles, as_of).select(
        C.USER_ID,
        "category",
        F.round("share", S.SCORE_DECIMALS).alias("affinity"),
        F.lit(PROFILE_BASIS).alias(S.AFFINITY_BASIS),
    )


def items_used_since(profiles: DataFrame, since: dt.datetime) -> DataFrame:
    """(user_id, item_id) of the profiles' recent items used at or after ``since``."""
    used = profiles.select(C.USER_ID, F.explode(RECENT_ITEMS).alias("_r"))
    return used.where(F.col(f"_r.{C.EVENT_TS}") >= F.lit(since).cast("timestamp")).select(
        C.USER_ID, F.col(f"_r.{C.ITEM_ID}").alias(C.ITEM_ID)
    )


# -- IO -----------------------------------------------------------------------------------------
def stored_item_vectors(lake: Lake, as_of_date: dt.date | None = None) -> tuple[DataFrame, str] | None:
    """(item_id, features) unit text vectors of ``gold.item_features`` (each item's latest
    ``as_of_date``, at most ``as_of_date`` when given) and the column they came from; None when
    the table or its text vector column does not exist."""
    if not lake.exists(C.GOLD_ITEM_FEATURES):
        return None
    names = lake.schema(C.GOLD_ITEM_FEATURES).fieldNames()
    column = next((c for c in C.TEXT_VECTOR_COLUMNS if c in names), None)
    if column is None:
        return None
    feats = lake.read(C.GOLD_ITEM_FEATURES)
    if C.AS_OF_DATE in names:
        if as_of_date is not None:
            feats = feats.where(F.col(C.AS_OF_DATE) <= F.lit(as_of_date))
        feats = S.top_k(feats, [C.ITEM_ID], [F.desc(C.AS_OF_DATE)], 1)
    return S.feature_table_vectors(feats, column), f"{C.GOLD_ITEM_FEATURES}.{column}"


def _item_inputs(lake: Lake, as_of_date: dt.date | None) -> tuple[DataFrame | None, DataFrame | None]:
    """silver.items (None without a catalog: no derived 'unknown' category) and stored vectors."""
    items = lake.read(C.SILVER_ITEMS) if has_catalog(lake) else None
    stored = stored_item_vectors(lake, as_of_date)
    return items, (stored[0] if stored else None)


def update_profiles(
    cfg: Config,
    spark: SparkSession,
    lake: Lake,
    batch_id: str,
    txn: Txn,
    event_dates: list[dt.date] | None = None,
) -> dict[str, Any]:
    """Fold the events ``silver.events`` accepted in ``batch_id`` into ``gold.user_profiles``:
    the batch's users only, merged with their stored rows, one upsert carrying ``txn`` (a rerun
    with the same token commits nothing). ``txn`` must be the batch's own: the same batch
    folded in under two tokens would count its events twice. ``event_dates``: the event dates
    the batch wrote (its ingest summary's), so only those partitions are read."""
    table = C.GOLD_USER_PROFILES
    done = lake.txn_version(table, txn.app_id) if lake.exists(table) else None
    if done is not None and done >= txn.version:
        why = f"already committed by {txn}"
        return {"users_updated": 0, "events": 0, "table_version": lake.version(table), "skipped_reason": why}
    events = lake.read(C.SILVER_EVENTS).where(F.col(C.BATCH_ID) == F.lit(batch_id))
    if event_dates is not None:  # the partitions the batch wrote (ingest's summary): pruned reads
        events = events.where(F.col(C.EVENT_DATE).isin(list(event_dates)))
    events = events.select(C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_TS).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        n_events = events.count()
        if n_events == 0:
            why = f"no events of batch {batch_id} in {C.SILVER_EVENTS}"
            return {
                "users_updated": 0,
                "events": 0,
                "table_version": lake.version(table),
                "skipped_reason": why,
            }
        p = cfg.profiles
        items, vectors = _item_inputs(lake, None)
        rows = profiles_from_events(events, items, vectors, p.half_life_hours, p.recent_items, batch_id)
        if lake.exists(table):
            stored = lake.read(table).join(rows.select(C.USER_ID), C.USER_ID, "left_semi")
            rows = merge_profiles(stored, rows, p.half_life_hours, p.recent_items)
        # Computed once: the upsert reads the frame for its keys and for its rows.
        rows = rows.localCheckpoint(eager=True)
        n_users = rows.count()
        res = lake.upsert(table, rows, keys=[C.USER_ID], txn=txn)
    finally:
        events.unpersist()
    out: dict[str, Any] = {
        "users_updated": n_users if res.committed else 0,
        "events": n_events if res.committed else 0,
        "table_version": res.version,
    }
    if not res.committed:
        out["skipped_reason"] = res.skipped_reason
    log.info("%s: batch %s, %s", table, batch_id, out)
    return out


def profiles_as_of(cfg: Config, spark: SparkSession, lake: Lake, as_of: dt.datetime) -> DataFrame:
    """Point-in-time profiles: recomputed from the ``silver.events`` rows strictly before
    ``as_of`` (item vectors of ``gold.item_features`` as of that date at the latest)."""
    p = cfg.profiles
    events = S.history(lake.read(C.SILVER_EVENTS), as_of)
    items, vectors = _item_inputs(lake, as_of.date())
    batch = f"as_of:{as_of.isoformat()}"
    return profiles_from_events(events, items, vectors, p.half_life_hours, p.recent_items, batch)
