"""Offline evaluation of published top-N lists and baselines against later clicks.

Accuracy metrics come from Spark ML's ``RankingEvaluator`` (NDCG@K, Recall@K, Precision@K, MAP)
plus HitRate@K and MRR; beyond-accuracy metrics are catalog coverage, intra-list diversity by
category and novelty. Every metric is computed for all users and for cold / warm users (no
history before the run date vs. some), and for the published lists, a popularity list and an
ALS list on the same split, so the numbers stand side by side.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, Literal

from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.frames import one_row

if TYPE_CHECKING:
    from recpipe.candidates.sources import AlsFactors

log = logging.getLogger(__name__)

# Our name -> Spark ML's RankingEvaluator metricName.
RankingMetric = Literal[
    "meanAveragePrecision", "meanAveragePrecisionAtK", "precisionAtK", "ndcgAtK", "recallAtK"
]
RANKING_METRICS: dict[str, RankingMetric] = {
    "ndcg": "ndcgAtK",
    "recall": "recallAtK",
    "precision": "precisionAtK",
    "map": "meanAveragePrecisionAtK",
}


def clicks_truth(events: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """(user_id, relevant: array<string>) of items clicked in [start, end), history excluded."""
    return (
        events.where(
            (F.col(C.EVENT_TYPE) == "click")
            & ~F.coalesce(F.col(C.IS_HISTORY), F.lit(False))
            & (F.col(C.EVENT_DATE) >= F.lit(start))
            & (F.col(C.EVENT_DATE) < F.lit(end))
        )
        .groupBy(C.USER_ID)
        .agg(F.array_distinct(F.collect_list(C.ITEM_ID)).alias("relevant"))
    )


def lists_from_rows(recs: DataFrame) -> DataFrame:
    """Rows (user_id, rank, item_id) -> (user_id, items: array<string> ordered by rank)."""
    return recs.groupBy(C.USER_ID).agg(
        F.transform(F.array_sort(F.collect_list(F.struct("rank", C.ITEM_ID))), lambda s: s[C.ITEM_ID]).alias(
            "items"
        )
    )


def _indexed(lists: DataFrame, truth: DataFrame) -> DataFrame:
    """Both sides as array<double> item indexes, as RankingEvaluator requires."""
    ids = (
        lists.select(F.explode("items").alias("i"))
        .union(truth.select(F.explode("relevant").alias("i")))
        .distinct()
    )
    # The map is one row anyway: index = 1-based position in the sorted distinct ids (what
    # dense_rank over all rows gave, without a window that pulls every row into one task).
    sorted_ids = ids.agg(F.array_sort(F.collect_list("i")).alias("ids"))
    mapping = sorted_ids.select(
        F.map_from_arrays("ids", F.transform("ids", lambda _, n: (n + 1).cast("double"))).alias("m")
    )
    joined = lists.join(truth, C.USER_ID, "inner").crossJoin(mapping)
    return joined.select(
        C.USER_ID,
        F.transform("items", lambda i: F.element_at(F.col("m"), i)).alias("prediction"),
        F.transform("relevant", lambda i: F.element_at(F.col("m"), i)).alias("label"),
        "items",
        "relevant",
    )


def accuracy_metrics(lists: DataFrame, truth: DataFrame, k: int) -> dict[str, float | int | None]:
    """NDCG/Recall/Precision/MAP@K (RankingEvaluator), HitRate@K and MRR over users with clicks."""
    df = _indexed(lists, truth).cache()
    n = df.count()
    out: dict[str, float | int | None] = {"users_evaluated": n}
    if n == 0:
        df.unpersist()
        return {**out, **{f"{m}@{k}": None for m in RANKING_METRICS}, f"hit_rate@{k}": None, "mrr": None}
    for name, metric in RANKING_METRICS.items():
        ev = RankingEvaluator(predictionCol="prediction", labelCol="label", metricName=metric, k=k)
        out[f"{name}@{k}"] = float(ev.evaluate(df))
    topk = F.slice("items", 1, k)
    hit = F.size(F.array_intersect(topk, F.col("relevant"))) > 0
    first = F.array_min(
        F.filter(
            F.transform("items", lambda x, i: F.when(F.array_contains(F.col("relevant"), x), i + 1)),
            lambda x: x.isNotNull(),
        )
    )
    row = one_row(
        df.agg(F.avg(hit.cast("double")).alias("hr"), F.avg(F.coalesce(1.0 / first, F.lit(0.0))).alias("mrr"))
    )
    out[f"hit_rate@{k}"] = float(row["hr"])
    out["mrr"] = float(row["mrr"])
    df.unpersist()
    return out


def beyond_accuracy(
    lists: DataFrame, items: DataFrame, popularity: DataFrame, k: int
) -> dict[str, float | None]:
    """Catalog coverage, intra-list diversity (share of item pairs of different categories), novelty.

    ``popularity``: (item_id, clicks) before the run date; novelty = mean -log2 of an item's
    share of those clicks (add-one smoothed), so unknown items are the most novel.
    """
    top = lists.select(C.USER_ID, F.posexplode(F.slice("items", 1, k)).alias("pos", C.ITEM_ID))
    catalog = items.where(F.col("status") == "active").select(C.ITEM_ID).distinct().count()
    recommended = top.select(C.ITEM_ID).distinct().count()
    cats = top.join(items.select(C.ITEM_ID, "category"), C.ITEM_ID, "left")
    per_list = (
        cats.groupBy(C.USER_ID, "category")
        .count()
        .groupBy(C.USER_ID)
        .agg(F.sum("count").alias("n"), F.sum(F.col("count") * (F.col("count") - 1)).alias("same_pairs"))
    )
    ild = one_row(
        per_list.where("n > 1").agg(F.avg(1 - F.col("same_pairs") / (F.col("n") * (F.col("n") - 1))))
    )[0]
    total = one_row(popularity.agg(F.sum("clicks")))[0] or 0
    n_items = max(catalog, 1)
    nov = one_row(
        top.join(popularity, C.ITEM_ID, "left")
        .select((-F.log2((F.coalesce("clicks", F.lit(0)) + 1) / F.lit(total + n_items))).alias("nov"))
        .agg(F.avg("nov"))
    )[0]
    return {
        "catalog_coverage": recommended / catalog if catalog else None,
        "intra_list_diversity": None if ild is None else float(ild),
        "novelty_bits": None if nov is None else float(nov),
        "lists": lists.count(),
    }


def popularity_lists(
    train_events: DataFrame, users: DataFrame, k: int, allowed: DataFrame | None = None
) -> DataFrame:
    """The same most-clicked items for everyone, minus what each user already clicked; ranked
    over the ``allowed`` items (item_id frame) when given, as the published lists are."""
    clicks = train_events.where(
        (F.col(C.EVENT_TYPE) == "click") & ~F.coalesce(F.col(C.IS_HISTORY), F.lit(False))
    )
    counts = clicks.groupBy(C.ITEM_ID).count()
    if allowed is not None:
        counts = counts.join(allowed.select(C.ITEM_ID), C.ITEM_ID, "left_semi")
    top = counts.orderBy(F.desc("count"), C.ITEM_ID).limit(k * 5)
    seen = clicks.select(C.USER_ID, C.ITEM_ID).distinct()
    ranked = (
        users.crossJoin(top)
        .join(seen, [C.USER_ID, C.ITEM_ID], "left_anti")
        .withColumn(
            "rank", F.row_number().over(Window.partitionBy(C.USER_ID).orderBy(F.desc("count"), C.ITEM_ID))
        )
        .where(F.col("rank") <= k)
    )
    return lists_from_rows(ranked)


def als_lists(
    factors: AlsFactors, train_events: DataFrame, users: DataFrame, k: int, allowed: DataFrame | None = None
) -> DataFrame:
    """The ALS candidate source alone (``factors``: the day's model, as recommend's), minus what
    each user consumed and, when given, items outside ``allowed`` (item_id frame)."""
    from recpipe.candidates import sources as S

    inter = S.interactions(train_events)
    cands = S.score_als(factors, users, 3 * k, allowed=allowed)
    seen = inter.select(C.USER_ID, C.ITEM_ID).distinct()
    w = Window.partitionBy(C.USER_ID).orderBy(F.desc(C.SOURCE_SCORE), C.ITEM_ID)
    rows = (
        cands.join(seen, [C.USER_ID, C.ITEM_ID], "left_anti")
        .withColumn("rank", F.row_number().over(w))
        .where(F.col("rank") <= k)
    )
    return lists_from_rows(rows)


def segment_users(events_before: DataFrame, users: DataFrame) -> DataFrame:
    """(user_id, segment): ``cold`` when the user has no event before the run date, else ``warm``."""
    known = events_before.select(C.USER_ID).distinct().withColumn("_k", F.lit(True))
    return users.join(known, C.USER_ID, "left").select(
        C.USER_ID, F.when(F.col("_k"), F.lit("warm")).otherwise(F.lit("cold")).alias("segment")
    )


def evaluate_lists(
    name: str,
    lists: DataFrame,
    truth: DataFrame,
    segments: DataFrame,
    items: DataFrame,
    popularity: DataFrame,
    k: int,
) -> list[dict[str, Any]]:
    """Metric rows for one policy: all users, then each user segment."""
    lists = lists.cache()
    rows = []
    for seg in ["all", "cold", "warm"]:
        if seg == "all":
            l_seg, t_seg = lists, truth
        else:
            ids = segments.where(F.col("segment") == seg).select(C.USER_ID)
            l_seg, t_seg = lists.join(ids, C.USER_ID), truth.join(ids, C.USER_ID)
        metrics = {**accuracy_metrics(l_seg, t_seg, k), **beyond_accuracy(l_seg, items, popularity, k)}
        rows.append({"policy": name, "segment": seg, "k": k, **metrics})
    lists.unpersist()
    return rows


def item_segment_hit_rates(
    lists: DataFrame, truth: DataFrame, events_before: DataFrame, k: int
) -> dict[str, Any]:
    """Share of clicked cold items (no event before the run date) and warm items that were recommended."""
    known = events_before.select(C.ITEM_ID).distinct().withColumn("_k", F.lit(True))
    pairs = truth.select(C.USER_ID, F.explode("relevant").alias(C.ITEM_ID)).join(known, C.ITEM_ID, "left")
    recd = lists.select(C.USER_ID, F.explode(F.slice("items", 1, k)).alias(C.ITEM_ID)).withColumn(
        "_r", F.lit(True)
    )
    j = pairs.join(recd, [C.USER_ID, C.ITEM_ID], "left")
    out = {}
    for seg, cond in (("cold_items", F.col("_k").isNull()), ("warm_items", F.col("_k").isNotNull())):
        r = one_row(
            j.where(cond).agg(
                F.count("*").alias("n"), F.avg(F.col("_r").isNotNull().cast("double")).alias("hit")
            )
        )
        out[seg] = {
            "clicked_pairs": int(r["n"]),
            f"recall@{k}": None if r["hit"] is None else float(r["hit"]),
        }
    return out
