"""Offline top-N metrics on hand-checked lists."""

from __future__ import annotations

import math

import pytest

from recpipe.evaluation import offline as O

pytestmark = pytest.mark.unit


def test_accuracy_metrics_match_hand_computed_values(spark):
    # given: user a clicked the 2nd item of its list; user b clicked nothing recommended
    lists = spark.createDataFrame(
        [("a", ["x", "y", "z"]), ("b", ["x", "y"]), ("c", ["x"])], "user_id string, items array<string>"
    )
    truth = spark.createDataFrame([("a", ["y"]), ("b", ["q"])], "user_id string, relevant array<string>")
    # when
    m = O.accuracy_metrics(lists, truth, k=2)
    # then: only users with clicks count (c has none)
    assert m["users_evaluated"] == 2
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)
    assert m["hit_rate@2"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(0.25)
    assert m["precision@2"] == pytest.approx(0.25)


def test_beyond_accuracy_coverage_diversity_novelty(spark):
    lists = spark.createDataFrame(
        [("a", ["x", "y"]), ("b", ["x", "z"])], "user_id string, items array<string>"
    )
    items = spark.createDataFrame(
        [
            ("x", "news", "active"),
            ("y", "news", "active"),
            ("z", "sports", "active"),
            ("w", "food", "active"),
        ],
        "item_id string, category string, status string",
    )
    pop = spark.createDataFrame([("x", 6), ("y", 2)], "item_id string, clicks long")
    m = O.beyond_accuracy(lists, items, pop, k=2)
    assert m["catalog_coverage"] == pytest.approx(3 / 4)
    # list a: both news -> 0 different pairs; list b: news+sports -> 1
    assert m["intra_list_diversity"] == pytest.approx(0.5)
    total = 8 + 4
    expected = [-math.log2(7 / total), -math.log2(3 / total), -math.log2(7 / total), -math.log2(1 / total)]
    assert m["novelty_bits"] == pytest.approx(sum(expected) / 4)


def test_popularity_lists_skip_what_the_user_clicked(spark):

    ev = spark.createDataFrame(
        [
            ("u1", "a", "click", False),
            ("u2", "a", "click", False),
            ("u2", "b", "click", False),
            ("u3", "c", "click", True),
        ],
        "user_id string, item_id string, event_type string, is_history boolean",
    )
    users = spark.createDataFrame([("u1",), ("u9",)], "user_id string")
    got = {r.user_id: r["items"] for r in O.popularity_lists(ev, users, k=2).collect()}
    assert got == {"u1": ["b"], "u9": ["a", "b"]}
