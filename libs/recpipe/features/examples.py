"""Training examples: one row per logged impression, labelled, with point-in-time features.

* Label: a non-history click on the same (user, item) within ``examples.attribution_window_minutes``
  after the impression, in the same request when both carry a ``request_id``.
* Click-only sources (``data.feedback``): each click is a positive and ``negatives_per_positive``
  items clicked on its day are drawn per positive, excluding the user's positives; the train
  split's by ``examples.negative_sampling`` (click-count weighted or uniform), validation's and
  test's uniformly (so reported AUCs do not reward popularity); ``sampled`` marks drawn rows.
* Point in time: an example at time t joins the feature rows with ``as_of_date = date(t)``,
  computed from events strictly before 00:00 UTC of that day. All needed dates are built in one
  pass and written to the feature tables first; :mod:`recpipe.features.leakage` then proves that
  no example's ``feature_ts`` reaches its ``event_ts`` before anything is written.
* Split by time: train < ``validation_start`` <= validation < ``test_start`` <= test.

``gold.training_examples`` is partitioned by ``event_date``; a run overwrites the dates of its
range and is idempotent (a rerun on unchanged inputs commits nothing). The feature spec is written
to ``<table path>/_feature_spec.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from typing import Any

import pyarrow.fs as pafs
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe import quality
from recpipe.config import Config
from recpipe.events.feedback import CLICKS_ONLY, IMPRESSIONS, Feedback, is_clicks_only, with_feedback
from recpipe.events.items import read_items
from recpipe.features import build as B
from recpipe.features.leakage import check_leakage
from recpipe.features.spec import (
    CategoricalFeature,
    DenseFeature,
    FeatureSpec,
    HashedFeature,
    SequenceFeature,
    VectorFeature,
)
from recpipe.frames import one_row
from recpipe.guard import guard_partition_replace
from recpipe.lake import CommitResult, Lake, Txn, open_lake

log = logging.getLogger(__name__)

ITEM_AGE_HOURS = "item_age_hours"
USER_CATEGORY_SHARE = "user_category_share"
USER_HOURS_SINCE_LAST_EVENT = "user_hours_since_last_event"
USER_HOURS_SINCE_LAST_CLICK = "user_hours_since_last_click"
USER_LAST_ITEMS = "user_last_items"
# Target-aware: the user's history with the candidate's category (features.build.CATEGORY_MAPS).
USER_CATEGORY_IMPRESSIONS = "user_category_impressions"
USER_CATEGORY_CTR = "user_category_ctr"
USER_HOURS_SINCE_CATEGORY_CLICK = "user_hours_since_category_click"
ITEM_TEXT_VEC = "item_text_vec"
CATEGORICAL = [B.CATEGORY, B.SUBCATEGORY, C.DEVICE, C.COUNTRY]


def dense_columns(windows: list[int]) -> list[str]:
    wins = sorted(windows)
    ic = B.item_window_cols(wins)
    uc = B.user_window_cols(wins)
    return [
        C.POSITION,
        ITEM_AGE_HOURS,
        *ic["impressions"],
        *ic["clicks"],
        *ic["ctr"],
        B.ITEM_TREND,
        *uc["impressions"],
        *uc["clicks"],
        *uc["reads"],
        USER_HOURS_SINCE_LAST_EVENT,
        USER_HOURS_SINCE_LAST_CLICK,
        USER_CATEGORY_SHARE,
        USER_CATEGORY_IMPRESSIONS,
        USER_CATEGORY_CTR,
        USER_HOURS_SINCE_CATEGORY_CLICK,
    ]


def dense_transforms(windows: list[int]) -> dict[str, str]:
    """Per dense column, the transform the model applies before standardizing: ``log1p`` for the
    heavy-tailed counts and the hours since the user's last event/click, ``none`` for position,
    item age (freshness decays with it on a linear-in-hours scale), CTRs and shares."""
    wins = sorted(windows)
    ic, uc = B.item_window_cols(wins), B.user_window_cols(wins)
    logged = set(ic["impressions"] + ic["clicks"] + uc["impressions"] + uc["clicks"] + uc["reads"])
    logged |= {B.ITEM_TREND, USER_HOURS_SINCE_LAST_EVENT, USER_HOURS_SINCE_LAST_CLICK}
    logged |= {USER_CATEGORY_IMPRESSIONS, USER_HOURS_SINCE_CATEGORY_CLICK}
    return {c: ("log1p" if c in logged else "none") for c in dense_columns(windows)}


# -- transforms ------------------------------------------------------------------------------------
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
    v_start = dt.datetime.combine(dt.date.fromisoformat(ec.validation_start), dt.time())
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
def raw_feature_types(windows: list[int]) -> dict[str, str]:
    ic, uc = B.item_window_cols(sorted(windows)), B.user_window_cols(sorted(windows))
    counts = ic["impressions"] + ic["clicks"] + uc["impressions"] + uc["clicks"] + uc["reads"]
    return {
        **{c: "long" for c in counts},
        **{c: "double" for c in ic["ctr"]},
        B.ITEM_TREND: "double",
        B.CATEGORY: "string",
        B.SUBCATEGORY: "string",
        C.DEVICE: "string",
        C.COUNTRY: "string",
        B.AGE_HOURS: "double",
        B.HOURS_SINCE_LAST_EVENT: "double",
        B.HOURS_SINCE_LAST_CLICK: "double",
        **B.CATEGORY_MAPS,
        B.LAST_ITEMS: "array<string>",
    }


def model_input_columns(windows: list[int], age_offset_hours: Column) -> dict[str, Column]:
    """The model-input columns derived from joined feature rows: ONE definition for training
    (:func:`join_point_in_time`) and serving (``scoring.rank.attach_model_features``).

    Missing feature rows become zero counts and CTRs, recency capped at ``max(windows) * 24``
    hours, an empty history, ``unknown`` categories and context. ``age_offset_hours`` is the time
    from the features' cut-off to the moment scored (the impression in training, 0 at serving).
    """
    wins = sorted(windows)
    cap = F.lit(float(max(wins) * 24))
    cat = F.when(F.coalesce(F.col(B.CATEGORY), F.lit("")) == "", F.lit(B.UNKNOWN_CATEGORY)).otherwise(
        F.col(B.CATEGORY)
    )
    types = raw_feature_types(wins)
    out: dict[str, Column] = {
        C.DEVICE: F.coalesce(F.col(C.DEVICE), F.lit("unknown")),
        C.COUNTRY: F.coalesce(F.col(C.COUNTRY), F.lit("unknown")),
        B.CATEGORY: cat,
        B.SUBCATEGORY: F.coalesce(F.col(B.SUBCATEGORY), F.lit(B.UNKNOWN_CATEGORY)),
    }
    for c, t in types.items():
        if t == "long":
            out[c] = F.coalesce(F.col(c), F.lit(0)).cast("long")
        elif c in B.item_window_cols(wins)["ctr"] or c == B.ITEM_TREND:
            out[c] = F.coalesce(F.col(c), F.lit(0.0))
    out[ITEM_AGE_HOURS] = F.greatest(
        F.coalesce(F.col(B.AGE_HOURS) + age_offset_hours, F.lit(0.0)), F.lit(0.0)
    )
    out[USER_HOURS_SINCE_LAST_EVENT] = F.least(F.coalesce(F.col(B.HOURS_SINCE_LAST_EVENT), cap), cap)
    out[USER_HOURS_SINCE_LAST_CLICK] = F.least(F.coalesce(F.col(B.HOURS_SINCE_LAST_CLICK), cap), cap)
    out[USER_CATEGORY_SHARE] = F.coalesce(F.try_element_at(F.col(B.CATEGORY_CLICK_SHARE), cat), F.lit(0.0))
    out[USER_CATEGORY_IMPRESSIONS] = F.coalesce(
        F.try_element_at(F.col(B.CATEGORY_IMPRESSIONS), cat), F.lit(0)
    ).cast("long")
    out[USER_CATEGORY_CTR] = F.coalesce(F.try_element_at(F.col(B.CATEGORY_CTR), cat), F.lit(0.0))
    cat_hours = F.try_element_at(F.col(B.CATEGORY_HOURS_SINCE_CLICK), cat)
    out[USER_HOURS_SINCE_CATEGORY_CLICK] = F.least(F.coalesce(cat_hours, cap), cap)
    out[USER_LAST_ITEMS] = F.coalesce(F.col(B.LAST_ITEMS), F.array().cast("array<string>"))
    return out


def join_point_in_time(
    examples: DataFrame, item_feats: DataFrame, user_feats: DataFrame, windows: list[int]
) -> DataFrame:
    """Join each example at time t with the feature rows of ``as_of_date = date(t)``.

    Missing feature rows (a new user, an item outside the catalog) become zero counts, capped
    recency (``max(windows) * 24`` hours), an empty history; ``feature_ts`` is the latest event
    time behind either side (null when none).
    """
    wins = sorted(windows)
    ic = B.item_window_cols(wins)
    uc = B.user_window_cols(wins)
    ex = examples.withColumn(C.AS_OF_DATE, F.to_date(C.EVENT_TS))
    it = item_feats.select(
        C.ITEM_ID,
        C.AS_OF_DATE,
        B.CATEGORY,
        B.SUBCATEGORY,
        *ic["impressions"],
        *ic["clicks"],
        *ic["ctr"],
        B.ITEM_TREND,
        B.AGE_HOURS,
        F.col(C.FEATURE_TS).alias("_item_fts"),
    )
    us = user_feats.select(
        C.USER_ID,
        C.AS_OF_DATE,
        *uc["impressions"],
        *uc["clicks"],
        *uc["reads"],
        *B.CATEGORY_MAPS,
        B.HOURS_SINCE_LAST_EVENT,
        B.HOURS_SINCE_LAST_CLICK,
        B.LAST_ITEMS,
        F.col(C.FEATURE_TS).alias("_user_fts"),
    )
    j = ex.join(it, [C.ITEM_ID, C.AS_OF_DATE], "left").join(us, [C.USER_ID, C.AS_OF_DATE], "left")
    since_cut = B._hours_between(F.col(C.EVENT_TS), B.cutoff_ts(F.col(C.AS_OF_DATE)))
    derived = model_input_columns(wins, since_cut)
    return j.select(
        F.col(C.EVENT_ID).alias(C.EXAMPLE_ID),
        C.USER_ID,
        C.ITEM_ID,
        C.REQUEST_ID,
        C.SESSION_ID,
        C.POSITION,
        C.EVENT_TS,
        F.to_date(C.EVENT_TS).alias(C.EVENT_DATE),
        C.PROPENSITY,
        C.LABEL,
        C.SAMPLED,
        *[v.alias(k) for k, v in derived.items()],
        F.greatest("_item_fts", "_user_fts").alias(C.FEATURE_TS),
        C.AS_OF_DATE,
    )


def add_text_vectors(examples: DataFrame, vectors: DataFrame, dim: int) -> DataFrame:
    """Append the item's TF-IDF vector (zeros for items without one) before ``feature_ts``."""
    zeros = F.array_repeat(F.lit(0.0).cast("float"), dim)
    j = examples.join(F.broadcast(vectors.withColumnRenamed(B.TEXT_VEC, ITEM_TEXT_VEC)), C.ITEM_ID, "left")
    cols = [c for c in examples.columns if c not in (C.FEATURE_TS, C.AS_OF_DATE, C.SPLIT)]
    return j.select(
        *cols,
        F.coalesce(F.col(ITEM_TEXT_VEC), zeros).alias(ITEM_TEXT_VEC),
        C.FEATURE_TS,
        C.AS_OF_DATE,
        C.SPLIT,
    )


# -- quality ---------------------------------------------------------------------------------------
def example_checks(
    windows: list[int], splits: list[str], label_bounds: tuple[float, float] = (0.001, 0.5)
) -> list[quality.Check]:
    wins = sorted(windows)
    ic = B.item_window_cols(wins)
    uc = B.user_window_cols(wins)
    Q = quality.Check
    checks = [
        Q("ExpectColumnValuesToNotBeNull", {"column": c})
        for c in (C.EXAMPLE_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TS, C.LABEL, C.SPLIT, C.AS_OF_DATE)
    ]
    checks += [
        Q("ExpectColumnValuesToBeUnique", {"column": C.EXAMPLE_ID}),
        Q("ExpectColumnValuesToBeInSet", {"column": C.LABEL, "value_set": [0, 1]}),
        Q(
            "ExpectColumnMeanToBeBetween",
            {"column": C.LABEL, "min_value": label_bounds[0], "max_value": label_bounds[1]},
        ),
        Q("ExpectColumnValuesToBeInSet", {"column": C.SPLIT, "value_set": C.SPLITS}),
        Q("ExpectColumnDistinctValuesToContainSet", {"column": C.SPLIT, "value_set": splits}),
    ]
    checks += [
        Q("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0})
        for c in ic["impressions"]
        + ic["clicks"]
        + uc["impressions"]
        + uc["clicks"]
        + uc["reads"]
        + [ITEM_AGE_HOURS, USER_CATEGORY_IMPRESSIONS, USER_HOURS_SINCE_CATEGORY_CLICK]
    ]
    checks += [
        Q("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "max_value": 1})
        for c in ic["ctr"] + [USER_CATEGORY_SHARE, USER_CATEGORY_CTR]
    ]
    return checks


def expected_splits(cfg: Config, start: dt.date, end: dt.date) -> list[str]:
    """The splits whose time range overlaps ``[start, end]`` (each must be non-empty)."""
    v = dt.date.fromisoformat(cfg.examples.validation_start)
    t = dt.date.fromisoformat(cfg.examples.test_start)
    out = []
    if start < v:
        out.append("train")
    if start < t and end >= v:
        out.append("validation")
    if end >= t:
        out.append("test")
    return out


# -- feature spec ------------------------------------------------------------------------------------
def build_spec(cfg: Config, examples: DataFrame, version: int | None, extra: dict[str, Any]) -> FeatureSpec:
    """The spec of the examples table: vocabularies and dense stats from its train split."""
    train = examples.where(F.col(C.SPLIT) == "train")
    if train.limit(1).count() == 0:
        train = examples
    dense = dense_columns(cfg.features.windows_days)
    transforms = dense_transforms(cfg.features.windows_days)

    def value(c: str) -> Column:  # the value the model standardizes (see DenseFeature.transform)
        x = F.col(c).cast("double")
        return F.log1p(F.greatest(x, F.lit(0.0))) if transforms[c] == "log1p" else x

    row = one_row(
        train.agg(
            *[F.mean(value(c)).alias(f"m_{c}") for c in dense],
            *[F.stddev_pop(value(c)).alias(f"s_{c}") for c in dense],
            *[F.sort_array(F.collect_set(c)).alias(f"v_{c}") for c in CATEGORICAL],
        )
    )

    def num(v: Any, default: float) -> float:
        return float(v) if v is not None else default

    return FeatureSpec(
        label=C.LABEL,
        hashed=[
            HashedFeature(C.USER_ID, cfg.examples.hash_buckets_user),
            HashedFeature(C.ITEM_ID, cfg.examples.hash_buckets_item),
        ],
        categorical=[CategoricalFeature(c, list(row[f"v_{c}"] or [])) for c in CATEGORICAL],
        dense=[
            DenseFeature(c, num(row[f"m_{c}"], 0.0), num(row[f"s_{c}"], 1.0) or 1.0, transforms[c])
            for c in dense
        ],
        vectors=[VectorFeature(ITEM_TEXT_VEC, cfg.features.text_features)],
        sequences=[SequenceFeature(USER_LAST_ITEMS, cfg.features.last_k_items, C.ITEM_ID)],
        metadata={
            "examples_table": C.GOLD_TRAINING_EXAMPLES,
            "examples_table_version": version,
            "null_position": "position is null for sampled negatives; fill with the mean",
            "features": dataclasses.asdict(cfg.features),
            "examples": dataclasses.asdict(cfg.examples),
            **extra,
        },
    )


def spec_path(lake: Lake) -> str:
    return f"{lake.path(C.GOLD_TRAINING_EXAMPLES)}/{C.FEATURE_SPEC_FILE}"


def write_spec(lake: Lake, spec: FeatureSpec) -> str:
    path = spec_path(lake)
    fs, p = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
    with fs.open_output_stream(p) as fh:
        fh.write(spec.to_json().encode())
    return path


def read_spec(lake: Lake) -> FeatureSpec:
    path = spec_path(lake)
    fs, p = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
    with fs.open_input_stream(p) as fh:
        return FeatureSpec.from_json(fh.read().decode())


# -- job ---------------------------------------------------------------------------------------------
_SUMMARY_TABLES = (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES, C.GOLD_TRAINING_EXAMPLES)


def _table_versions(lake: Lake) -> dict[str, int | None]:
    """The current versions of the feature and examples tables (for the job summary)."""
    return {t: lake.version(t) for t in _SUMMARY_TABLES}


def _with_feedback_kind(cfg: Config, lake: Lake, click_only: bool | None) -> Config:
    """``cfg`` with ``data.feedback`` overridden by ``click_only`` (if given), then resolved."""
    if click_only is not None:
        kind: Feedback = CLICKS_ONLY if click_only else IMPRESSIONS
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, feedback=kind))
    return with_feedback(cfg, lake)


def _run_identity(
    cfg: Config, lake: Lake, start: dt.date, end: dt.date, click_only: bool
) -> tuple[Txn, str, dict[str, Any]]:
    """The examples write's transaction token (from the inputs' fingerprint), the run id and the
    head of the job summary."""
    fp = B.inputs_fingerprint(cfg, lake, start, end, click_only, dataclasses.asdict(cfg.examples))
    txn = Txn(f"recpipe.examples/{start.isoformat()}_{end.isoformat()}/{fp}", 1)
    run_id = f"examples/{start.isoformat()}_{end.isoformat()}/{uuid.uuid4().hex[:8]}"
    summary: dict[str, Any] = {
        "job": "examples",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "run_id": run_id,
        "fingerprint": fp,
    }
    return txn, run_id, summary


def _read_range_events(cfg: Config, lake: Lake, start: dt.date, end: dt.date) -> DataFrame:
    """Raw events from the feature lookback before ``start`` up to the end of the attribution
    window after ``end``."""
    lo = start - dt.timedelta(days=max(cfg.features.windows_days))
    hi_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time()) + dt.timedelta(
        minutes=cfg.examples.attribution_window_minutes
    )
    return lake.read(C.SILVER_EVENTS).where(
        (F.col(C.EVENT_DATE) >= F.lit(lo - dt.timedelta(days=1)))
        & (F.col(C.EVENT_DATE) <= F.lit(end + dt.timedelta(days=1)))
        & (F.col(C.EVENT_TS) >= F.lit(dt.datetime.combine(lo, dt.time())))
        & (F.col(C.EVENT_TS) <= F.lit(hi_ts))
    )


def _labelled_base(
    cfg: Config, events: DataFrame, start: dt.date, end: dt.date, click_only: bool
) -> tuple[DataFrame, dict[str, Any]]:
    """The labelled examples dated ``start..end`` (not persisted) and the summary's ``sampling``."""
    ec = cfg.examples
    in_range = (F.col(B.DAY) >= F.lit(start)) & (F.col(B.DAY) <= F.lit(end))
    if click_only:
        base = click_only_examples(events.where(in_range), cfg)
        sampling: dict[str, Any] = {
            "click_only": True,
            "negatives_per_positive": ec.negatives_per_positive,
            "train_negatives": ec.negative_sampling,
            "validation_test_negatives": "uniform",
            "pool": "items clicked on the same day",
            "excludes": "the user's positives",
            "seed": cfg.train.seed,
        }
    else:
        base = label_impressions(events, ec.attribution_window_minutes).where(in_range)
        sampling = {"click_only": False}
    return base, sampling


def _join_and_split(cfg: Config, base: DataFrame, item_df: DataFrame, user_df: DataFrame) -> DataFrame:
    """Point-in-time join of ``base`` with the feature frames, plus the split column (not persisted)."""
    ec = cfg.examples
    return join_point_in_time(base, item_df.drop(B.TEXT_VEC), user_df, cfg.features.windows_days).withColumn(
        C.SPLIT,
        assign_split(
            F.col(C.EVENT_TS),
            dt.date.fromisoformat(ec.validation_start),
            dt.date.fromisoformat(ec.test_start),
        ),
    )


def _quality_gate(
    cfg: Config, lake: Lake, joined: DataFrame, start: dt.date, end: dt.date, run_id: str
) -> dict[str, Any]:
    """Validate and record the examples' quality suite; raise on a critical failure when configured.
    Returns the report's summary."""
    report = quality.validate(
        joined.drop(USER_LAST_ITEMS),
        "training_examples",
        example_checks(cfg.features.windows_days, expected_splits(cfg, start, end)),
        C.GOLD_TRAINING_EXAMPLES,
        lake.version(C.GOLD_TRAINING_EXAMPLES),
    )
    quality.record(lake, report, run_id=run_id)
    summary = report.summary()
    if cfg.quality.fail_on_critical:
        report.raise_if_failed()
    return summary


def _spec_and_stats(
    cfg: Config, lake: Lake, joined: DataFrame, run_id: str, sampling: dict[str, Any]
) -> tuple[dict[Any, Any], dict[Any, Any], str]:
    """From the written table: its split counts, the run's label rate per split, and the path of
    the feature spec built from the table and written."""
    version = lake.version(C.GOLD_TRAINING_EXAMPLES)
    table = lake.read(C.GOLD_TRAINING_EXAMPLES, version)
    counts = {r[0]: r[1] for r in table.groupBy(C.SPLIT).count().collect()}
    label_rate = {r[0]: r[1] for r in joined.groupBy(C.SPLIT).agg(F.mean(C.LABEL)).collect()}
    spec = build_spec(cfg, table.drop(ITEM_TEXT_VEC), version, {"run_id": run_id, "sampling": sampling})
    return counts, label_rate, write_spec(lake, spec)


def _load_inputs(
    cfg: Config, lake: Lake, start: dt.date, end: dt.date, click_only: bool
) -> tuple[DataFrame, DataFrame, DataFrame, dict[str, Any]]:
    """Step 1: the prepared events, the items and the labelled examples (all three persisted; the
    caller unpersists them) and the summary's ``sampling``."""
    raw = _read_range_events(cfg, lake, start, end)
    events = B.prepare_events(raw).persist(StorageLevel.MEMORY_AND_DISK)
    items = read_items(lake).persist(StorageLevel.MEMORY_AND_DISK)
    base, sampling = _labelled_base(cfg, events, start, end, click_only)
    return events, items, base.persist(StorageLevel.MEMORY_AND_DISK), sampling


def _features_and_join(
    cfg: Config, events: DataFrame, items: DataFrame, base: DataFrame, end: dt.date, dates: list[dt.date]
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """Step 2: the item and user feature frames of ``dates`` (persisted), the items' text vectors
    and the point-in-time joined, split examples (persisted; the caller unpersists)."""
    feat_events = events.where(F.col(C.EVENT_TS) < F.lit(dt.datetime.combine(end, dt.time())))
    item_df, user_df = build_feature_frames(cfg, feat_events, items, dates)
    item_df = item_df.persist(StorageLevel.MEMORY_AND_DISK)
    user_df = user_df.persist(StorageLevel.MEMORY_AND_DISK)
    vectors = item_df.select(C.ITEM_ID, B.TEXT_VEC).dropDuplicates([C.ITEM_ID])
    joined = _join_and_split(cfg, base, item_df, user_df).persist(StorageLevel.MEMORY_AND_DISK)
    return item_df, user_df, vectors, joined


def _guard_and_write_features(
    cfg: Config,
    lake: Lake,
    joined: DataFrame,
    frames: tuple[DataFrame, DataFrame],
    dates: list[dt.date],
    day_list: list[dt.date],
    run_id: str,
    force: bool,
) -> dict[str, Any]:
    """Step 3 (after the quality gate): check the examples' partition replacement, then write the
    feature partitions of ``dates``; returns the features write summary."""
    start, end = day_list[0], day_list[-1]
    guard_partition_replace(
        lake,
        C.GOLD_TRAINING_EXAMPLES,
        joined,
        C.EVENT_DATE,
        day_list,
        max_drop_share=cfg.lake.max_drop_share,
        setting="lake.max_drop_share",
        force=force,
    )
    feat_fp = B.inputs_fingerprint(cfg, lake, "examples", start, end)
    return B.write_features(
        cfg,
        lake,
        frames[0],
        frames[1],
        dates,
        run_id,
        Txn(f"recpipe.features/examples/{feat_fp}", 1),
        force=force,
    )


def _write_examples(
    cfg: Config, lake: Lake, joined: DataFrame, vectors: DataFrame, day_list: list[dt.date], txn: Txn
) -> CommitResult:
    """Step 4: overwrite the range's partitions of the examples table (with the text vectors)."""
    out = add_text_vectors(joined, vectors, cfg.features.text_features)
    return lake.overwrite(
        C.GOLD_TRAINING_EXAMPLES,
        out,
        partition_by=[C.EVENT_DATE],
        partitions={C.EVENT_DATE: day_list},
        txn=txn,
        add_columns=True,  # an older table without a newer feature column (item_trend)
    )


def run_examples(
    cfg: Config,
    spark: SparkSession,
    start: dt.date,
    end: dt.date,
    lake: Lake | None = None,
    click_only: bool | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build ``gold.training_examples`` for impressions dated ``start..end`` (inclusive).

    Nothing is written when the examples are empty or an examples or feature partition would lose
    more than ``lake.max_drop_share`` of its stored rows, unless ``force`` (:mod:`recpipe.guard`).
    Also writes the feature-table partitions of every date in the range (one pass), runs the
    quality suites and the leakage check (either failing stops the job before the examples are
    written), and writes the feature spec. ``click_only`` overrides ``data.feedback`` (``None``:
    the configured kind, or the detected one when it is ``auto``).
    """
    if end < start:
        raise ValueError(f"examples: end {end} is before start {start}")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    lake = lake or open_lake(cfg, spark)
    cfg = _with_feedback_kind(cfg, lake, click_only)
    click_only = is_clicks_only(cfg)
    txn, run_id, summary = _run_identity(cfg, lake, start, end, click_only)
    if lake.txn_version(C.GOLD_TRAINING_EXAMPLES, txn.app_id):
        summary["skipped"] = "already built from these inputs"
        summary["table_versions"] = _table_versions(lake)
        return summary

    # 1. inputs: events from the feature lookback before `start` up to the end of the attribution window.
    t0 = time.perf_counter()
    events, items, base, summary["sampling"] = _load_inputs(cfg, lake, start, end, click_only)
    dates = sorted(r[0] for r in base.select(B.DAY).distinct().collect())
    timings["label_s"] = time.perf_counter() - t0
    if not dates:
        raise ValueError(
            f"examples: no {'clicks' if click_only else 'impressions'} between {start} and {end}"
        )

    # 2. features for every needed date (one pass), point-in-time join, split, leakage check.
    t0 = time.perf_counter()
    item_df, user_df, vectors, joined = _features_and_join(cfg, events, items, base, end, dates)
    n_examples = joined.count()
    timings["features_join_s"] = time.perf_counter() - t0
    summary["leakage"] = check_leakage(joined)

    # 3. quality gates, then the feature partitions of the range's dates.
    t0 = time.perf_counter()
    summary["quality"] = _quality_gate(cfg, lake, joined, start, end, run_id)
    day_list = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    summary["features"] = _guard_and_write_features(
        cfg, lake, joined, (item_df, user_df), dates, day_list, run_id, force
    )
    timings["quality_features_s"] = time.perf_counter() - t0

    # 4. write the range's partitions, then the spec from the table's train split.
    t0 = time.perf_counter()
    res = _write_examples(cfg, lake, joined, vectors, day_list, txn)
    timings["write_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts, label_rate, summary["spec_path"] = _spec_and_stats(cfg, lake, joined, run_id, summary["sampling"])
    timings["spec_s"] = time.perf_counter() - t0
    for df in (events, items, base, item_df, user_df, joined):
        df.unpersist()
    summary.update(
        {
            "examples": n_examples,
            "rows_written": res.rows_written,
            "as_of_dates": [d.isoformat() for d in dates],
            "table_split_counts": counts,
            "run_label_rate": {k: round(v, 5) for k, v in label_rate.items()},
            "table_versions": _table_versions(lake),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "duration_s": round(time.perf_counter() - t_start, 3),
        }
    )
    return summary


def build_feature_frames(
    cfg: Config, events: DataFrame, items: DataFrame, dates: list[dt.date]
) -> tuple[DataFrame, DataFrame]:
    """Feature frames for ``dates`` (a module attribute so that tests can plant a leak)."""
    return B.build_feature_frames(cfg, events, items, dates)


def default_range(lake: Lake, until: dt.date | None) -> tuple[dt.date, dt.date]:
    """The whole event range of ``silver.events`` up to ``until`` (inclusive)."""
    row = (
        lake.read(C.SILVER_EVENTS)
        .where(~F.coalesce(F.col(C.IS_HISTORY), F.lit(False)))
        .agg(F.min(C.EVENT_DATE), F.max(C.EVENT_DATE))
        .first()
    )
    if row is None or row[0] is None:
        raise ValueError("examples: silver.events is empty")
    end = row[1] if until is None else min(row[1], until)
    return row[0], end
