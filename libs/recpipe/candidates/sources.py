"""Candidate sources and filters: ``DataFrame -> DataFrame`` transforms (no IO, no session).

Every source returns ``(user_id, item_id, source, source_score, detail)``; ``candidates.run``
adds ``run_date``, reads the inputs and writes ``gold.candidates``. ``as_of`` is the run date at
00:00 UTC: callers pass events strictly before it (:func:`history`).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from pyspark.ml.feature import (
    Normalizer,
)
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.batches import whole_groups_arrow
from recpipe.candidates import kernel as K
from recpipe.config import CandidatesConfig, RecommendConfig
from recpipe.features.text import TEXT_VEC, text_vectors

# The candidate columns and the rounding of source scores: one definition, the kernel's.
CAND_COLS = K.CAND_COLS
SCORE_DECIMALS = K.SCORE_DECIMALS
LN2 = math.log(2.0)
# Optional column of an affinity frame: where the user's affinities come from (null: the history
# before as_of; "profile": gold.user_profiles), named in its candidates' detail ("category:tech
# (profile)").
AFFINITY_BASIS = "basis"


def _ts(as_of: dt.datetime) -> Column:
    return F.lit(as_of).cast("timestamp")


def _age_hours(col: str | Column, as_of: dt.datetime) -> Column:
    c = F.col(col) if isinstance(col, str) else col
    return (F.unix_micros(_ts(as_of)) - F.unix_micros(c)) / 3.6e9


def _basis_suffix(affinity: DataFrame) -> Column:
    """`` (<basis>)`` for affinities with a :data:`AFFINITY_BASIS`, else empty."""
    if AFFINITY_BASIS not in affinity.columns:
        return F.lit("")
    basis = F.col(AFFINITY_BASIS)
    return F.when(basis.isNull(), F.lit("")).otherwise(F.concat(F.lit(" ("), basis, F.lit(")")))


def _cand(df: DataFrame, source: str, score: Column, detail: Column) -> DataFrame:
    return df.select(
        C.USER_ID,
        C.ITEM_ID,
        F.lit(source).alias(C.SOURCE),
        F.round(score.cast("double"), SCORE_DECIMALS).alias(C.SOURCE_SCORE),
        detail.cast("string").alias(C.DETAIL),
    )


def top_k(df: DataFrame, by: list[str], order: list[Column], k: int) -> DataFrame:
    """The first ``k`` rows per ``by`` group in ``order`` (ties broken by the order columns).

    Without groups (``by`` empty) the global top ``k`` is a distributed ``orderBy().limit()``
    (each task keeps its own top ``k``), not a window without partitions, which would pull
    every row into one task.
    """
    if not by:
        return df.orderBy(*order).limit(k)
    w = Window.partitionBy(*by).orderBy(*order)
    return df.withColumn("_rn", F.row_number().over(w)).where(F.col("_rn") <= k).drop("_rn")


def best_per_pair(df: DataFrame, score: str = C.SOURCE_SCORE) -> DataFrame:
    """One row per (user, item): the best-scoring one (ties by detail)."""
    return top_k(df, [C.USER_ID, C.ITEM_ID], [F.desc(score), F.asc(C.DETAIL)], 1)


# -- inputs -------------------------------------------------------------------------------------
def history(events: DataFrame, as_of: dt.datetime) -> DataFrame:
    """Events strictly before ``as_of`` (partition-pruned on event_date)."""
    return events.where((F.col(C.EVENT_DATE) <= F.lit(as_of.date())) & (F.col(C.EVENT_TS) < _ts(as_of)))


def interactions(events: DataFrame) -> DataFrame:
    """Positive feedback events with their weight (``constants.POSITIVE_EVENT_WEIGHTS``)."""
    weights = F.create_map(*[x for k, v in C.POSITIVE_EVENT_WEIGHTS.items() for x in (F.lit(k), F.lit(v))])
    return events.where(F.col(C.EVENT_TYPE).isin(list(C.POSITIVE_EVENT_WEIGHTS))).select(
        C.USER_ID,
        C.ITEM_ID,
        C.EVENT_TS,
        C.SESSION_ID,
        C.COUNTRY,
        weights[F.col(C.EVENT_TYPE)].alias("weight"),
    )


def consumed(events: DataFrame) -> DataFrame:
    """(user_id, item_id) pairs the user already consumed or hid."""
    return (
        events.where(F.col(C.EVENT_TYPE).isin(C.CONSUMED_EVENT_TYPES)).select(C.USER_ID, C.ITEM_ID).distinct()
    )


def allowed_items(items: DataFrame, as_of: dt.datetime, max_age_days: int) -> DataFrame:
    """Items that may be recommended at ``as_of``: published, not expired, not blocked, not too old."""
    oldest = as_of - dt.timedelta(days=max_age_days)
    return items.where(
        (F.coalesce(F.col("status"), F.lit("active")) != "blocked")
        & (F.col("expires_ts").isNull() | (F.col("expires_ts") >= _ts(as_of)))
        & (F.col("published_ts").isNull() | (F.col("published_ts") <= _ts(as_of)))
        & (F.col("published_ts").isNull() | (F.col("published_ts") >= _ts(oldest)))
    )


def user_profiles(events: DataFrame) -> DataFrame:
    """Per user: the most frequent country and device in their history."""

    def mode(col: str) -> DataFrame:
        counts = events.where(F.col(col).isNotNull()).groupBy(C.USER_ID, col).count()
        return top_k(counts, [C.USER_ID], [F.desc("count"), F.asc(col)], 1).drop("count")

    users = events.select(C.USER_ID).distinct()
    return users.join(mode(C.COUNTRY), C.USER_ID, "left").join(mode(C.DEVICE), C.USER_ID, "left")


def category_affinity(
    inter: DataFrame, items: DataFrame, as_of: dt.datetime, half_life_hours: float = 168.0
) -> DataFrame:
    """(user_id, category, affinity): time-decayed share of the user's feedback per category."""
    w = F.col("weight") * F.exp(-LN2 * _age_hours(C.EVENT_TS, as_of) / half_life_hours)
    per = (
        inter.join(items.select(C.ITEM_ID, "category"), C.ITEM_ID)
        .groupBy(C.USER_ID, "category")
        .agg(F.sum(w).alias("w"))
    )
    tot = Window.partitionBy(C.USER_ID)
    return per.select(
        C.USER_ID, "category", F.round(F.col("w") / F.sum("w").over(tot), SCORE_DECIMALS).alias("affinity")
    )


def recent_items(
    inter: DataFrame, as_of: dt.datetime, last_k: int, half_life_hours: float = 72.0
) -> DataFrame:
    """(user_id, item_id, recency): the user's last ``last_k`` distinct positively-used items."""
    last = inter.groupBy(C.USER_ID, C.ITEM_ID).agg(F.max(C.EVENT_TS).alias("last_ts"))
    last = top_k(last, [C.USER_ID], [F.desc("last_ts"), F.asc(C.ITEM_ID)], last_k)
    return last.select(
        C.USER_ID,
        C.ITEM_ID,
        F.exp(-LN2 * _age_hours("last_ts", as_of) / half_life_hours).alias("recency"),
    )


# -- trending ----------------------------------------------------------------------------------
def trending(
    inter: DataFrame, as_of: dt.datetime, half_life_hours: float, k: int | None, by: list[str] | None = None
) -> DataFrame:
    """(by..., item_id, score, trend_rank): exponentially time-decayed feedback, top ``k`` per group.

    ``score`` is normalized to (0, 1] by the group's best item.
    """
    by = list(by or [])
    w = F.col("weight") * F.exp(-LN2 * _age_hours(C.EVENT_TS, as_of) / half_life_hours)
    agg = inter.where(F.col(C.EVENT_TS) < _ts(as_of))
    for col in by:
        agg = agg.where(F.col(col).isNotNull())
    agg = agg.groupBy(*by, C.ITEM_ID).agg(F.sum(w).alias("raw"))
    # k=None: every item (a global orderBy().limit(10**9) allocates its top-k buffer up front:
    # 2 * 10^9 slots, a Java heap OutOfMemoryError)
    out = agg if k is None else top_k(agg, by, [F.desc("raw"), F.asc(C.ITEM_ID)], k)
    if by:
        best = F.max("raw").over(Window.partitionBy(*by))
    else:  # the one best value of all rows, joined to every row (a one-row broadcast)
        out = out.crossJoin(out.agg(F.max("raw").alias("_best")))
        best = F.col("_best")
    return out.select(*by, C.ITEM_ID, F.round(F.col("raw") / best, SCORE_DECIMALS).alias("score"))


def trending_candidates(
    users: DataFrame,
    global_trend: DataFrame,
    country_trend: DataFrame,
    category_trend: DataFrame,
    affinity: DataFrame,
) -> DataFrame:
    """Trending items for every user: global, their country's, and their top categories'.

    ``users`` is (user_id, country); ``affinity`` is :func:`category_affinity` (with an
    optional :data:`AFFINITY_BASIS` column, named in the detail).

    The plain Spark reference of the batch kernel (:func:`filter_and_budget`), which the
    job runs; tests keep the two equal.
    """
    g = _cand(
        users.select(C.USER_ID).crossJoin(global_trend.select(C.ITEM_ID, "score")),
        C.REASON_TRENDING,
        F.col("score") * 0.8,
        F.lit("global"),
    )
    c = _cand(
        users.join(country_trend, C.COUNTRY),
        C.REASON_TRENDING,
        F.col("score"),
        F.concat(F.lit("country:"), F.col(C.COUNTRY)),
    )
    cat = _cand(
        affinity.join(category_trend, "category"),
        C.REASON_TRENDING,
        F.col("score") * F.col("affinity"),
        F.concat(F.lit("category:"), F.col("category"), _basis_suffix(affinity)),
    )
    return best_per_pair(g.unionByName(c).unionByName(cat))


# -- co-visitation -----------------------------------------------------------------------------
def covisit_neighbours(inter: DataFrame, k: int, max_items_per_session: int = 50) -> DataFrame:
    """(item_id, neighbour_id, sim): items used in the same sessions, cosine of session counts."""
    s = inter.where(F.col(C.SESSION_ID).isNotNull()).select(C.SESSION_ID, C.ITEM_ID).distinct()
    # Bots and binge sessions would dominate the pair counts: cap items per session.
    s = top_k(s, [C.SESSION_ID], [F.asc(C.ITEM_ID)], max_items_per_session)
    n_item = s.groupBy(C.ITEM_ID).agg(F.count("*").alias("n"))
    a, b = s.alias("a"), s.alias("b")
    pairs = (
        a.join(
            b, (F.col("a.session_id") == F.col("b.session_id")) & (F.col("a.item_id") != F.col("b.item_id"))
        )
        .groupBy(F.col("a.item_id").alias(C.ITEM_ID), F.col("b.item_id").alias("neighbour_id"))
        .agg(F.count("*").alias("co"))
    )
    na = n_item.select(F.col(C.ITEM_ID), F.col("n").alias("na"))
    nb = n_item.select(F.col(C.ITEM_ID).alias("neighbour_id"), F.col("n").alias("nb"))
    scored = (
        pairs.join(na, C.ITEM_ID)
        .join(nb, "neighbour_id")
        .select(C.ITEM_ID, "neighbour_id", (F.col("co") / F.sqrt(F.col("na") * F.col("nb"))).alias("sim"))
    )
    return top_k(scored, [C.ITEM_ID], [F.desc("sim"), F.asc("neighbour_id")], k)


def neighbour_candidates(recent: DataFrame, neighbours: DataFrame, source: str, k: int) -> DataFrame:
    """Apply item->neighbour lists to each user's recent items: (user, neighbour) scored by
    sum(recency * sim), detail = the trigger item contributing most."""
    j = recent.join(neighbours, C.ITEM_ID).select(
        C.USER_ID,
        F.col(C.ITEM_ID).alias("trigger"),
        F.col("neighbour_id").alias(C.ITEM_ID),
        (F.col("recency") * F.col("sim")).alias("contrib"),
    )
    w = Window.partitionBy(C.USER_ID, C.ITEM_ID)
    best = (
        j.withColumn("total", F.sum("contrib").over(w))
        .withColumn("_rn", F.row_number().over(w.orderBy(F.desc("contrib"), F.asc("trigger"))))
        .where(F.col("_rn") == 1)
    )
    best = top_k(best, [C.USER_ID], [F.desc("total"), F.asc(C.ITEM_ID)], k)
    return _cand(best, source, F.col("total"), F.col("trigger"))


# -- ALS ---------------------------------------------------------------------------------------
def _index(df: DataFrame, col: str, out: str) -> DataFrame:
    """(col, out): a dense int id per distinct value of ``col`` in ascending order (the order
    Spark ML's StringIndexer ``alphabetAsc`` gives), as a table to join, not driver lists.

    Built in the JVM: a range-partitioned sort, a per-partition row position from
    ``monotonically_increasing_id`` (partition in the upper bits), and each partition's offset
    from its row count (one small collect: one number per partition). The sorted ids are
    checkpointed first so that every later use sees the same numbering."""
    ids = df.select(col).distinct().orderBy(col).withColumn("_m", F.monotonically_increasing_id())
    ids = ids.localCheckpoint(eager=True)
    part, pos = F.shiftright("_m", 33), F.col("_m").bitwiseAND((1 << 33) - 1)
    counts: dict[int, int] = dict(ids.groupBy(part.alias("p")).count().collect())
    offsets, start = [], 0
    for p in sorted(counts):
        offsets += [F.lit(p), F.lit(start)]
        start += counts[p]
    if not offsets:
        return ids.select(col, F.lit(0).alias(out)).limit(0)
    return ids.select(col, (F.create_map(*offsets)[part] + pos).cast("int").alias(out))


@dataclass(frozen=True)
class AlsParams:
    """The settings of one implicit-feedback ALS fit (``candidates.als_*`` and
    ``recommend.seed`` in the config; the defaults are the config's)."""

    rank: int = CandidatesConfig.als_rank
    max_iter: int = CandidatesConfig.als_max_iter
    reg_param: float = CandidatesConfig.als_reg
    alpha: float = CandidatesConfig.als_alpha
    seed: int = RecommendConfig.seed

    @classmethod
    def of(cls, p: CandidatesConfig, seed: int) -> AlsParams:
        return cls(p.als_rank, p.als_max_iter, p.als_reg, p.als_alpha, seed)


@dataclass(frozen=True)
class AlsFactors:
    """A fitted ALS model by id: ``users`` (user_id, features) and ``items`` (item_id,
    features), ``features`` as array<float>."""

    users: DataFrame
    items: DataFrame


def fit_als(inter: DataFrame, params: AlsParams = AlsParams()) -> AlsFactors:
    """Implicit-feedback ALS (Spark ML) on the summed interaction weights per (user, item).

    Ids are numbered by :func:`_index` (StringIndexer's alphabetical order), so the fit equals
    ``StringIndexer`` + ``ALS`` with the same settings; the factors come back keyed by id."""
    conf = inter.groupBy(C.USER_ID, C.ITEM_ID).agg(F.sum("weight").cast("float").alias("conf"))
    u_map = _index(conf, C.USER_ID, "u")
    i_map = _index(conf, C.ITEM_ID, "i")
    train = conf.join(u_map, C.USER_ID).join(i_map, C.ITEM_ID).select("u", "i", "conf")
    als = ALS(
        userCol="u",
        itemCol="i",
        ratingCol="conf",
        implicitPrefs=True,
        rank=params.rank,
        maxIter=params.max_iter,
        regParam=params.reg_param,
        alpha=params.alpha,
        seed=params.seed,
        nonnegative=False,
        coldStartStrategy="drop",
    )
    model = als.fit(train)
    return AlsFactors(
        users=model.userFactors.join(u_map.withColumnRenamed("u", "id"), "id").select(C.USER_ID, "features"),
        items=model.itemFactors.join(i_map.withColumnRenamed("i", "id"), "id").select(C.ITEM_ID, "features"),
    )


def score_als(
    factors: AlsFactors,
    users: DataFrame,
    k: int,
    allowed: DataFrame | None = None,
    block_cells: int = 1 << 24,
) -> DataFrame:
    """Top ``k`` items by ALS score for each of ``users`` that has factors, among the
    ``allowed`` items (item_id frame) when given, as ALS candidates.

    Exact, and never leaves the allowed items: their factors (n x rank floats) are broadcast
    and each Arrow batch of users is scored with one matrix product and a top-k cut in numpy
    (:func:`top_k_dot`), instead of ``recommendForUserSubset`` over every item."""
    spark = users.sparkSession
    item_f = factors.items
    if allowed is not None:
        item_f = item_f.join(allowed.select(C.ITEM_ID), C.ITEM_ID, "left_semi")
    tbl = item_f.select(C.ITEM_ID, "features").orderBy(C.ITEM_ID).toArrow()
    names = (C.USER_ID, C.ITEM_ID, "rating")
    out_schema = ", ".join(f"{n} {t}" for n, t in zip(names, ("string", "string", "double")))
    if tbl.num_rows == 0:
        return _cand(spark.createDataFrame([], out_schema), C.REASON_ALS, F.lit(0.0), F.lit(""))
    t_ids = np.asarray(tbl.column(C.ITEM_ID).to_pylist(), dtype=str)
    t_mat = _rows(tbl.column("features"))
    user_f = factors.users.join(users.select(C.USER_ID).distinct(), C.USER_ID, "left_semi")
    recs = blocked_top_k(user_f, t_ids, t_mat, k, names, exclude_same_id=False, block_cells=block_cells)
    return _cand(recs, C.REASON_ALS, F.col("rating"), F.lit("users with similar history"))


# -- content similarity ------------------------------------------------------------------------
def tfidf_vectors(items: DataFrame, num_features: int) -> DataFrame:
    """(item_id, features): the items' text vectors (:func:`recpipe.features.text.text_vectors`,
    the ones ``gold.item_features`` stores), L2-normalized, when that table is not there."""
    return feature_table_vectors(text_vectors(items, num_features), TEXT_VEC)


def feature_table_vectors(item_features: DataFrame, column: str) -> DataFrame:
    """(item_id, features) from ``gold.item_features``' text vector (array<float>), L2-normalized."""
    v = item_features.where(F.col(column).isNotNull()).select(
        C.ITEM_ID, array_to_vector(F.col(column)).alias("raw")
    )
    return Normalizer(inputCol="raw", outputCol="features", p=2.0).transform(v).select(C.ITEM_ID, "features")


def _rows(col: Any) -> npt.NDArray[Any]:
    """An Arrow list<float> column (equal lengths) -> float32 matrix, one row per value."""
    flat = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    n = len(flat)
    values = np.asarray(flat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(n, -1) if n and values.size else np.zeros((n, 0), dtype=np.float32)


def _unit_rows(col: Any) -> npt.NDArray[Any]:
    """:func:`_rows` with L2-normalized rows (zero rows stay zero)."""
    mat = _rows(col)
    norm = np.linalg.norm(mat, axis=1, keepdims=True)
    return np.divide(mat, norm, out=np.zeros_like(mat), where=norm > 0)


def top_k_dot(
    q_ids: npt.NDArray[Any],
    q_mat: npt.NDArray[Any],
    t_ids: npt.NDArray[Any],
    t_mat: npt.NDArray[Any],
    k: int,
    min_score: float = -np.inf,
    exclude_same_id: bool = True,
    names: tuple[str, str, str] = (C.ITEM_ID, "neighbour_id", "sim"),
) -> pa.RecordBatch:
    """For each query row, the ``k`` target rows of highest dot product (rounded to
    :data:`SCORE_DECIMALS`; ties by target id, ``t_ids`` sorted ascending), at least
    ``min_score``; a target with the query's own id is skipped when ``exclude_same_id``.
    Unit rows make the dot product the cosine."""
    sims = q_mat @ t_mat.T
    if exclude_same_id and len(t_ids):
        pos = np.minimum(np.searchsorted(t_ids, q_ids), len(t_ids) - 1)
        own = np.flatnonzero(t_ids[pos] == q_ids)
        sims[own, pos[own]] = -np.inf
    kk = min(k, sims.shape[1])
    q_out, t_out, s_out = q_ids[:0], t_ids[:0], np.zeros(0)
    if kk > 0 and len(q_ids):
        # The k-th best raw value per row; every target within one rounding step of it is a
        # contender, so ties after rounding are resolved by id below, not by argpartition.
        kth = np.partition(sims, sims.shape[1] - kk, axis=1)[:, sims.shape[1] - kk][:, None]
        step = 10.0**-SCORE_DECIMALS
        rows, cols = np.nonzero((sims >= np.maximum(kth, min_score) - step) & np.isfinite(sims))
        vals = np.round(sims[rows, cols].astype(np.float64), SCORE_DECIMALS)
        ok = vals >= min_score
        rows, cols, vals = rows[ok], cols[ok], vals[ok]
        order = np.lexsort((cols, -vals, rows))  # by row, score desc, target id asc
        rows, cols, vals = rows[order], cols[order], vals[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
        sel = rank < kk
        q_out, t_out, s_out = q_ids[rows[sel]], t_ids[cols[sel]], vals[sel]
    return pa.RecordBatch.from_arrays(
        [pa.array(q_out, type=pa.string()), pa.array(t_out, type=pa.string()), pa.array(s_out)],
        names=list(names),
    )


def blocked_top_k(
    queries: DataFrame,
    t_ids: npt.NDArray[Any],
    t_mat: npt.NDArray[Any],
    k: int,
    names: tuple[str, str, str],
    unit: bool = False,
    min_score: float = -np.inf,
    exclude_same_id: bool = True,
    block_cells: int = 1 << 24,
) -> DataFrame:
    """Exact top ``k`` targets per query row by dot product (:func:`top_k_dot`): ``queries``
    is (id, vector as array<float>), the targets' ids (sorted) and matrix are broadcast once,
    each Arrow batch of queries is scored in blocks of at most ``block_cells`` products
    (64 MiB of float32). ``unit`` L2-normalizes the query vectors (cosine). Returns ``names``:
    (query id, target id, score)."""
    spark = queries.sparkSession
    shared = spark.sparkContext.broadcast((t_ids, t_mat))
    rows_per_block = max(1, block_cells // max(1, len(t_ids)))
    q_id, q_vec = queries.columns[:2]
    to_matrix = _unit_rows if unit else _rows

    def search(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, mat = shared.value
        for batch in batches:
            q_ids = np.asarray(batch.column(q_id).to_pylist(), dtype=str)
            q_mat = to_matrix(batch.column(q_vec))
            for lo in range(0, len(q_ids), rows_per_block):
                hi = lo + rows_per_block
                yield top_k_dot(q_ids[lo:hi], q_mat[lo:hi], ids, mat, k, min_score, exclude_same_id, names)

    schema = f"{names[0]} string, {names[1]} string, {names[2]} double"
    return queries.select(q_id, q_vec).mapInArrow(search, schema)


def content_neighbours(
    vectors: DataFrame,
    triggers: DataFrame,
    targets: DataFrame,
    k: int,
    min_cosine: float = 0.0,
    block_cells: int = 1 << 24,
) -> DataFrame:
    """(item_id, neighbour_id, sim): for each trigger item, the ``k`` most similar target items
    by exact cosine of the text vectors (ties by neighbour id), at least ``min_cosine``.

    Exact blocked search, no pair of items as a row: the targets' unit matrix (float32,
    ``n_targets x dim``, sorted by id) is broadcast once and each Arrow batch of triggers is
    multiplied with it in blocks of at most ``block_cells`` similarities (64 MiB), each cut to
    its top ``k`` with numpy. ``triggers``/``targets`` are item id frames; targets include items
    nobody clicked yet. Cost: n_triggers x n_targets x dim multiply-adds (measured in the
    recommend benchmark); items without a vector (or a zero one) never match.
    """
    spark = vectors.sparkSession
    vecs = vectors.select(C.ITEM_ID, vector_to_array(F.col("features"), dtype="float32").alias("v"))
    tgt = vecs.join(targets.select(C.ITEM_ID).distinct(), C.ITEM_ID, "left_semi").orderBy(C.ITEM_ID).toArrow()
    out_schema = f"{C.ITEM_ID} string, neighbour_id string, sim double"
    t_ids = np.asarray(tgt.column(C.ITEM_ID).to_pylist(), dtype=str)
    t_mat = _unit_rows(tgt.column("v"))
    nonzero = np.flatnonzero(np.abs(t_mat).sum(axis=1) > 0) if len(t_ids) else np.zeros(0, dtype=int)
    t_ids, t_mat = t_ids[nonzero], t_mat[nonzero]
    if len(t_ids) == 0:
        return spark.createDataFrame([], out_schema)
    trig = vecs.join(triggers.select(C.ITEM_ID).distinct(), C.ITEM_ID, "left_semi")
    names = (C.ITEM_ID, "neighbour_id", "sim")
    return blocked_top_k(
        trig, t_ids, t_mat, k, names, unit=True, min_score=min_cosine, block_cells=block_cells
    )


# -- fresh items -------------------------------------------------------------------------------
def fresh_items(allowed: DataFrame, as_of: dt.datetime, window_hours: int) -> DataFrame:
    """(item_id, category, recency): allowed items published within ``window_hours`` before
    ``as_of``, recency 1 at publication falling linearly to ~0 at the window's end."""
    age = _age_hours("published_ts", as_of)
    return allowed.where(F.col("published_ts").isNotNull() & (age >= 0) & (age <= window_hours)).select(
        C.ITEM_ID, "category", (1.0 - age / (window_hours + 1.0)).alias("recency")
    )


def fresh_candidates(
    allowed: DataFrame,
    users: DataFrame,
    affinity: DataFrame,
    as_of: dt.datetime,
    window_hours: int,
    k: int,
) -> DataFrame:
    """Items published within ``window_hours`` before ``as_of``: the newest for everyone, and
    new items of each user's categories weighted by affinity.

    The plain Spark reference of the batch kernel (:func:`filter_and_budget`), which the
    job runs; tests keep the two equal.
    """
    fresh = fresh_items(allowed, as_of, window_hours)
    newest = top_k(fresh, [], [F.desc("recency"), F.asc(C.ITEM_ID)], k)
    g = _cand(
        users.select(C.USER_ID).crossJoin(newest.select(C.ITEM_ID, "recency")),
        C.REASON_FRESH,
        F.col("recency") * 0.5,
        F.lit("new"),
    )
    cat = _cand(
        affinity.join(fresh, "category"),
        C.REASON_FRESH,
        F.col("recency") * (0.5 + F.col("affinity")),
        F.concat(F.lit("new in "), F.col("category"), _basis_suffix(affinity)),
    )
    best = best_per_pair(g.unionByName(cat))
    return top_k(best, [C.USER_ID], [F.desc(C.SOURCE_SCORE), F.asc(C.ITEM_ID)], k)


# -- filters and budget ------------------------------------------------------------------------
def filter_candidates(cands: DataFrame, allowed: DataFrame, consumed_pairs: DataFrame) -> DataFrame:
    """Drop items that are not allowed (blocked, expired, too old) or already consumed by the user."""
    return cands.join(allowed.select(C.ITEM_ID), C.ITEM_ID, "left_semi").join(
        consumed_pairs, [C.USER_ID, C.ITEM_ID], "left_anti"
    )


# The configured default (config.CandidatesConfig.shares).
DEFAULT_SOURCE_SHARES = CandidatesConfig().shares


def apply_budget(cands: DataFrame, budget: int, shares: dict[str, float] | None = None) -> DataFrame:
    """Keep at most ``budget`` distinct items per user, the best of each source in proportion to
    its share: items are ordered by their best (rank within source / share), so every source gets
    its share of the budget and shares a source cannot fill go to the others. Keeps every source
    row of a kept item.

    The plain Spark reference of the batch kernel (:func:`filter_and_budget`), which the
    job runs; tests keep the two equal.
    """
    shares = shares or DEFAULT_SOURCE_SHARES
    share = F.create_map(*[x for s, v in shares.items() for x in (F.lit(s), F.lit(float(v)))])
    w_src = Window.partitionBy(C.USER_ID, C.SOURCE).orderBy(F.desc(C.SOURCE_SCORE), F.asc(C.ITEM_ID))
    ranked = cands.withColumn(
        "_norm_rank", F.row_number().over(w_src) / F.coalesce(share[F.col(C.SOURCE)], F.lit(K.DEFAULT_SHARE))
    )
    per_item = ranked.groupBy(C.USER_ID, C.ITEM_ID).agg(F.min("_norm_rank").alias("_best"))
    keep = top_k(per_item, [C.USER_ID], [F.asc("_best"), F.asc(C.ITEM_ID)], budget).select(
        C.USER_ID, C.ITEM_ID
    )
    return ranked.drop("_norm_rank").join(keep, [C.USER_ID, C.ITEM_ID], "left_semi")


@dataclass(frozen=True)
class ItemLists:
    """The item-side lists every user's trending and fresh candidates come from: small pandas
    frames shipped with the kernel (:func:`collect_item_lists`), not joined per user in Spark."""

    global_trend: pd.DataFrame  # item_id, score
    country_trend: pd.DataFrame  # country, item_id, score
    category_trend: pd.DataFrame  # category, item_id, score
    fresh: pd.DataFrame  # item_id, category, recency: every fresh allowed item
    k_fresh: int


def collect_item_lists(
    global_trend: DataFrame,
    country_trend: DataFrame,
    category_trend: DataFrame,
    allowed: DataFrame,
    as_of: dt.datetime,
    window_hours: int,
    k_fresh: int,
) -> ItemLists:
    """:func:`trending` lists and the fresh items of :func:`fresh_candidates`, collected."""
    fresh = fresh_items(allowed, as_of, window_hours)
    return ItemLists(
        global_trend=global_trend.select(C.ITEM_ID, "score").toPandas(),
        country_trend=country_trend.select(C.COUNTRY, C.ITEM_ID, "score").toPandas(),
        category_trend=category_trend.select("category", C.ITEM_ID, "score").toPandas(),
        fresh=fresh.toPandas(),
        k_fresh=k_fresh,
    )


def _list_marker_rows(users: DataFrame, affinity: DataFrame) -> list[DataFrame]:
    """The users' countries and category affinities as marker rows of the candidate columns
    (:data:`~recpipe.candidates.kernel.MARKS`), for the kernel to read back in the batch of
    their user."""
    basis = F.col(AFFINITY_BASIS) if AFFINITY_BASIS in affinity.columns else F.lit(None)
    return [
        users.select(
            C.USER_ID,
            F.lit(None).cast("string").alias(C.ITEM_ID),
            F.lit(K.USER_MARK).alias(C.SOURCE),
            F.lit(None).cast("double").alias(C.SOURCE_SCORE),
            F.col(C.COUNTRY).cast("string").alias(C.DETAIL),
        ),
        affinity.select(
            C.USER_ID,
            basis.cast("string").alias(C.ITEM_ID),  # a marker row's item id: the basis
            F.lit(K.AFFINITY_MARK).alias(C.SOURCE),
            F.col("affinity").cast("double").alias(C.SOURCE_SCORE),
            F.col("category").cast("string").alias(C.DETAIL),
        ),
    ]


def filter_and_budget(
    cands: DataFrame,
    allowed: DataFrame,
    consumed_pairs: DataFrame,
    budget: int,
    shares: dict[str, float] | None = None,
    users: DataFrame | None = None,
    affinity: DataFrame | None = None,
    lists: ItemLists | None = None,
) -> DataFrame:
    """:func:`filter_candidates` then :func:`apply_budget` in one shuffle: the candidates and the
    users' consumed pairs (as marker rows) are partitioned by user together, and each batch of
    whole users is filtered and budgeted on Arrow arrays and integer codes
    (:func:`recpipe.candidates.kernel.budget_table`), instead of a join and three windows over
    every candidate row.

    With ``lists``, ``users`` (user_id, country: every user of ``cands`` and the users without
    candidates who still get lists; only their consumed pairs are read) and ``affinity``
    (user_id, category, affinity[, basis]), each batch also generates its users' trending and
    fresh candidates from the item lists: the rows of :func:`trending_candidates` and
    :func:`fresh_candidates`, without ~200 rows per user crossing a shuffle.
    """
    shares = dict(shares or DEFAULT_SOURCE_SHARES)
    if lists is not None and (users is None or affinity is None):
        raise ValueError("filter_and_budget: lists need users and affinity")
    # The allowed ids go to the kernel (a code per item, in id order): items that are not
    # allowed are dropped there, without a join over every candidate row.
    ids = allowed.select(C.ITEM_ID).toArrow().column(0)
    if lists is None:
        codes = K.ItemCodes.allowed_only(ids)
    else:
        codes = K.ItemCodes.of(
            ids, lists.global_trend, lists.country_trend, lists.category_trend, lists.fresh, lists.k_fresh
        )
    kept = cands.select(*CAND_COLS)
    parts = [kept]
    if lists is not None and users is not None and affinity is not None:
        parts.extend(_list_marker_rows(users, affinity))
    # Only the consumed pairs of the users being budgeted travel with them: the given users, or
    # (without lists) the users that have candidates.
    who = users.select(C.USER_ID) if users is not None else kept.select(C.USER_ID).distinct()
    parts.append(
        consumed_pairs.join(who, C.USER_ID, "left_semi").select(
            C.USER_ID,
            C.ITEM_ID,
            F.lit(K.CONSUMED_MARK).alias(C.SOURCE),
            F.lit(None).cast("double").alias(C.SOURCE_SCORE),
            F.lit(None).cast("string").alias(C.DETAIL),
        )
    )
    schema = kept.schema
    shared = cands.sparkSession.sparkContext.broadcast(codes)
    with_lists = lists is not None

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        item_codes = shared.value
        for table in whole_groups_arrow(batches, C.USER_ID):
            yield from K.budget_table(table, item_codes, budget, shares, with_lists).to_batches()

    both = functools.reduce(DataFrame.unionByName, parts)
    return both.repartition(C.USER_ID).sortWithinPartitions(C.USER_ID).mapInArrow(fn, schema)
