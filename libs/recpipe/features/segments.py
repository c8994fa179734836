"""gold.user_segments: users grouped by rules over their profiles and by KMeans clusters.

``segments.rules`` (name -> rule, see :mod:`recpipe.features.segment_rules` for the grammar)
are compiled to Spark columns over ``gold.user_profiles``; with ``segments.clusters`` > 0, KMeans
groups the users by their interest shares over the largest categories and each cluster is labelled
by the categories it leans to (``cluster_0``: ``sports+tech``). A user can be in several rule
segments and in one cluster. Each build replaces the whole table (one row per user and segment).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from recpipe import constants as C
from recpipe.config import Config
from recpipe.features.profiles import (
    EVENT_COUNTS,
    EVENTS_TOTAL,
    INTEREST_WEIGHT,
    INTERESTS,
    LAST_SEEN,
    SUBCATEGORY_INTERESTS,
    TAG_INTERESTS,
)
from recpipe.features.segment_rules import Clause, Rule, parse_rules
from recpipe.frames import one_row
from recpipe.guard import refuse
from recpipe.lake import Lake

log = logging.getLogger(__name__)

# -- gold.user_segments --------------------------------------------------------------------------
SEGMENT = "segment"
KIND = "kind"  # "rule" | "cluster"
SEGMENT_LABEL = "label"  # a rule's text, a cluster's top categories ("sports+tech")
AS_OF = "as_of"
RUN_ID = "run_id"
USER_SEGMENTS_SCHEMA = StructType(
    [
        StructField(C.USER_ID, StringType()),
        StructField(SEGMENT, StringType()),
        StructField(KIND, StringType()),
        StructField(SEGMENT_LABEL, StringType()),
        StructField(AS_OF, TimestampType()),
        StructField(RUN_ID, StringType()),
    ]
)
# One membership before it is stamped with the build's as_of and run_id.
MEMBER_SCHEMA = StructType(USER_SEGMENTS_SCHEMA.fields[:4])

# -- the gold.user_profiles columns read here ---------------------------------------------------
PROFILE_COLUMNS = [
    C.USER_ID,
    LAST_SEEN,
    EVENTS_TOTAL,
    EVENT_COUNTS,
    INTEREST_WEIGHT,
    INTERESTS,
    SUBCATEGORY_INTERESTS,
    TAG_INTERESTS,
]
# Share fields of the rules -> the profile map whose weights they divide by interest_weight.
SHARE_MAPS = {"interest": INTERESTS, "subcategory": SUBCATEGORY_INTERESTS, "tag": TAG_INTERESTS}

# A cluster's label names its categories by mean share, at most this many, each with a mean
# share of at least MIN_LABEL_SHARE (the first is always named).
LABEL_CATEGORIES = 3
MIN_LABEL_SHARE = 0.1

_MICROS_PER_DAY = 86_400 * 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _micros(ts: dt.datetime) -> int:
    return (_utc(ts) - _EPOCH) // dt.timedelta(microseconds=1)


def _share(map_col: str, key: str | Column) -> Column:
    """``map[key] / interest_weight``; 0 when the key is absent or the weight is 0 or null."""
    w = F.col(INTEREST_WEIGHT)
    return F.when(w > 0, F.coalesce(F.col(map_col)[key], F.lit(0.0)) / w).otherwise(F.lit(0.0))


def field_column(clause: Clause, as_of: dt.datetime, half_life_hours: float) -> Column:
    """The value of a rule field over a ``gold.user_profiles`` row, at ``as_of``."""
    age_micros = F.lit(_micros(as_of)) - F.unix_micros(F.col(LAST_SEEN))
    if clause.field == "days_since_last_seen":
        return age_micros / F.lit(float(_MICROS_PER_DAY))
    if clause.field == "events_total":
        return F.coalesce(F.col(EVENTS_TOTAL), F.lit(0))
    if clause.field == "interest_weight":
        half_lives = age_micros / F.lit(half_life_hours * 3600 * 1_000_000)
        return F.coalesce(F.col(INTEREST_WEIGHT), F.lit(0.0)) * F.pow(F.lit(2.0), -half_lives)
    if clause.field == "events":
        return F.coalesce(F.col(EVENT_COUNTS)[clause.key], F.lit(0))
    assert clause.key is not None  # parse_rule gives every keyed field (SHARE_MAPS) its key
    return _share(SHARE_MAPS[clause.field], clause.key)


_COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def rule_column(rule: Rule, as_of: dt.datetime, half_life_hours: float) -> Column:
    """A boolean column: the profile row satisfies every clause (null counts as false)."""
    cond = F.lit(True)
    for clause in rule.clauses:
        value = field_column(clause, as_of, half_life_hours)
        cond = cond & _COMPARE[clause.op](value, F.lit(clause.value))
    return F.coalesce(cond, F.lit(False))


def rule_members(
    profiles: DataFrame, rules: dict[str, Rule], as_of: dt.datetime, half_life_hours: float
) -> DataFrame:
    """``(user_id, segment, kind, label)`` for every rule a profile satisfies (one pass)."""
    if not rules:
        return profiles.sparkSession.createDataFrame([], MEMBER_SCHEMA)
    hits = F.array(
        *[
            F.when(
                rule_column(rule, as_of, half_life_hours),
                F.struct(
                    F.lit(name).alias(SEGMENT),
                    F.lit("rule").alias(KIND),
                    F.lit(rule.text).alias(SEGMENT_LABEL),
                ),
            )
            for name, rule in rules.items()
        ]
    )
    return profiles.select(C.USER_ID, F.explode(F.filter(hits, lambda h: h.isNotNull())).alias("s")).select(
        C.USER_ID, "s.*"
    )


@dataclass
class Clusters:
    """The cluster members ``(user_id, segment, kind, label)`` and what the summary reports."""

    members: DataFrame | None
    info: dict[str, Any]
    skipped: str | None = None


def category_vocabulary(profiles: DataFrame, max_categories: int) -> list[str]:
    """The categories with the largest total interest share over all users (at most
    ``max_categories``; ties by name): the dimensions of the cluster vectors."""
    shares = profiles.where(F.col(INTEREST_WEIGHT) > 0).select(
        F.explode(INTERESTS).alias("category", "weight"), INTEREST_WEIGHT
    )
    totals = (
        shares.where(F.col("category").isNotNull() & (F.col("weight") > 0))
        .groupBy("category")
        .agg(F.sum(F.col("weight") / F.col(INTEREST_WEIGHT)).alias("total"))
        .orderBy(F.desc("total"), "category")
        .limit(max_categories)
    )
    return [r["category"] for r in totals.collect()]


def cluster_label(center: list[float], vocabulary: list[str]) -> str:
    """A cluster's top categories by mean share (:data:`LABEL_CATEGORIES`, :data:`MIN_LABEL_SHARE`)."""
    ranked = sorted(zip(center, vocabulary, strict=True), key=lambda cv: (-cv[0], cv[1]))
    named = [
        c for i, (share, c) in enumerate(ranked[:LABEL_CATEGORIES]) if i == 0 or share >= MIN_LABEL_SHARE
    ]
    return "+".join(named)


def cluster_members(profiles: DataFrame, k: int, seed: int, max_categories: int) -> Clusters:
    """KMeans (``k``, ``seed``) on the users' interest-share vectors over the vocabulary.

    Users with no interest weight, or none in the vocabulary, get no cluster. With fewer distinct
    vectors than ``k``, that many clusters; with no category at all (a click-only source without a
    catalog) or fewer than 2 distinct vectors, no clusters (``skipped`` says why). Clusters are
    numbered by size, largest first.
    """
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector

    info: dict[str, Any] = {"requested": k, "fitted": 0, "categories": 0}
    vocabulary = category_vocabulary(profiles, max_categories)
    info["categories"] = len(vocabulary)
    if not vocabulary:
        return Clusters(
            None,
            info,
            "no categories in gold.user_profiles.interests (a source without "
            "item categories, e.g. click-only logs without a catalog)",
        )
    shares = F.array(*[_share(INTERESTS, F.lit(c)) for c in vocabulary])
    vectors = (
        profiles.where(F.col(INTEREST_WEIGHT) > 0)
        .select(C.USER_ID, shares.alias("shares"))
        .where(F.exists("shares", lambda s: s > 0))
        .persist()
    )
    try:
        distinct = vectors.select("shares").distinct().limit(k).count()
        if distinct < 2:
            return Clusters(None, info, f"{distinct} distinct interest vector(s): nothing to cluster")
        data = vectors.select(C.USER_ID, array_to_vector(F.col("shares")).alias("features"))
        model = KMeans(k=min(k, distinct), seed=seed, featuresCol="features", predictionCol="cluster").fit(
            data
        )
        sizes = model.summary.clusterSizes
        labels = [cluster_label([float(x) for x in c], vocabulary) for c in model.clusterCenters()]
        order = sorted(
            (i for i in range(len(sizes)) if sizes[i] > 0), key=lambda i: (-sizes[i], labels[i], i)
        )
        names = {i: f"cluster_{n}" for n, i in enumerate(order)}
        info["fitted"] = len(order)
        info["labels"] = {names[i]: labels[i] for i in order}
        lookup = F.create_map(*[F.lit(x) for i in order for x in (i, names[i])])
        label_of = F.create_map(*[F.lit(x) for i in order for x in (names[i], labels[i])])
        members = (
            model.transform(data)
            .select(C.USER_ID, lookup[F.col("cluster")].alias(SEGMENT))
            .select(
                C.USER_ID,
                SEGMENT,
                F.lit("cluster").alias(KIND),
                label_of[F.col(SEGMENT)].alias(SEGMENT_LABEL),
            )
            .persist()
        )
        members.count()
        return Clusters(members, info)
    finally:
        vectors.unpersist()


def _profiles(lake: Lake) -> DataFrame:
    if not lake.exists(C.GOLD_USER_PROFILES):
        raise RuntimeError(f"{C.GOLD_USER_PROFILES} does not exist: run `recpipe stream` first")
    return lake.read(C.GOLD_USER_PROFILES).select(*PROFILE_COLUMNS)


def _resolve_as_of(as_of: dt.datetime | None, latest: dt.datetime | None) -> dt.datetime:
    """``as_of`` in UTC; by default the latest ``last_seen`` (the data's clock), else now."""
    if as_of is None:
        as_of = latest or dt.datetime.now(dt.UTC)
    as_of = _utc(as_of)
    if latest is not None and as_of < latest:
        log.warning(
            "segments: as_of %s is before the latest last_seen %s: those users' "
            "days_since_last_seen are negative",
            as_of.isoformat(),
            latest.isoformat(),
        )
    return as_of


def _guard_empty(lake: Lake, n_rows: int, n_profiles: int, force: bool) -> None:
    """An empty result replaces stored segments only when no profile exists, or with ``force``."""
    if n_rows or not n_profiles or force or not lake.exists(C.GOLD_USER_SEGMENTS):
        return
    stored = lake.row_count(C.GOLD_USER_SEGMENTS)
    if stored:
        refuse(
            [
                f"{C.GOLD_USER_SEGMENTS}: no rule or cluster matched any of the {n_profiles} profiles; "
                f"the {stored} stored memberships stay (pass --force to write the empty result)"
            ]
        )


def _memberships(
    cfg: Config, profiles: DataFrame, n_profiles: int, as_of: dt.datetime
) -> tuple[DataFrame, Clusters]:
    """Every ``(user_id, segment, kind, label)`` of the rules and, when configured, the clusters."""
    seg = cfg.segments
    members = rule_members(profiles, parse_rules(seg.rules), as_of, cfg.profiles.half_life_hours)
    if seg.clusters == 0:
        return members, Clusters(None, {"requested": 0, "fitted": 0})
    if n_profiles == 0:
        clusters = Clusters(None, {"requested": seg.clusters, "fitted": 0}, "no profiles")
    else:
        clusters = cluster_members(profiles, seg.clusters, seg.seed, seg.cluster_categories)
    if clusters.skipped:
        log.warning("segments: clusters skipped: %s", clusters.skipped)
    if clusters.members is not None:
        members = members.unionByName(clusters.members)
    return members, clusters


def build_segments(
    cfg: Config,
    spark: SparkSession,
    lake: Lake,
    as_of: dt.datetime | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Rebuild ``gold.user_segments`` from ``gold.user_profiles`` as of ``as_of``; the summary.

    ``as_of`` (default: the latest ``last_seen``) is the clock of ``days_since_last_seen`` and
    ``interest_weight``. The whole table is replaced, except that an empty result never replaces
    stored memberships while profiles exist (unless ``force``): that raises
    :class:`recpipe.guard.DestructiveWriteError` and commits nothing.
    """
    profiles = _profiles(lake).persist()
    frames = [profiles]
    try:
        stats = one_row(
            profiles.agg(F.count(F.lit(1)).alias("n"), F.max(F.unix_micros(LAST_SEEN)).alias("latest"))
        )
        latest = None if stats["latest"] is None else _EPOCH + dt.timedelta(microseconds=stats["latest"])
        n_profiles, as_of = stats["n"], _resolve_as_of(as_of, latest)
        run_id = f"segments/{as_of.isoformat()}/{uuid.uuid4().hex[:8]}"
        members, clusters = _memberships(cfg, profiles, n_profiles, as_of)
        if clusters.members is not None:
            frames.append(clusters.members)
        rows = members.select(
            *MEMBER_SCHEMA.fieldNames(),
            F.lit(as_of).cast("timestamp").alias(AS_OF),
            F.lit(run_id).alias(RUN_ID),
        ).persist()
        frames.append(rows)
        sizes = {r[SEGMENT]: r["count"] for r in rows.groupBy(SEGMENT).count().collect()}
        _guard_empty(lake, sum(sizes.values()), n_profiles, force)
        res = lake.overwrite(C.GOLD_USER_SEGMENTS, rows, replace_schema=True)
    finally:
        for frame in frames:
            frame.unpersist()
    segments = {
        name: {"kind": "rule", "label": rule.text, "users": sizes.get(name, 0)}
        for name, rule in parse_rules(cfg.segments.rules).items()
    }
    for name, label in clusters.info.pop("labels", {}).items():
        segments[name] = {"kind": "cluster", "label": label, "users": sizes.get(name, 0)}
    return {
        "job": "segments",
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "users": n_profiles,
        "segments": segments,
        "clusters": clusters.info,
        "clusters_skipped": clusters.skipped,
        "rows": sum(sizes.values()),
        "table_version": res.version,
    }
