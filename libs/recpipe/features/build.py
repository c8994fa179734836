"""Feature tables as of a date: ``gold.item_features`` and ``gold.user_features``.

Point in time: the partition ``as_of_date = D`` is computed only from events with
``event_ts < D 00:00 UTC`` and looks back at most ``max(features.windows_days)`` days (counts over
each window, recency, category shares and last-k clicks). ``feature_ts`` is the latest event time
that contributed to a row (null when none did), so the examples' leakage check can prove it.

* ``is_history`` clicks (a source's pre-log click history, e.g. MIND) are user activity (clicks,
  recency, category shares, last-k items) but never counted as item impressions/clicks/CTR.
* Catalog metadata (category, text, publish time) is not an event: every catalog item gets a row
  for every date, with zero counts when it had no events; ``age_hours`` is measured from
  publication to the cutoff (negative for items published after it). The TF-IDF model is fit on
  the whole catalog (text statistics, no labels).

The transforms compute any number of dates in one pass (each daily aggregate is exploded onto the
dates it contributes to), which is how ``run_features`` with a ``start`` writes all the dates a
range of training examples reads at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe import quality
from recpipe.config import Config
from recpipe.events.feedback import is_clicks_only, with_feedback
from recpipe.events.items import read_items
from recpipe.features.text import TEXT_TOKENS as TEXT_TOKENS  # re-exported: stored columns
from recpipe.features.text import TEXT_VEC as TEXT_VEC
from recpipe.features.text import text_vectors as text_vectors
from recpipe.guard import guard_partition_replace
from recpipe.lake import Lake, Txn, open_lake

log = logging.getLogger(__name__)

DAY = "_day"
# Item feature columns (window columns are named per window: item_impressions_7d, ...).
CATEGORY = "category"
SUBCATEGORY = "subcategory"
AGE_HOURS = "age_hours"
# The item's clicks before the cut-off, each weighted 2^(-age / features.trend_half_life_hours).
ITEM_TREND = "item_trend"
CATEGORY_CLICK_SHARE = "category_click_share"
HOURS_SINCE_LAST_EVENT = "hours_since_last_event"
HOURS_SINCE_LAST_CLICK = "hours_since_last_click"
LAST_ITEMS = "last_items"
# Per category, the user's non-history impressions, CTR (non-history clicks / impressions, for
# categories with impressions) and hours from the cut-off back to the last click (any click):
# what the target-aware model inputs look up with the candidate's category.
CATEGORY_IMPRESSIONS = "category_impressions"
CATEGORY_CTR = "category_ctr"
CATEGORY_HOURS_SINCE_CLICK = "category_hours_since_click"
CATEGORY_MAPS = {
    CATEGORY_CLICK_SHARE: "map<string,double>",
    CATEGORY_IMPRESSIONS: "map<string,bigint>",
    CATEGORY_CTR: "map<string,double>",
    CATEGORY_HOURS_SINCE_CLICK: "map<string,double>",
}
UNKNOWN_CATEGORY = "unknown"


def item_window_cols(windows: list[int]) -> dict[str, list[str]]:
    return {
        "impressions": [f"item_impressions_{w}d" for w in windows],
        "clicks": [f"item_clicks_{w}d" for w in windows],
        "ctr": [f"item_ctr_{w}d" for w in windows],
    }


def user_window_cols(windows: list[int]) -> dict[str, list[str]]:
    return {
        "impressions": [f"user_impressions_{w}d" for w in windows],
        "clicks": [f"user_clicks_{w}d" for w in windows],
        "reads": [f"user_reads_{w}d" for w in windows],
    }


def cutoff_ts(as_of: Column) -> Column:
    """``as_of_date`` -> its cutoff instant, ``as_of 00:00 UTC`` (session time zone is UTC)."""
    return F.to_timestamp(as_of)


def _hours_between(later: Column, earlier: Column) -> Column:
    return (F.unix_micros(later) - F.unix_micros(earlier)).cast("double") / 3.6e9


def prepare_events(events: DataFrame) -> DataFrame:
    """``silver.events`` -> the columns features use, ``is_history`` non-null, the UTC day added."""
    return events.select(
        C.EVENT_ID,
        C.USER_ID,
        C.ITEM_ID,
        C.EVENT_TYPE,
        C.EVENT_TS,
        C.REQUEST_ID,
        C.SESSION_ID,
        C.POSITION,
        C.PROPENSITY,
        C.DEVICE,
        C.COUNTRY,
        F.coalesce(F.col(C.IS_HISTORY), F.lit(False)).alias(C.IS_HISTORY),
        F.to_date(C.EVENT_TS).alias(DAY),
    )


def explode_as_of(df: DataFrame, as_of_dates: list[dt.date], horizon_days: int) -> DataFrame:
    """Each row of day ``_day`` -> one row per requested date D with ``_day < D <= _day + horizon``.

    Adds ``as_of_date`` and ``_lag`` (days from ``_day`` to D, 1..horizon).
    """
    dates = F.array(*[F.lit(d) for d in sorted(set(as_of_dates))])
    day = F.col(DAY)
    return df.withColumn(
        C.AS_OF_DATE,
        F.explode(F.filter(dates, lambda d: (d > day) & (d <= F.date_add(day, horizon_days)))),
    ).withColumn("_lag", F.datediff(F.col(C.AS_OF_DATE), day))


def _item_daily(events: DataFrame, half: float) -> DataFrame:
    """Per (item, day): impressions, clicks, the clicks decayed to the day's end, the last event."""
    counted = events.where(~F.col(C.IS_HISTORY) & F.col(C.EVENT_TYPE).isin("impression", "click"))
    is_click = F.col(C.EVENT_TYPE) == "click"
    # Per day: each click decayed to the day's end; per as-of date: each day's sum decayed by the
    # whole days from that end to the cut-off (lag - 1), so a click of age a weighs 2^(-a/half).
    to_day_end = _hours_between(cutoff_ts(F.date_add(F.col(DAY), 1)), F.col(C.EVENT_TS))
    return counted.groupBy(C.ITEM_ID, DAY).agg(
        F.sum((F.col(C.EVENT_TYPE) == "impression").cast("long")).alias("_imps"),
        F.sum(is_click.cast("long")).alias("_clicks"),
        F.sum(F.when(is_click, F.pow(F.lit(0.5), to_day_end / half)).otherwise(0.0)).alias("_trend"),
        F.max(C.EVENT_TS).alias(C.FEATURE_TS),
    )


def _item_window_counts(
    daily: DataFrame, as_of_dates: list[dt.date], wins: list[int], cols: dict[str, list[str]], half: float
) -> DataFrame:
    """Per (item, as-of date): the window counts, the trend and the feature timestamp."""
    lag = F.col("_lag")
    return (
        explode_as_of(daily, as_of_dates, max(wins))
        .groupBy(C.ITEM_ID, C.AS_OF_DATE)
        .agg(
            *[
                F.sum(F.when(lag <= w, F.col("_imps")).otherwise(0)).alias(c)
                for w, c in zip(wins, cols["impressions"])
            ],
            *[
                F.sum(F.when(lag <= w, F.col("_clicks")).otherwise(0)).alias(c)
                for w, c in zip(wins, cols["clicks"])
            ],
            F.sum(F.col("_trend") * F.pow(F.lit(0.5), (lag - 1) * 24.0 / half)).alias(ITEM_TREND),
            F.max(C.FEATURE_TS).alias(C.FEATURE_TS),
        )
    )


def _item_global_rates(agg: DataFrame, wins: list[int], cols: dict[str, list[str]]) -> DataFrame:
    """Per as-of date and window: the global CTR ``_p{w}`` (the prior mean) and clicks ``_c{w}``."""
    return agg.groupBy(C.AS_OF_DATE).agg(
        *[
            F.try_divide(F.sum(c), F.sum(i)).alias(f"_p{w}")
            for w, c, i in zip(wins, cols["clicks"], cols["impressions"])
        ],
        *[F.sum(c).alias(f"_c{w}") for w, c in zip(wins, cols["clicks"])],
    )


def _item_ctr_columns(
    wins: list[int], cols: dict[str, list[str]], prior_strength: float, clicks_only: bool
) -> list[Column]:
    """The ``item_ctr_{w}d`` columns (see :func:`item_features`), over the global rates' columns."""
    m = float(prior_strength)
    return [
        F.coalesce(F.try_divide(F.col(c), F.col(f"_c{w}")), F.lit(0.0)).alias(r)
        if clicks_only
        else ((F.col(c) + m * F.coalesce(F.col(f"_p{w}"), F.lit(0.0))) / (F.col(i) + m)).alias(r)
        if m > 0
        else F.coalesce(F.try_divide(F.col(c), F.col(i)), F.lit(0.0)).alias(r)
        for w, c, i, r in zip(wins, cols["clicks"], cols["impressions"], cols["ctr"])
    ]


def item_features(
    events: DataFrame,
    items: DataFrame,
    as_of_dates: list[dt.date],
    windows: list[int],
    prior_strength: float,
    vectors: DataFrame | None = None,
    clicks_only: bool = False,
    trend_half_life_hours: float = 24.0,
) -> DataFrame:
    """Item features for every date in ``as_of_dates`` (``events`` from :func:`prepare_events`).

    ``item_trend``: the item's clicks before the cut-off, each weighted by
    ``2^(-age_hours / trend_half_life_hours)`` (over the longest window): recency-aware
    popularity, what carries a news log where an article's clicks fade within hours.

    ``item_ctr_{w}d = (clicks + m p) / (impressions + m)``: a Beta(m p, m (1 - p)) prior with
    ``m = prior_strength`` and ``p`` the global CTR of the same window and date. A click-only
    source has no impressions to divide by: there ``item_ctr_{w}d`` is the item's share of all
    clicks of the window and date (in [0, 1], summing to 1 over the items).
    """
    wins = sorted(windows)
    cols = item_window_cols(wins)
    half = float(trend_half_life_hours)
    agg = _item_window_counts(_item_daily(events, half), as_of_dates, wins, cols, half)
    dates = F.array(*[F.lit(d) for d in sorted(set(as_of_dates))])
    catalog = items.select(C.ITEM_ID, CATEGORY, SUBCATEGORY, "published_ts").withColumn(
        C.AS_OF_DATE, F.explode(dates)
    )
    out = catalog.join(agg, [C.ITEM_ID, C.AS_OF_DATE], "full")
    out = out.fillna(0, subset=cols["impressions"] + cols["clicks"]).fillna(0.0, subset=[ITEM_TREND])
    # Global CTR per date and window: the prior mean.
    out = out.join(F.broadcast(_item_global_rates(agg, wins, cols)), C.AS_OF_DATE, "left")
    ctr = _item_ctr_columns(wins, cols, prior_strength, clicks_only)
    select: list[Column | str] = [
        C.ITEM_ID,
        F.coalesce(F.col(CATEGORY), F.lit(UNKNOWN_CATEGORY)).alias(CATEGORY),
        F.coalesce(F.col(SUBCATEGORY), F.lit(UNKNOWN_CATEGORY)).alias(SUBCATEGORY),
        *cols["impressions"],
        *cols["clicks"],
        *[c.cast("double") for c in ctr],
        F.round(ITEM_TREND, 6).alias(ITEM_TREND),
        _hours_between(cutoff_ts(F.col(C.AS_OF_DATE)), F.col("published_ts")).alias(AGE_HOURS),
        C.FEATURE_TS,
        C.AS_OF_DATE,
    ]
    out = out.select(*select)
    if vectors is not None:
        out = out.join(F.broadcast(vectors), C.ITEM_ID, "left")
        cols_order = [c for c in out.columns if c not in (C.FEATURE_TS, C.AS_OF_DATE)]
        out = out.select(*cols_order, C.FEATURE_TS, C.AS_OF_DATE)
    return out


def user_features(
    events: DataFrame,
    items: DataFrame,
    as_of_dates: list[dt.date],
    windows: list[int],
    last_k: int,
) -> DataFrame:
    """User features for every date in ``as_of_dates`` (``events`` from :func:`prepare_events`).

    Activity counts per window (clicks include ``is_history`` clicks; impressions do not), the
    share of each item category among the user's clicks, hours since the last event / click, and
    the last ``last_k`` clicked item ids, most recent first; all over ``max(windows)`` days.
    """
    wins = sorted(windows)
    horizon = max(wins)
    cols = user_window_cols(wins)
    etype = F.col(C.EVENT_TYPE)
    is_click = etype == "click"
    is_imp = (etype == "impression") & ~F.col(C.IS_HISTORY)
    daily = events.groupBy(C.USER_ID, DAY).agg(
        F.sum(is_imp.cast("long")).alias("_imps"),
        F.sum(is_click.cast("long")).alias("_clicks"),
        F.sum((etype == "read").cast("long")).alias("_reads"),
        F.max(C.EVENT_TS).alias("_last_event"),
        F.max(F.when(is_click, F.col(C.EVENT_TS))).alias("_last_click"),
        F.slice(
            F.sort_array(
                F.collect_list(
                    F.when(is_click, F.struct(F.col(C.EVENT_TS).alias("ts"), F.col(C.ITEM_ID).alias("id")))
                ),
                asc=False,
            ),
            1,
            last_k,
        ).alias("_recent"),
    )
    lag = F.col("_lag")
    agg = (
        explode_as_of(daily, as_of_dates, horizon)
        .groupBy(C.USER_ID, C.AS_OF_DATE)
        .agg(
            *[
                F.sum(F.when(lag <= w, F.col("_imps")).otherwise(0)).alias(c)
                for w, c in zip(wins, cols["impressions"])
            ],
            *[
                F.sum(F.when(lag <= w, F.col("_clicks")).otherwise(0)).alias(c)
                for w, c in zip(wins, cols["clicks"])
            ],
            *[
                F.sum(F.when(lag <= w, F.col("_reads")).otherwise(0)).alias(c)
                for w, c in zip(wins, cols["reads"])
            ],
            F.max("_last_event").alias(C.FEATURE_TS),
            F.max("_last_click").alias("_last_click"),
            F.slice(F.sort_array(F.flatten(F.collect_list("_recent")), asc=False), 1, last_k).alias(
                "_recent"
            ),
        )
    )
    cut = cutoff_ts(F.col(C.AS_OF_DATE))
    cat = _user_category_maps(events, items, as_of_dates, horizon, cut)
    out = agg.join(cat, [C.USER_ID, C.AS_OF_DATE], "left")
    return out.select(
        C.USER_ID,
        *cols["impressions"],
        *cols["clicks"],
        *cols["reads"],
        *[F.coalesce(F.col(c), F.create_map().cast(t)).alias(c) for c, t in CATEGORY_MAPS.items()],
        _hours_between(cut, F.col(C.FEATURE_TS)).alias(HOURS_SINCE_LAST_EVENT),
        _hours_between(cut, F.col("_last_click")).alias(HOURS_SINCE_LAST_CLICK),
        F.transform("_recent", lambda x: x["id"]).alias(LAST_ITEMS),
        C.FEATURE_TS,
        C.AS_OF_DATE,
    )


def _user_category_maps(
    events: DataFrame, items: DataFrame, as_of_dates: list[dt.date], horizon: int, cut: Column
) -> DataFrame:
    """(user_id, as_of_date, the :data:`CATEGORY_MAPS`) over ``horizon`` days before each cut-off.

    The click share counts every click (history ones too), over the categories clicked; CTR and
    impressions count non-history impressions and clicks only.
    """
    etype = F.col(C.EVENT_TYPE)
    is_click = etype == "click"
    live = ~F.col(C.IS_HISTORY)
    rows = events.where(is_click | ((etype == "impression") & live)).join(
        F.broadcast(items.select(C.ITEM_ID, CATEGORY)), C.ITEM_ID, "left"
    )
    daily = rows.groupBy(
        C.USER_ID, DAY, F.coalesce(F.col(CATEGORY), F.lit(UNKNOWN_CATEGORY)).alias(CATEGORY)
    ).agg(
        F.sum(is_click.cast("long")).alias("_n"),
        F.sum((is_click & live).cast("long")).alias("_live_clicks"),
        F.sum((~is_click).cast("long")).alias("_imps"),
        F.max(F.when(is_click, F.col(C.EVENT_TS))).alias("_last_click"),
    )
    per_cat = (
        explode_as_of(daily, as_of_dates, horizon)
        .groupBy(C.USER_ID, C.AS_OF_DATE, CATEGORY)
        .agg(
            F.sum("_n").alias("_n"),
            F.sum("_live_clicks").alias("_live_clicks"),
            F.sum("_imps").alias("_imps"),
            F.max("_last_click").alias("_last_click"),
        )
        .withColumn("_hours", _hours_between(cut, F.col("_last_click")))
    )
    grouped = per_cat.groupBy(C.USER_ID, C.AS_OF_DATE).agg(
        F.array_sort(F.collect_list(F.struct(CATEGORY, "_n", "_live_clicks", "_imps", "_hours"))).alias(
            "_cats"
        ),
        F.sum("_n").alias("_total"),
    )

    def entries(keep: Callable[[Column], Column], value: Callable[[Column], Column]) -> Column:
        kept = F.filter("_cats", keep)
        return F.map_from_entries(F.transform(kept, lambda x: F.struct(x[CATEGORY], value(x))))

    return grouped.select(
        C.USER_ID,
        C.AS_OF_DATE,
        entries(lambda x: x["_n"] > 0, lambda x: (x["_n"] / F.col("_total")).cast("double")).alias(
            CATEGORY_CLICK_SHARE
        ),
        entries(lambda x: x["_imps"] > 0, lambda x: x["_imps"]).alias(CATEGORY_IMPRESSIONS),
        entries(
            lambda x: x["_imps"] > 0, lambda x: F.least(x["_live_clicks"] / x["_imps"], F.lit(1.0))
        ).alias(CATEGORY_CTR),
        entries(lambda x: x["_n"] > 0, lambda x: x["_hours"].cast("double")).alias(
            CATEGORY_HOURS_SINCE_CLICK
        ),
    )


# -- quality suites --------------------------------------------------------------------------------
def item_feature_checks(windows: list[int], clicks_only: bool = False) -> list[quality.Check]:
    """Item feature expectations; a click-only source has no impressions (all counts 0) and its
    ``item_ctr`` columns are click shares (in [0, 1])."""
    cols = item_window_cols(sorted(windows))
    checks = [
        quality.Check("ExpectColumnValuesToNotBeNull", {"column": c})
        for c in (C.ITEM_ID, C.AS_OF_DATE, CATEGORY)
    ]
    checks += [
        quality.Check("ExpectCompoundColumnsToBeUnique", {"column_list": [C.ITEM_ID, C.AS_OF_DATE]}),
        quality.Check("ExpectTableRowCountToBeBetween", {"min_value": 1}),
    ]
    checks += [
        quality.Check("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0})
        for c in cols["impressions"] + cols["clicks"] + [ITEM_TREND]
    ]
    checks += [
        quality.Check("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "max_value": 1})
        for c in cols["ctr"]
    ]
    checks.append(quality.Check("ExpectColumnValuesToNotBeNull", {"column": ITEM_TREND}))
    if clicks_only:
        checks += [
            quality.Check("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "max_value": 0})
            for c in cols["impressions"]
        ]
    return checks


def user_feature_checks(windows: list[int], clicks_only: bool = False) -> list[quality.Check]:
    cols = user_window_cols(sorted(windows))
    checks = [
        quality.Check("ExpectColumnValuesToNotBeNull", {"column": c})
        for c in (C.USER_ID, C.AS_OF_DATE, C.FEATURE_TS)
    ]
    checks += [
        quality.Check("ExpectCompoundColumnsToBeUnique", {"column_list": [C.USER_ID, C.AS_OF_DATE]}),
    ]
    checks += [
        quality.Check("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0})
        for c in cols["impressions"] + cols["clicks"] + cols["reads"]
    ]
    checks += [
        quality.Check("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "strict_min": True})
        for c in (HOURS_SINCE_LAST_EVENT, HOURS_SINCE_LAST_CLICK)
    ]
    if clicks_only:
        checks += [
            quality.Check("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "max_value": 0})
            for c in cols["impressions"]
        ]
    return checks


CUTOFF = "_cutoff"


def cutoff_check() -> quality.Check:
    """A feature row's latest contributing event precedes its cutoff (validated with ``_cutoff``)."""
    return quality.Check(
        "ExpectColumnPairValuesAToBeGreaterThanB",
        {
            "column_A": CUTOFF,
            "column_B": C.FEATURE_TS,
            "or_equal": False,
            "ignore_row_if": "either_value_is_missing",
        },
    )


def validation_frame(df: DataFrame) -> DataFrame:
    """The scalar columns of a feature frame plus ``_cutoff`` (what the suites look at)."""
    scalar = [f.name for f in df.schema.fields if f.dataType.typeName() not in ("array", "map")]
    return df.select(*scalar).withColumn(CUTOFF, cutoff_ts(F.col(C.AS_OF_DATE)))


# -- job ---------------------------------------------------------------------------------------------
def inputs_fingerprint(cfg: Config, lake: Lake, *parts: Any) -> str:
    """A short hash of the input table versions and the config sections that shape the output."""
    payload = {
        "events": lake.version(C.SILVER_EVENTS),
        "items": lake.version(C.SILVER_ITEMS),
        "feedback": cfg.data.feedback,
        "features": cfg.features.__dict__,
        "parts": [str(p) for p in parts],
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_feature_inputs(
    lake: Lake, first: dt.date, last: dt.date, horizon_days: int
) -> tuple[DataFrame, DataFrame]:
    """The events that can contribute to features dated ``first..last`` (prepared), and the catalog."""
    lo = first - dt.timedelta(days=horizon_days)
    events = lake.read(C.SILVER_EVENTS).where(
        (F.col(C.EVENT_DATE) >= F.lit(lo - dt.timedelta(days=1)))
        & (F.col(C.EVENT_DATE) <= F.lit(last))
        & (F.col(C.EVENT_TS) >= F.lit(dt.datetime.combine(lo, dt.time())))
        & (F.col(C.EVENT_TS) < F.lit(dt.datetime.combine(last, dt.time())))
    )
    return prepare_events(events), read_items(lake)


def build_feature_frames(
    cfg: Config, events: DataFrame, items: DataFrame, as_of_dates: list[dt.date]
) -> tuple[DataFrame, DataFrame]:
    """Item and user features for ``as_of_dates`` from prepared events and the catalog
    (``cfg.data.feedback`` resolved, :func:`recpipe.events.feedback.with_feedback`)."""
    fc = cfg.features
    vectors = text_vectors(items, fc.text_features, fc.text_tokens)
    item_df = item_features(
        events,
        items,
        as_of_dates,
        fc.windows_days,
        fc.ctr_prior_strength,
        vectors,
        clicks_only=is_clicks_only(cfg),
        trend_half_life_hours=fc.trend_half_life_hours,
    )
    user_df = user_features(events, items, as_of_dates, fc.windows_days, fc.last_k_items)
    return item_df, user_df


def write_features(
    cfg: Config,
    lake: Lake,
    item_df: DataFrame,
    user_df: DataFrame,
    as_of_dates: list[dt.date],
    run_id: str,
    txn: Txn | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Validate, then overwrite the ``as_of_date`` partitions of both feature tables.

    Neither table is written when either result is empty or would shrink a stored partition by
    more than ``lake.max_drop_share`` (unless ``force``): :func:`recpipe.guard.guard_partition_replace`.
    """
    out: dict[str, Any] = {"quality": {}, "commits": {}}
    parts = {C.AS_OF_DATE: sorted(set(as_of_dates))}
    for table, df in ((C.GOLD_ITEM_FEATURES, item_df), (C.GOLD_USER_FEATURES, user_df)):
        guard_partition_replace(
            lake,
            table,
            df,
            C.AS_OF_DATE,
            parts[C.AS_OF_DATE],
            max_drop_share=cfg.lake.max_drop_share,
            setting="lake.max_drop_share",
            force=force,
        )
    wins, clicks_only = cfg.features.windows_days, is_clicks_only(cfg)
    for table, df, checks in (
        (C.GOLD_ITEM_FEATURES, item_df, item_feature_checks(wins, clicks_only)),
        (C.GOLD_USER_FEATURES, user_df, user_feature_checks(wins, clicks_only)),
    ):
        suite = table.split(".")[1]
        report = quality.validate(
            validation_frame(df), suite, checks + [cutoff_check()], table, lake.version(table)
        )
        quality.record(lake, report, run_id=run_id)
        out["quality"][table] = report.summary()
        if cfg.quality.fail_on_critical:
            report.raise_if_failed()
        # add_columns: a lake whose feature tables predate a feature column (item_trend) gets it
        # in the dates rewritten from now on; older dates read it as null (the model input is 0).
        res = lake.overwrite(
            table, df, partition_by=[C.AS_OF_DATE], partitions=parts, txn=txn, add_columns=True
        )
        out["commits"][table] = res.to_dict()
    return out


def run_features(
    cfg: Config,
    spark: SparkSession,
    as_of: dt.date,
    lake: Lake | None = None,
    force: bool = False,
    start: dt.date | None = None,
) -> dict[str, Any]:
    """Write the ``as_of`` partition of ``gold.item_features`` and ``gold.user_features``, and with
    ``start`` every partition ``start..as_of`` (inclusive) in one pass: the dates the training
    examples of a range read (:mod:`recpipe.examples` never writes these tables).

    Idempotent: the commit carries a token of (dates, input table versions, feature config); a
    rerun on unchanged inputs commits nothing and leaves both table versions unchanged.
    ``force`` replaces a partition even when its row count falls beyond ``lake.max_drop_share``.
    """
    t0 = time.perf_counter()
    first = as_of if start is None else start
    if first > as_of:
        raise ValueError(f"features: --start {first} is after the run date {as_of}")
    dates = [first + dt.timedelta(days=i) for i in range((as_of - first).days + 1)]
    lake = lake or open_lake(cfg, spark)
    cfg = with_feedback(cfg, lake)
    span = as_of.isoformat() if first == as_of else f"{first.isoformat()}_{as_of.isoformat()}"
    fp = inputs_fingerprint(cfg, lake, *([as_of] if first == as_of else [first, as_of]))
    txn = Txn(f"recpipe.features/{span}/{fp}", 1)
    summary: dict[str, Any] = {
        "job": "features",
        "as_of_date": as_of.isoformat(),
        "feedback": cfg.data.feedback,
        "fingerprint": fp,
    }
    if first != as_of:
        summary["start"] = first.isoformat()
    done = all(lake.txn_version(t, txn.app_id) for t in (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES))
    if done:
        summary["skipped"] = "already built from these inputs"
    else:
        horizon = max(cfg.features.windows_days)
        events, items = read_feature_inputs(lake, first, as_of, horizon)
        events = events.persist(StorageLevel.MEMORY_AND_DISK)
        item_df, user_df = build_feature_frames(cfg, events, items, dates)
        item_df = item_df.persist(StorageLevel.MEMORY_AND_DISK)
        user_df = user_df.persist(StorageLevel.MEMORY_AND_DISK)
        run_id = f"features/{span}/{uuid.uuid4().hex[:8]}"
        summary.update(write_features(cfg, lake, item_df, user_df, dates, run_id, txn, force=force))
        summary["items"] = item_df.count()
        summary["users"] = user_df.count()
        for df in (events, item_df, user_df):
            df.unpersist()
    summary["table_versions"] = {t: lake.version(t) for t in (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES)}
    summary["duration_s"] = round(time.perf_counter() - t0, 3)
    return summary
