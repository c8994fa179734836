"""Labels of the training examples: impressions labelled by a later click, click-only logs'
sampled negatives, and the time split.

* Label: a non-history click on the same (user, item) within ``examples.attribution_window_minutes``
  after the impression, in the same request when both carry a ``request_id``.
* Click-only sources (``data.feedback``): each click is a positive and ``negatives_per_positive``
  items clicked on its day are drawn per positive, excluding the user's positives; the train
  split's by ``examples.negative_sampling`` (click-count weighted or uniform), validation's and
  test's uniformly (so reported AUCs do not reward popularity); ``sampled`` marks drawn rows.
* Split by time: train < ``validation_start`` <= validation < ``test_start`` <= test.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.config import Config
from recpipe.features import build as B


def label_impressions(events: DataFrame, window_minutes: int) -> DataFrame:
    """Non-history impressions (prepared events) with ``label`` 1 when a matching click follows."""
    hist = F.col(C.IS_HISTORY)
    imps = events.where((F.col(C.EVENT_TYPE) == "impression") & ~hist)
    clicks = events.where((F.col(C.EVENT_TYPE) == "click") & ~hist).select(
        F.col(C.USER_ID).alias("_u"),
        F.col(C.ITEM_ID).alias("_i"),
        F.col(C.REQUEST_ID).alias("_r"),
        F.col(C.EVENT_TS).alias("_ts"),
    )
    i = imps.alias("i")
    cond = (
        (F.col(f"i.{C.USER_ID}") == F.col("_u"))
        & (F.col(f"i.{C.ITEM_ID}") == F.col("_i"))
        & (F.col("_ts") >= F.col(f"i.{C.EVENT_TS}"))
        & (F.col("_ts") <= F.col(f"i.{C.EVENT_TS}") + F.expr(f"INTERVAL {int(window_minutes)} MINUTES"))
        & (
            F.col(f"i.{C.REQUEST_ID}").isNull()
            | F.col("_r").isNull()
            | (F.col(f"i.{C.REQUEST_ID}") == F.col("_r"))
        )
    )
    positives = i.join(clicks, cond, "left_semi").select(C.EVENT_ID).withColumn(C.LABEL, F.lit(1))
    return (
        imps.join(positives, C.EVENT_ID, "left")
        .withColumn(C.LABEL, F.coalesce(F.col(C.LABEL), F.lit(0)).cast("int"))
        .withColumn(C.SAMPLED, F.lit(False))
    )


def _positives(events: DataFrame) -> DataFrame:
    clicks = events.where((F.col(C.EVENT_TYPE) == "click") & ~F.col(C.IS_HISTORY))
    return clicks.withColumn(C.LABEL, F.lit(1)).withColumn(C.SAMPLED, F.lit(False))


def negative_table(events: DataFrame, weighting: str) -> DataFrame:
    """``(_day, _slot, item_id, _n)``: per day, ``_n`` slots each naming an item clicked that day
    (the items in circulation), so a draw ``floor(rand * _n)`` picks one by an equi-join.

    ``popularity``: one slot per click (an item drawn in proportion to its clicks that day);
    ``uniform``: one slot per item clicked that day.
    """
    if weighting not in ("popularity", "uniform"):
        raise ValueError(f"negative weighting must be popularity or uniform, got {weighting!r}")
    clicks = events.where((F.col(C.EVENT_TYPE) == "click") & ~F.col(C.IS_HISTORY)).select(B.DAY, C.ITEM_ID)
    rows = clicks if weighting == "popularity" else clicks.distinct()
    day = Window.partitionBy(B.DAY)
    return rows.select(
        B.DAY,
        (F.row_number().over(day.orderBy(C.ITEM_ID)) - 1).cast("long").alias("_slot"),
        C.ITEM_ID,
        F.count("*").over(day).alias("_n"),
    )


def sample_negatives(
    events: DataFrame,
    per_positive: int,
    seed: int,
    weighting: str = "popularity",
    table: DataFrame | None = None,
) -> DataFrame:
    """Click-only sources: clicks as positives plus sampled negatives.

    Each click's negatives are drawn among the items clicked on its day (``table``, by default
    :func:`negative_table` of ``events`` with ``weighting``), by equi-joins on (day, slot), no
    range join. Draws that hit one of the user's positives are dropped; ``per_positive + 2``
    draws are made so that usually ``per_positive`` remain.
    """
    pos = _positives(events)
    table = table if table is not None else negative_table(events, weighting)
    sizes = table.select(B.DAY, "_n").distinct()
    draws = pos.select(
        C.EVENT_ID,
        C.USER_ID,
        C.EVENT_TS,
        C.REQUEST_ID,
        C.SESSION_ID,
        C.DEVICE,
        C.COUNTRY,
        C.IS_HISTORY,
        B.DAY,
        F.explode(F.sequence(F.lit(1), F.lit(per_positive + 2))).alias("_k"),
    )
    draws = draws.join(F.broadcast(sizes), B.DAY).withColumn(
        "_slot", F.floor(F.rand(seed) * F.col("_n")).cast("long")
    )
    neg = draws.join(table.drop("_n"), [B.DAY, "_slot"]).join(
        pos.select(C.USER_ID, C.ITEM_ID).distinct(), [C.USER_ID, C.ITEM_ID], "left_anti"
    )
    rank = F.row_number().over(Window.partitionBy(C.EVENT_ID).orderBy("_k"))
    neg = (
        neg.withColumn("_r", rank)
        .where(F.col("_r") <= per_positive)
        .select(
            F.concat(F.col(C.EVENT_ID), F.lit("-neg"), F.col("_k").cast("string")).alias(C.EVENT_ID),
            C.USER_ID,
            C.ITEM_ID,
            F.lit("click").alias(C.EVENT_TYPE),
            C.EVENT_TS,
            C.REQUEST_ID,
            C.SESSION_ID,
            F.lit(None).cast("int").alias(C.POSITION),
            F.lit(None).cast("double").alias(C.PROPENSITY),
            C.DEVICE,
            C.COUNTRY,
            C.IS_HISTORY,
            B.DAY,
            F.lit(0).alias(C.LABEL),
            F.lit(True).alias(C.SAMPLED),
        )
    )
    return pos.unionByName(neg)


def click_only_examples(events: DataFrame, cfg: Config) -> DataFrame:
    """Clicks plus sampled negatives among the items clicked on the same day: the train split's
    drawn by ``examples.negative_sampling``, validation's and test's uniformly. The reported
    AUCs thus rank a click against items in circulation drawn without regard to popularity."""
    ec = cfg.examples
    v_start = dt.datetime.combine(ec.validation_start, dt.time())
    is_train = F.col(C.EVENT_TS) < F.lit(v_start)
    parts = [
        sample_negatives(events.where(cond), ec.negatives_per_positive, cfg.train.seed, weighting)
        for cond, weighting in ((is_train, ec.negative_sampling), (~is_train, "uniform"))
    ]
    return parts[0].unionByName(parts[1])


def assign_split(ts: Column, validation_start: dt.date, test_start: dt.date) -> Column:
    """train < validation_start <= validation < test_start <= test (UTC midnights)."""
    v = F.lit(dt.datetime.combine(validation_start, dt.time()))
    t = F.lit(dt.datetime.combine(test_start, dt.time()))
    return F.when(ts < v, "train").when(ts < t, "validation").otherwise("test")


# Raw feature-table columns behind the model inputs, with their types (a missing feature row or
# table is a typed null, so training and serving derive the same defaults).
