"""Feature and example transforms on tiny literal DataFrames (given / when / then)."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe.examples import inputs as E
from recpipe.examples import labels as L
from recpipe.features import build as B
from recpipe.features.leakage import LeakageError, check_leakage

pytestmark = pytest.mark.unit

EVENTS_SCHEMA = StructType(
    [
        StructField(C.EVENT_ID, StringType()),
        StructField(C.USER_ID, StringType()),
        StructField(C.ITEM_ID, StringType()),
        StructField(C.EVENT_TYPE, StringType()),
        StructField(C.EVENT_TS, TimestampType()),
        StructField(C.REQUEST_ID, StringType()),
        StructField(C.SESSION_ID, StringType()),
        StructField(C.POSITION, IntegerType()),
        StructField(C.PROPENSITY, DoubleType()),
        StructField(C.DEVICE, StringType()),
        StructField(C.COUNTRY, StringType()),
        StructField(C.IS_HISTORY, BooleanType()),
    ]
)
ITEMS_SCHEMA = StructType(
    [
        StructField(C.ITEM_ID, StringType()),
        StructField("title", StringType()),
        StructField("text", StringType()),
        StructField("category", StringType()),
        StructField("subcategory", StringType()),
        StructField("published_ts", TimestampType()),
    ]
)
D = dt.date(2026, 10, 10)


def ts(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, minute, second)


def ev(i, user, item, etype, when, req=None, pos=None, hist=None):
    return (f"e{i}", user, item, etype, when, req, None, pos, None, "mobile", "DE", hist)


def events_df(spark, rows):
    return B.prepare_events(spark.createDataFrame(rows, EVENTS_SCHEMA))


def items_df(spark):
    return spark.createDataFrame(
        [
            ("A", "Match final goal", "The team won the cup final", "sports", "football", ts(9, 0)),
            ("B", "Election vote", "The minister lost the vote", "news", "politics", ts(1, 0)),
            ("N", "Brand new", "Nobody saw it yet", "news", "world", ts(9, 12)),
        ],
        ITEMS_SCHEMA,
    )


def test_item_windows_cutoff_and_new_items(spark):
    # given: impressions/clicks of A on days 9, 4 and 1 before D, one at D 00:00 exactly (excluded),
    # a history click (not counted for items), and item N without events
    rows = [
        ev(1, "u1", "A", "impression", ts(9, 23)),
        ev(2, "u1", "A", "click", ts(9, 23, 1)),
        ev(3, "u2", "A", "impression", ts(6)),
        ev(4, "u2", "A", "impression", ts(1)),
        ev(5, "u3", "A", "impression", dt.datetime(2026, 10, 10, 0, 0, 0)),
        ev(6, "u3", "A", "click", ts(8), hist=True),
        ev(7, "u3", "B", "impression", ts(9)),
    ]
    # when
    out = B.item_features(events_df(spark, rows), items_df(spark), [D], [1, 7, 28], prior_strength=0.0)
    # then
    got = out.select(
        C.ITEM_ID,
        "item_impressions_1d",
        "item_impressions_7d",
        "item_impressions_28d",
        "item_clicks_28d",
        "item_ctr_28d",
        C.FEATURE_TS,
    )
    schema = "item_id string, item_impressions_1d long, item_impressions_7d long, item_impressions_28d long, item_clicks_28d long, item_ctr_28d double, feature_ts timestamp"
    expected = spark.createDataFrame(
        [
            ("A", 1, 2, 3, 1, 1 / 3, ts(9, 23, 1)),
            ("B", 1, 1, 1, 0, 0.0, ts(9)),
            ("N", 0, 0, 0, 0, 0.0, None),
        ],
        schema,
    )
    assertDataFrameEqual(got, expected)


def test_ctr_prior_math(spark):
    # given: global 28d CTR = 2 clicks / 10 impressions = 0.2; A has 1/2, B has 1/8; prior strength 5
    rows = [ev(i, "u", "A", "impression", ts(5)) for i in range(2)]
    rows += [ev(10 + i, "u", "B", "impression", ts(5)) for i in range(8)]
    rows += [ev(20, "u", "A", "click", ts(5, 13)), ev(21, "u", "B", "click", ts(5, 13))]
    # when
    out = B.item_features(events_df(spark, rows), items_df(spark), [D], [28], prior_strength=5.0)
    # then: (c + m p) / (n + m)
    got = out.select(C.ITEM_ID, "item_ctr_28d")
    expected = spark.createDataFrame(
        [("A", (1 + 1.0) / (2 + 5)), ("B", (1 + 1.0) / (8 + 5)), ("N", 1.0 / 5)],
        "item_id string, item_ctr_28d double",
    )
    assertDataFrameEqual(got, expected)


def test_item_trend_is_clicks_decayed_by_their_age(spark):
    # given: A clicked 1 h, 3 h and 50 h before D's cut-off (D 00:00), plus an impression, a
    # history click and a click at the cut-off itself (none of those counted); B never clicked
    cut = dt.datetime(2026, 10, 10)
    rows = [
        ev(1, "u1", "A", "click", cut - dt.timedelta(hours=1)),
        ev(2, "u2", "A", "click", cut - dt.timedelta(hours=3)),
        ev(3, "u3", "A", "click", cut - dt.timedelta(hours=50)),
        ev(4, "u3", "A", "impression", cut - dt.timedelta(hours=2)),
        ev(5, "u4", "A", "click", cut - dt.timedelta(hours=2), hist=True),
        ev(6, "u5", "A", "click", cut),
        ev(7, "u3", "B", "impression", cut - dt.timedelta(hours=1)),
    ]
    # when: a 2-hour half-life
    out = B.item_features(
        events_df(spark, rows), items_df(spark), [D], [1, 7], 0.0, trend_half_life_hours=2.0
    )
    # then: each click weighs 2^(-age / 2 h)
    got = {r[C.ITEM_ID]: r[B.ITEM_TREND] for r in out.select(C.ITEM_ID, B.ITEM_TREND).collect()}
    assert got["A"] == pytest.approx(0.5**0.5 + 0.5**1.5 + 0.5**25, abs=1e-6)
    assert got["B"] == 0.0 and got["N"] == 0.0


def test_item_age_and_text_vector(spark):
    out = B.item_features(
        events_df(spark, [ev(1, "u", "A", "impression", ts(5))]),
        items_df(spark),
        [D],
        [28],
        prior_strength=1.0,
        vectors=B.text_vectors(items_df(spark), 32),
    )
    rows = {r[C.ITEM_ID]: r for r in out.collect()}
    assert rows["A"][B.AGE_HOURS] == pytest.approx(24.0)
    assert rows["N"][B.AGE_HOURS] == pytest.approx(12.0)
    assert len(rows["A"][B.TEXT_VEC]) == 32 and sum(rows["A"][B.TEXT_VEC]) > 0


def test_text_tokens_are_the_first_distinct_words_title_first(spark):
    # given: items with title and text, one whose words repeat, one without any text
    items = items_df(spark).unionByName(
        spark.createDataFrame([("E", None, None, "news", "world", ts(9, 0))], ITEMS_SCHEMA)
    )
    # when: the text inputs with at most 5 and at most 32 words
    five = {r[C.ITEM_ID]: r for r in B.text_vectors(items, 16, max_tokens=5).collect()}
    many = {r[C.ITEM_ID]: r[B.TEXT_TOKENS] for r in B.text_vectors(items, 16, max_tokens=32).collect()}
    # then: lower-cased words, stop words out, title first, each word once, cut at max_tokens
    assert five["A"][B.TEXT_TOKENS] == ["match", "final", "goal", "team", "won"]
    assert many["A"] == ["match", "final", "goal", "team", "won", "cup"]
    assert many["B"] == ["election", "vote", "minister", "lost"]
    assert many["E"] == [] and len(five["E"][B.TEXT_VEC]) == 16
    # and without max_tokens no token column
    assert B.text_vectors(items, 16).columns == [C.ITEM_ID, B.TEXT_VEC]


def test_user_features_last_k_order_recency_and_shares(spark):
    # given: u1 clicks A (history), B, A, B over days 2..9, one read, a click after the cutoff
    rows = [
        ev(1, "u1", "A", "click", ts(2), hist=True),
        ev(2, "u1", "B", "click", ts(5)),
        ev(3, "u1", "A", "click", ts(8)),
        ev(4, "u1", "B", "click", ts(9, 20)),
        ev(5, "u1", "B", "read", ts(9, 21)),
        ev(6, "u1", "A", "impression", ts(9, 22)),
        ev(7, "u1", "A", "click", dt.datetime(2026, 10, 10, 0, 0, 1)),
    ]
    # when
    out = B.user_features(events_df(spark, rows), items_df(spark), [D], [1, 7, 28], last_k=3)
    # then
    got = out.select(
        C.USER_ID,
        "user_impressions_28d",
        "user_clicks_1d",
        "user_clicks_7d",
        "user_clicks_28d",
        "user_reads_1d",
        B.HOURS_SINCE_LAST_EVENT,
        B.HOURS_SINCE_LAST_CLICK,
        B.LAST_ITEMS,
        F.col(B.CATEGORY_CLICK_SHARE)["news"].alias("news"),
    )
    expected = spark.createDataFrame(
        [("u1", 1, 1, 3, 4, 1, 2.0, 4.0, ["B", "A", "B"], 0.5)],
        StructType(
            [
                StructField(C.USER_ID, StringType()),
                StructField("user_impressions_28d", LongType()),
                StructField("user_clicks_1d", LongType()),
                StructField("user_clicks_7d", LongType()),
                StructField("user_clicks_28d", LongType()),
                StructField("user_reads_1d", LongType()),
                StructField(B.HOURS_SINCE_LAST_EVENT, DoubleType()),
                StructField(B.HOURS_SINCE_LAST_CLICK, DoubleType()),
                StructField(B.LAST_ITEMS, ArrayType(StringType())),
                StructField("news", DoubleType()),
            ]
        ),
    )
    assertDataFrameEqual(got, expected)


def test_target_aware_category_maps_and_their_model_inputs(spark):
    # given: u1 clicked A (sports) in history and live, saw B (news) 3 times and clicked it once;
    # a click after the cut-off must not count
    rows = [
        ev(1, "u1", "A", "click", ts(2), hist=True),
        ev(2, "u1", "B", "impression", ts(5)),
        ev(3, "u1", "B", "impression", ts(8, 11)),
        ev(4, "u1", "B", "impression", ts(8, 11, 30)),
        ev(5, "u1", "B", "click", ts(8, 12)),
        ev(6, "u1", "A", "impression", ts(9, 19)),
        ev(7, "u1", "A", "click", ts(9, 20)),
        ev(8, "u1", "B", "click", dt.datetime(2026, 10, 10, 0, 0, 1)),
    ]
    events = events_df(spark, rows)
    users = B.user_features(events, items_df(spark), [D], [1, 28], last_k=3)
    # when: the maps as of D
    row = users.collect()[0]
    # then: the share counts every click; impressions and CTR the live ones; hours back to the last click
    assert row[B.CATEGORY_CLICK_SHARE] == pytest.approx({"sports": 2 / 3, "news": 1 / 3})
    assert row[B.CATEGORY_IMPRESSIONS] == {"news": 3, "sports": 1}
    assert row[B.CATEGORY_CTR] == pytest.approx({"news": 1 / 3, "sports": 1.0})
    assert row[B.CATEGORY_HOURS_SINCE_CLICK] == pytest.approx({"sports": 4.0, "news": 36.0})
    # when: examples on day 10 for a news item, a sports item, and a user without features
    items = B.item_features(events, items_df(spark), [D], [1, 28], 0.0)
    base = L.label_impressions(
        events_df(
            spark,
            [
                ev(10, "u1", "N", "impression", ts(10, 8)),
                ev(11, "u1", "A", "impression", ts(10, 8)),
                ev(12, "u2", "A", "impression", ts(10, 8)),
            ],
        ),
        30,
    )
    out = E.join_point_in_time(base, items, users, [1, 28])
    got = {
        r[C.EXAMPLE_ID]: (r[1], r[2], r[3], r[4])
        for r in out.select(
            C.EXAMPLE_ID,
            E.USER_CATEGORY_SHARE,
            E.USER_CATEGORY_IMPRESSIONS,
            E.USER_CATEGORY_CTR,
            E.USER_HOURS_SINCE_CATEGORY_CLICK,
        ).collect()
    }
    # then: the candidate's category is looked up; no history -> 0 and the recency cap (28 x 24 h)
    assert got["e10"] == pytest.approx((1 / 3, 3, 1 / 3, 36.0))
    assert got["e11"] == pytest.approx((2 / 3, 1, 1.0, 4.0))
    assert got["e12"] == pytest.approx((0.0, 0, 0.0, 672.0))
    assert check_leakage(out)["leaking_examples"] == 0


def test_multiple_dates_in_one_pass(spark):
    # given: one impression on day 9; when: features as of 9 and 10; then: only 10 sees it
    rows = [ev(1, "u1", "A", "impression", ts(9))]
    out = B.user_features(events_df(spark, rows), items_df(spark), [dt.date(2026, 10, 9), D], [1], last_k=2)
    got = out.select(C.USER_ID, C.AS_OF_DATE, "user_impressions_1d")
    expected = spark.createDataFrame(
        [("u1", D, 1)], "user_id string, as_of_date date, user_impressions_1d long"
    )
    assertDataFrameEqual(got, expected)


def test_label_attribution_window_and_request(spark):
    # given: impressions 1..4; clicks: within 30 min same request, after 31 min, other request, before
    rows = [
        ev(1, "u1", "A", "impression", ts(9, 10), req="r1"),
        ev(2, "u1", "A", "click", ts(9, 10, 20), req="r1"),
        ev(3, "u2", "A", "impression", ts(9, 10), req="r2"),
        ev(4, "u2", "A", "click", ts(9, 10, 31), req="r2"),
        ev(5, "u3", "A", "impression", ts(9, 10), req="r3"),
        ev(6, "u3", "A", "click", ts(9, 10, 5), req="r9"),
        ev(7, "u4", "A", "impression", ts(9, 10), req=None),
        ev(8, "u4", "A", "click", ts(9, 10, 1), req=None),
        ev(9, "u5", "A", "click", ts(9, 9, 59)),
        ev(10, "u5", "A", "impression", ts(9, 10)),
    ]
    # when
    out = L.label_impressions(events_df(spark, rows), window_minutes=30)
    # then
    expected = spark.createDataFrame(
        [("e1", 1), ("e3", 0), ("e5", 0), ("e7", 1), ("e10", 0)], "event_id string, label int"
    )
    assertDataFrameEqual(out.select(C.EVENT_ID, C.LABEL), expected)


def test_split_assignment(spark):
    df = spark.createDataFrame(
        [(ts(10, 23, 59, 59),), (ts(11, 0),), (ts(12, 23),), (ts(13, 0),)], "event_ts timestamp"
    )
    out = df.select(
        C.EVENT_TS,
        L.assign_split(F.col(C.EVENT_TS), dt.date(2026, 10, 11), dt.date(2026, 10, 13)).alias("split"),
    )
    expected = spark.createDataFrame(
        [
            (ts(10, 23, 59, 59), "train"),
            (ts(11, 0), "validation"),
            (ts(12, 23), "validation"),
            (ts(13, 0), "test"),
        ],
        "event_ts timestamp, split string",
    )
    assertDataFrameEqual(out, expected)


def test_point_in_time_join_uses_the_example_day(spark):
    # given: features as of day 9 and day 10 for item A and user u1; an example on day 10 at 08:00
    events = events_df(
        spark, [ev(1, "u1", "A", "impression", ts(8)), ev(2, "u1", "A", "impression", ts(9, 20))]
    )
    dates = [dt.date(2026, 10, 9), D]
    items = B.item_features(events, items_df(spark), dates, [1, 28], 0.0)
    users = B.user_features(events, items_df(spark), dates, [1, 28], 3)
    base = L.label_impressions(events_df(spark, [ev(3, "u1", "A", "impression", ts(10, 8))]), 30)
    # when
    out = E.join_point_in_time(base, items, users, [1, 28])
    # then: the day-10 row (sees both impressions, the later one at 9 20:00), never the future
    got = out.select(
        C.EXAMPLE_ID,
        C.AS_OF_DATE,
        "item_impressions_28d",
        "user_impressions_1d",
        C.FEATURE_TS,
        E.ITEM_AGE_HOURS,
    )
    expected = spark.createDataFrame(
        [("e3", D, 2, 1, ts(9, 20), 32.0)],
        "example_id string, as_of_date date, item_impressions_28d long, user_impressions_1d long, feature_ts timestamp, item_age_hours double",
    )
    assertDataFrameEqual(got, expected)
    assert check_leakage(out)["leaking_examples"] == 0


def test_leakage_check_names_count_and_row(spark):
    df = spark.createDataFrame(
        [
            ("x1", "u", "A", ts(10, 8), ts(10, 9), D),
            ("x2", "u", "B", ts(10, 8), ts(9, 9), D),
            ("x3", "u", "B", ts(10, 8), ts(10, 8), D),
        ],
        "example_id string, user_id string, item_id string, event_ts timestamp, feature_ts timestamp, as_of_date date",
    )
    with pytest.raises(LeakageError, match=r"2 training examples .*'example_id': 'x1'"):
        check_leakage(df)


def test_sampled_negatives_exclude_positives(spark):
    # given: click-only log: u1 clicked A, u2 clicked B (x3); when: 2 negatives per positive
    rows = [
        ev(1, "u1", "A", "click", ts(9)),
        *[ev(10 + i, "u2", "B", "click", ts(9, 13 + i)) for i in range(3)],
    ]
    rows += [ev(20, "u3", "N", "click", ts(9))]
    out = L.sample_negatives(events_df(spark, rows), per_positive=2, seed=1)
    pos = out.where(~F.col(C.SAMPLED))
    neg = out.where(F.col(C.SAMPLED))
    # then: positives kept with label 1, negatives labelled 0, never one of the user's clicked items
    assert pos.where(F.col(C.LABEL) == 1).count() == 5
    assert neg.where(F.col(C.LABEL) != 0).count() == 0
    assert neg.count() > 0
    clicked = {(r[C.USER_ID], r[C.ITEM_ID]) for r in pos.collect()}
    assert all((r[C.USER_ID], r[C.ITEM_ID]) not in clicked for r in neg.collect())
    assert neg.groupBy(C.USER_ID, C.EVENT_TS).count().where("count > 2").count() == 0


def test_text_affinity_is_the_cosine_to_the_centroid_of_the_recent_items():
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from recpipe.features.text import text_affinity, unit_rows

    # given: unit vectors of A (1,0), B (0,1), C (3,3); D has no vector
    index = pd.Index(["A", "B", "C"])
    unit = unit_rows(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]))
    history = pa.array(
        [["A", "B"], ["A", "B"], ["A", "B"], [], None, ["D"], ["A", "D"]], pa.list_(pa.string())
    )
    items = pa.array(["C", "A", "D", "C", "C", "C", "C"])
    groups = np.array([0, 0, 0, 1, 2, 3, 4])  # the first three rows: one user, one history
    # when
    got = text_affinity(history, items, groups, index, unit)
    # then: the centroid of A and B points at C (cosine 1) and at A (cosine 1/sqrt 2); no vector
    # for the candidate, no history, or only unknown history items give 0; unknown ones are skipped
    assert got.tolist() == pytest.approx([1.0, 0.707107, 0.0, 0.0, 0.0, 0.0, 0.707107])
    # and without any vectors every row is 0
    assert text_affinity(history, items, groups, pd.Index([]), None).tolist() == [0.0] * 7
