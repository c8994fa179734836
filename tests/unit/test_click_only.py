"""Click-only sources and bare catalogs: features, negatives, derived items, artifact paths."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe import quality
from recpipe.config import config_from_dict
from recpipe.events.feedback import CLICKS_ONLY, IMPRESSIONS, detect_feedback
from recpipe.events.items import derive_items, has_text
from recpipe.examples import labels as E
from recpipe.features import build as B
from tests.unit.test_features import D, ev, events_df, items_df, ts

pytestmark = pytest.mark.unit


def clicks(n_a: int, n_b: int, day: int = 9) -> list[tuple]:
    rows = [ev(i, f"u{i}", "A", "click", ts(day, 10, i % 60, i // 60)) for i in range(n_a)]
    rows += [ev(1000 + i, f"v{i}", "B", "click", ts(day, 11, i % 60, i // 60)) for i in range(n_b)]
    return rows


def test_click_only_ctr_is_the_click_share_never_above_one(spark):
    # given: a click-only log, A clicked 30 times and B 10 times the day before D (no impressions)
    events = events_df(spark, clicks(30, 10))
    # when: the features are built as for a click-only source, and as before (CTR with a prior)
    share = B.item_features(events, items_df(spark), [D], [1, 28], 20.0, clicks_only=True)
    prior = B.item_features(events, items_df(spark), [D], [1, 28], 20.0)
    # then: item_ctr is each item's share of the window's clicks
    expected = spark.createDataFrame(
        [("A", 0.75, 0.75), ("B", 0.25, 0.25), ("N", 0.0, 0.0)],
        "item_id string, item_ctr_1d double, item_ctr_28d double",
    )
    assertDataFrameEqual(share.select(C.ITEM_ID, "item_ctr_1d", "item_ctr_28d"), expected)
    # whereas clicks over the prior's pseudo count alone went above 1 (the 3.4)
    assert prior.where(F.col("item_ctr_1d") > 1).count() == 1


def test_click_only_suites_pass_on_click_only_features_and_catch_impressions(spark):
    events = events_df(spark, clicks(30, 10))
    items = B.item_features(events, items_df(spark), [D], [1, 28], 20.0, clicks_only=True)
    checks = B.item_feature_checks([1, 28], clicks_only=True)
    # the click-only suite passes on click-only features
    assert quality.validate(B.validation_frame(items), "t", checks, "t", None).success
    # and fails when a click-only source suddenly carries impressions
    bad = items.withColumn("item_impressions_1d", F.lit(3).cast("long"))
    report = quality.validate(B.validation_frame(bad), "t", checks, "t", None)
    assert not report.success
    # the impressions suite fails on the old CTR (clicks over the prior) of the same data
    old = B.item_features(events, items_df(spark), [D], [1, 28], 20.0)
    old_report = quality.validate(B.validation_frame(old), "t", B.item_feature_checks([1, 28]), "t", None)
    assert not old_report.success


def test_negatives_popularity_or_uniform_among_the_days_clicked_items(spark):
    # given: on day 9, A clicked 90 times and B 10 times (different users); on day 8 only N
    rows = clicks(90, 10) + [ev(900 + i, f"w{i}", "N", "click", ts(8, 9, i)) for i in range(5)]
    events = events_df(spark, rows)
    day9 = F.col(B.DAY) == dt.date(2026, 10, 9)
    # when: the draw tables are built with each weighting
    for weighting, expected in (("popularity", {"A": 90, "B": 10}), ("uniform", {"A": 1, "B": 1})):
        table = E.negative_table(events, weighting).where(day9)
        # then: day 9's slots name day 9's items, as many per item as the weighting says
        got = {r[C.ITEM_ID]: r["count"] for r in table.groupBy(C.ITEM_ID).count().collect()}
        assert got == expected
        assert sorted(r["_slot"] for r in table.collect()) == list(range(sum(expected.values())))
        # and the drawn negatives of day 9 are day 9's items, never the user's own click
        neg = E.sample_negatives(events, 1, seed=3, weighting=weighting).where(F.col(C.SAMPLED) & day9)
        pairs = {(r[C.USER_ID], r[C.ITEM_ID]) for r in neg.collect()}
        assert pairs and {i for _, i in pairs} <= {"A", "B"}
        assert all((u.startswith("u") and i == "B") or (u.startswith("v") and i == "A") for u, i in pairs)


def test_items_derived_from_events_first_seen_unknown_category(spark):
    rows = [
        ev(1, "u", "A", "click", ts(5, 9)),
        ev(2, "u", "A", "click", ts(3, 9)),
        ev(3, "u", "B", "click", ts(4, 7)),
        ev(4, "u", "A", "click", ts(1, 9), hist=True),  # pre-log history: not "first seen"
        ev(5, "u", "H", "click", ts(1, 9), hist=True),  # only in the history: not in the catalog
    ]
    from tests.unit.test_features import EVENTS_SCHEMA

    events = spark.createDataFrame(rows, EVENTS_SCHEMA).withColumn(C.INGESTED_AT, F.lit(ts(6)))
    items = derive_items(events)
    assert [(f.name, f.dataType) for f in items.schema] == [
        (f.name, f.dataType) for f in C.SILVER_ITEMS_SCHEMA
    ]
    got = items.select(C.ITEM_ID, "published_ts", "category", "status", "title")
    expected = spark.createDataFrame(
        [("A", ts(3, 9), "unknown", "active", None), ("B", ts(4, 7), "unknown", "active", None)],
        "item_id string, published_ts timestamp, category string, status string, title string",
    )
    assertDataFrameEqual(got, expected)
    assert not has_text(items)
    assert has_text(items_df(spark))


def test_feedback_detected_from_non_history_impressions(spark):
    assert detect_feedback(events_df(spark, clicks(2, 2))) == CLICKS_ONLY
    history_imp = [ev(9, "u", "A", "impression", ts(8), hist=True)]
    assert detect_feedback(events_df(spark, clicks(2, 2) + history_imp)) == CLICKS_ONLY
    imp = [ev(9, "u", "A", "impression", ts(8))]
    assert detect_feedback(events_df(spark, clicks(2, 2) + imp)) == IMPRESSIONS


def test_artifacts_default_inside_the_lake_root_and_follow_the_configured_root():
    base = {"mode": "local", "lake": {"root": "/data/lake"}}
    cfg = config_from_dict(base)
    assert cfg.artifacts_dir("models") == "/data/lake/_artifacts/models"
    assert cfg.artifacts_dir("reports") == "/data/lake/_artifacts/reports"
    cfg = config_from_dict({**base, "paths": {"artifacts": "s3://bucket/art/"}})
    assert cfg.artifacts_dir("models") == "s3://bucket/art/models"
    # an explicit train.model_dir / evaluate.report_dir still wins (backward compatible)
    cfg = config_from_dict({**base, "train": {"model_dir": "/m"}, "evaluate": {"report_dir": "/r"}})
    assert (cfg.artifacts_dir("models"), cfg.artifacts_dir("reports")) == ("/m", "/r")


def test_feedback_kind_is_a_checked_config_key():
    from recpipe.config import ConfigError

    base = {"mode": "local", "lake": {"root": "/l"}}
    assert config_from_dict(base).data.feedback == "auto"
    assert config_from_dict({**base, "data": {"feedback": "clicks_only"}}).data.feedback == CLICKS_ONLY
    with pytest.raises(ConfigError, match="data.feedback"):
        config_from_dict({**base, "data": {"feedback": "views"}})
