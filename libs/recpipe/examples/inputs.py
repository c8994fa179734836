"""The model's input columns and the point-in-time join, one definition for the training examples
(:mod:`recpipe.examples.build`) and the serving frame (:mod:`recpipe.scoring.rank`): an example at
time t joins the feature rows with ``as_of_date = date(t)``, computed from events strictly before
00:00 UTC of that day, and derives the same inputs serving derives."""

from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.features import build as B

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
ITEM_TEXT_TOKENS = "item_text_tokens"
# Target-aware: cosine of the candidate's text vector and the centroid of the user's recent items'
# (features.text.text_affinity; added to the examples when written, in the scoring kernel at serving).
USER_TEXT_AFFINITY = "user_text_affinity"
CATEGORICAL = [B.CATEGORY, B.SUBCATEGORY, C.DEVICE, C.COUNTRY]

# What each serving input is a function of (serving_side).
_ITEM_SIDE = {
    C.ITEM_ID,
    B.CATEGORY,
    B.SUBCATEGORY,
    B.ITEM_TREND,
    ITEM_AGE_HOURS,
    ITEM_TEXT_VEC,
    ITEM_TEXT_TOKENS,
}
_USER_SIDE = {
    C.USER_ID,
    C.DEVICE,
    C.COUNTRY,
    USER_HOURS_SINCE_LAST_EVENT,
    USER_HOURS_SINCE_LAST_CLICK,
    USER_LAST_ITEMS,
}
_ITEM_WINDOWED = re.compile(r"item_(impressions|clicks|ctr)_[0-9]+d")
_USER_WINDOWED = re.compile(r"user_(impressions|clicks|reads)_[0-9]+d")


def serving_side(column: str) -> str:
    """What a model input of the serving frame is a function of: ``"item"`` (the candidate's
    feature row and catalog entry alone), ``"user"`` (the user's feature row and context alone)
    or ``"row"`` (both: the target-aware inputs; the position). At serving
    (:func:`model_input_columns` with age offset 0, ``scoring.rank.attach_model_features``) an
    item or user input takes one value per item or user of a run, which lets the scorer compute
    the model's side work once per distinct item and user of a batch
    (:mod:`recpipe.model.grouped`); an input not named here counts as ``"row"``."""
    if column in _ITEM_SIDE or _ITEM_WINDOWED.fullmatch(column):
        return "item"
    if column in _USER_SIDE or _USER_WINDOWED.fullmatch(column):
        return "user"
    return "row"


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
        USER_TEXT_AFFINITY,
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


def add_text_vectors(examples: DataFrame, vectors: DataFrame, dim: int, tokens: bool = False) -> DataFrame:
    """Append the item's TF-IDF vector (zeros for items without one) and, with ``tokens``, its
    words (``vectors``' ``text_tokens``; empty for items without them) before ``feature_ts``."""
    zeros = F.array_repeat(F.lit(0.0).cast("float"), dim)
    side = vectors.select(
        C.ITEM_ID,
        F.col(B.TEXT_VEC).alias(ITEM_TEXT_VEC),
        *([F.col(B.TEXT_TOKENS).alias(ITEM_TEXT_TOKENS)] if tokens else []),
    )
    j = examples.join(F.broadcast(side), C.ITEM_ID, "left")
    cols = [c for c in examples.columns if c not in (C.FEATURE_TS, C.AS_OF_DATE, C.SPLIT)]
    text = [F.coalesce(F.col(ITEM_TEXT_VEC), zeros).alias(ITEM_TEXT_VEC)]
    if tokens:
        empty = F.array().cast("array<string>")
        text.append(F.coalesce(F.col(ITEM_TEXT_TOKENS), empty).alias(ITEM_TEXT_TOKENS))
    return j.select(*cols, *text, C.FEATURE_TS, C.AS_OF_DATE, C.SPLIT)


# -- quality ---------------------------------------------------------------------------------------
