"""Candidate sources and filters on tiny literal frames."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe.candidates import sources as S

pytestmark = pytest.mark.unit

UTC = dt.UTC
AS_OF = dt.datetime(2026, 10, 15, tzinfo=UTC)
EV_DDL = (
    "user_id string, item_id string, event_type string, event_ts timestamp, event_date date, "
    "session_id string, country string, device string"
)
ITEM_DDL = (
    "item_id string, title string, text string, category string, published_ts timestamp, "
    "expires_ts timestamp, status string"
)


def ts(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, tzinfo=UTC)


def ev(user, item, etype, t, session="s1", country="US"):
    return (user, item, etype, t, t.date(), session, country, "mobile")


@pytest.fixture
def items(spark):
    rows = [
        ("a", "football match goal", "team coach league", "sports", ts(13), None, "active"),
        ("b", "football goal striker", "team league season", "sports", ts(14), None, "active"),
        ("c", "market stocks bank", "rates inflation", "finance", ts(14), None, "active"),
        ("blocked", "x", "y", "sports", ts(14), None, "blocked"),
        ("expired", "x", "y", "sports", ts(10), ts(14), "active"),
        ("old", "x", "y", "sports", ts(1) - dt.timedelta(days=10), None, "active"),
        ("future", "x", "y", "sports", ts(16), None, "active"),
        ("new", "football league match goal", "coach team", "sports", ts(14, 20), None, "active"),
    ]
    return spark.createDataFrame(rows, ITEM_DDL)


def test_history_keeps_only_events_strictly_before_the_run_date(spark):
    given = spark.createDataFrame(
        [ev("u", "a", "click", ts(14, 23)), ev("u", "b", "click", AS_OF), ev("u", "c", "click", ts(15, 1))],
        EV_DDL,
    )
    assert [r.item_id for r in S.history(given, AS_OF).collect()] == ["a"]


def test_allowed_items_drop_blocked_expired_old_and_unpublished(items):
    got = {r.item_id for r in S.allowed_items(items, AS_OF, max_age_days=14).collect()}
    assert got == {"a", "b", "c", "new"}


def test_filter_candidates_drops_consumed_and_disallowed(spark, items):
    cands = spark.createDataFrame(
        [
            ("u", "a", "als", 1.0, "x"),
            ("u", "b", "als", 0.9, "x"),
            ("u", "blocked", "als", 0.8, "x"),
            ("v", "a", "als", 0.7, "x"),
        ],
        "user_id string, item_id string, source string, source_score double, detail string",
    )
    consumed = S.consumed(spark.createDataFrame([ev("u", "a", "click", ts(14))], EV_DDL))
    got = S.filter_candidates(cands, S.allowed_items(items, AS_OF, 14), consumed)
    expected = spark.createDataFrame(
        [("u", "b", "als", 0.9, "x"), ("v", "a", "als", 0.7, "x")],
        "user_id string, item_id string, source string, source_score double, detail string",
    )
    assertDataFrameEqual(got.select(*expected.columns), expected)


def test_trending_decays_with_time_and_ranks_per_country(spark):
    events = spark.createDataFrame(
        [
            ev("u1", "a", "click", ts(14, 20)),
            ev("u2", "a", "click", ts(14, 21), country="DE"),
            ev("u3", "b", "click", ts(10)),
            ev("u4", "b", "click", ts(10)),
            ev("u5", "b", "click", ts(10), country="DE"),
        ],
        EV_DDL,
    )
    inter = S.interactions(events)
    glob = S.trending(inter, AS_OF, half_life_hours=24.0, k=5).orderBy(F.desc("score")).collect()
    # 2 recent clicks beat 3 clicks four days ago; the best item has score 1.
    assert [r.item_id for r in glob] == ["a", "b"] and glob[0].score == 1.0
    de = S.trending(inter, AS_OF, 24.0, 5, by=[C.COUNTRY]).where("country = 'DE'").orderBy(F.desc("score"))
    assert [r.item_id for r in de.collect()] == ["a", "b"]


def test_covisit_neighbours_applied_to_recent_items(spark):
    events = spark.createDataFrame(
        [
            ev("u1", "a", "click", ts(14), "s1"),
            ev("u1", "b", "click", ts(14), "s1"),
            ev("u2", "a", "click", ts(14), "s2"),
            ev("u2", "b", "click", ts(14), "s2"),
            ev("u2", "c", "click", ts(14), "s2"),
            ev("u3", "a", "click", ts(14, 13), "s3"),
        ],
        EV_DDL,
    )
    inter = S.interactions(events)
    nb = S.covisit_neighbours(inter, k=5)
    a_nb = {r.neighbour_id: r.sim for r in nb.where("item_id = 'a'").collect()}
    assert set(a_nb) == {"b", "c"} and a_nb["b"] > a_nb["c"]
    recent = S.recent_items(inter.where("user_id = 'u3'"), AS_OF, last_k=5)
    got = S.neighbour_candidates(recent, nb, C.REASON_CO_VISIT, k=5).collect()
    assert {(r.item_id, r.source, r.detail) for r in got} == {("b", "co_visit", "a"), ("c", "co_visit", "a")}


def test_content_similarity_surfaces_items_nobody_clicked(spark, items):
    allowed = S.allowed_items(items, AS_OF, 14)
    vectors = S.tfidf_vectors(items, num_features=64)
    nb = S.content_neighbours(vectors, allowed.where("item_id = 'a'").select(C.ITEM_ID), allowed, k=2)
    got = [r.neighbour_id for r in nb.orderBy(F.desc("sim")).collect()]
    assert got[0] in {"new", "b"} and "new" in got  # sports items, "new" has no events at all


def _cosine_reference(vecs: dict, triggers: list, targets: list, k: int, min_cosine: float) -> dict:
    """Plain-Python exact top-k cosine (float64), ties by neighbour id: the reference."""
    unit = {}
    for i, v in vecs.items():
        n = math.sqrt(sum(x * x for x in v))
        if n > 0:
            unit[i] = [x / n for x in v]
    out = {}
    for q in triggers:
        if q not in unit:
            continue
        scored = [
            (round(sum(a * b for a, b in zip(unit[q], unit[t])), 6), t)
            for t in targets
            if t in unit and t != q
        ]
        scored = sorted((s for s in scored if s[0] >= min_cosine), key=lambda st: (-st[0], st[1]))
        if scored:
            out[q] = scored[:k]
    return out


@pytest.mark.parametrize("block_cells", [1 << 24, 7])
def test_content_neighbours_are_the_exact_top_k_cosine(spark, block_cells):
    rng = random.Random(5)
    vecs = {f"i{j:03d}": [rng.gauss(0, 1) for _ in range(6)] for j in range(40)}
    vecs["i900"] = list(vecs["i007"])  # exact twins: a tie, broken by id
    vecs["i901"] = [2 * x for x in vecs["i007"]]  # same direction, longer
    vecs["zero"] = [0.0] * 6  # no text: never a neighbour, never a trigger result
    frame = spark.createDataFrame([(i, Vectors.dense(v)) for i, v in vecs.items()], ["item_id", "features"])
    triggers = ["i007", "i003", "i011", "zero", "missing"]
    targets = [i for i in vecs if i not in ("i011", "i020")]  # i011 triggers but is no target
    ids = lambda xs: spark.createDataFrame([(x,) for x in xs], "item_id string")  # noqa: E731
    got = S.content_neighbours(
        frame, ids(triggers), ids(targets), k=4, min_cosine=0.1, block_cells=block_cells
    )
    by_trigger: dict = {}
    for r in got.collect():
        by_trigger.setdefault(r.item_id, []).append((round(r.sim, 6), r.neighbour_id))
    want = _cosine_reference(vecs, triggers, targets, k=4, min_cosine=0.1)
    assert set(by_trigger) == set(want) == {"i007", "i003", "i011"}
    for q, rows in want.items():
        mine = sorted(by_trigger[q], key=lambda st: (-st[0], st[1]))
        assert [t for _, t in mine] == [t for _, t in rows], q
        assert [s for s, _ in mine] == pytest.approx([s for s, _ in rows], abs=2e-6), q
    assert [t for _, t in sorted(by_trigger["i007"], key=lambda st: (-st[0], st[1]))][:2] == ["i900", "i901"]


def test_fresh_candidates_cover_users_without_history(spark, items):
    allowed = S.allowed_items(items, AS_OF, 14)
    users = spark.createDataFrame([("nobody", "US")], "user_id string, country string")
    affinity = spark.createDataFrame([], "user_id string, category string, affinity double")
    got = S.fresh_candidates(allowed, users, affinity, AS_OF, window_hours=48, k=2).collect()
    # newest first, ties by item id; "new" was published 4 hours after "b" and "c"
    assert [r.item_id for r in sorted(got, key=lambda r: (-r.source_score, r.item_id))] == ["new", "b"]
    assert all(r.source == "fresh" for r in got)


def test_budget_keeps_best_of_each_source_in_proportion(spark):
    rows = [("u", f"x{i}", "als", 1.0 - i / 100, "d") for i in range(10)]
    rows += [("u", f"y{i}", "trending", 1.0 - i / 100, "d") for i in range(10)]
    rows += [("u", "x0", "trending", 0.5, "d")]  # an item from two sources counts once
    cands = spark.createDataFrame(
        rows, "user_id string, item_id string, source string, source_score double, detail string"
    )
    kept = S.apply_budget(cands, budget=6, shares={"als": 0.5, "trending": 0.5})
    items = {r.item_id for r in kept.collect()}
    assert items == {"x0", "x1", "x2", "y0", "y1", "y2"}
    assert kept.where("item_id = 'x0'").count() == 2


def test_filter_and_budget_kernel_equals_the_join_and_window_reference(spark, items):
    """Given 30 users' candidates from overlapping sources (tied scores, items that are not
    allowed, items the user consumed), the one-shuffle kernel keeps exactly the rows the
    reference (filter_candidates, then apply_budget) keeps."""
    rng = random.Random(2)
    pool = ["a", "b", "c", "new", "blocked", "expired", "old", "future"] + [f"z{i}" for i in range(30)]
    extra = spark.createDataFrame(
        [(f"z{i}", "t", "x", "sports", ts(14), None, "active") for i in range(30)], ITEM_DDL
    )
    allowed = S.allowed_items(items.unionByName(extra), AS_OF, 14)
    srcs = ["als", "co_visit", "trending", "fresh", "other"]
    rows = {
        (f"user:{u}", rng.choice(pool), rng.choice(srcs)): (round(rng.random(), 1), f"d{u}")
        for u in range(30)
        for _ in range(rng.randint(1, 40))
    }
    cands = spark.createDataFrame(
        [(u, i, s, sc, d) for (u, i, s), (sc, d) in rows.items()],
        "user_id string, item_id string, source string, source_score double, detail string",
    )
    consumed = spark.createDataFrame(
        [(f"user:{u}", rng.choice(pool)) for u in range(30) for _ in range(5)] + [("nobody", "a")],
        "user_id string, item_id string",
    ).distinct()
    shares = {"als": 0.4, "co_visit": 0.3, "trending": 0.2, "fresh": 0.1}
    want = S.apply_budget(S.filter_candidates(cands, allowed, consumed), budget=7, shares=shares)
    got = S.filter_and_budget(cands, allowed, consumed, budget=7, shares=shares)
    assert want.count() > 100
    assertDataFrameEqual(got, want)


def test_als_id_map_is_dense_ascending_and_stable_across_partitions(spark):
    """Given 600 ids (mixed formats, repeats, non-ASCII) spread over several partitions, the
    ALS id map numbers the distinct ids 0..n-1 in ascending (StringIndexer alphabetAsc) order,
    and joining it twice gives the same numbers."""
    rng = random.Random(3)
    ids = [f"u{rng.randrange(10**6)}" for _ in range(400)] + [str(uuid) for uuid in range(150)]
    ids += ["Zoë", "zoe", "Émile", "", "a b"] * 3 + ids[:50]
    df = spark.createDataFrame([(i,) for i in ids], "user_id string").repartition(7)
    got = S._index(df, C.USER_ID, "u")
    rows = sorted((r.u, r.user_id) for r in got.collect())
    want = sorted(set(ids))
    assert [u for u, _ in rows] == list(range(len(want)))
    assert [i for _, i in rows] == want
    again = df.join(got, C.USER_ID).groupBy(C.USER_ID).agg(F.min("u").alias("a"), F.max("u").alias("b"))
    assert again.where("a != b").count() == 0 and again.count() == len(want)
    assert S._index(df.limit(0), C.USER_ID, "u").count() == 0


def test_als_candidates_are_spark_als_top_k_over_allowed_items_only(spark):
    """Given clicks of 40 users on 25 items, the ALS source returns, per user, the top items by
    Spark ML's own factors (``recommendForUserSubset`` over every item, the reference) among
    the allowed items only, with the same scores."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS

    rng = random.Random(4)
    events = spark.createDataFrame(
        [
            ev(f"u{u:02d}", f"it{rng.randrange(25):02d}", "click", ts(14, rng.randrange(24)))
            for u in range(40)
            for _ in range(6)
        ],
        EV_DDL,
    )
    inter = S.interactions(events)
    allowed = spark.createDataFrame([(f"it{i:02d}",) for i in range(0, 25, 2)], "item_id string")
    users = spark.createDataFrame(
        [(f"u{u:02d}",) for u in range(0, 40, 3)] + [("stranger",)], "user_id string"
    )
    got = S.score_als(S.fit_als(inter, S.AlsParams(rank=4, max_iter=5)), users, k=4, allowed=allowed)

    conf = inter.groupBy(C.USER_ID, C.ITEM_ID).agg(F.sum("weight").cast("float").alias("conf"))
    um = StringIndexer(inputCol=C.USER_ID, outputCol="u", stringOrderType="alphabetAsc").fit(conf)
    im = StringIndexer(inputCol=C.ITEM_ID, outputCol="i", stringOrderType="alphabetAsc").fit(conf)
    train = im.transform(um.transform(conf)).select(F.col("u").cast("int"), F.col("i").cast("int"), "conf")
    als = ALS(userCol="u", itemCol="i", ratingCol="conf", implicitPrefs=True, rank=4, maxIter=5)
    model = als.setRegParam(0.05).setAlpha(10.0).setSeed(11).setNonnegative(False).fit(train)
    recs = model.recommendForUserSubset(train.select("u").distinct(), 25).collect()
    ok = {r.item_id for r in allowed.collect()}
    want = {}
    for r in recs:
        user = um.labelsArray[0][r.u]
        if user in {f"u{u:02d}" for u in range(0, 40, 3)}:
            ranked = sorted(
                ((round(x.rating, 6), im.labelsArray[0][x.i]) for x in r.recommendations),
                key=lambda si: (-si[0], si[1]),
            )
            want[user] = [(i, s) for s, i in ranked if i in ok][:4]
    mine: dict = {}
    for r in got.orderBy(C.USER_ID, F.desc(C.SOURCE_SCORE), C.ITEM_ID).collect():
        mine.setdefault(r.user_id, []).append((r.item_id, r.source_score))
        assert r.source == C.REASON_ALS
    assert set(mine) == set(want) and len(want) == 14  # the stranger has no factors
    for user, rows in want.items():
        assert [i for i, _ in mine[user]] == [i for i, _ in rows], user
        assert [s for _, s in mine[user]] == pytest.approx([s for _, s in rows], abs=1e-4), user


def test_trending_and_fresh_applied_in_the_kernel_equal_the_spark_sources(spark, items):
    """Given users with and without country and category affinity, trending and fresh lists
    applied per user batch inside the budget kernel give the rows of the Spark sources
    (trending_candidates, fresh_candidates), filtered and budgeted the same way."""
    rng = random.Random(8)
    extra = spark.createDataFrame(
        [
            (f"z{i}", "t", "x", rng.choice(["sports", "finance", None]), ts(14, i % 24), None, "active")
            for i in range(30)
        ],
        ITEM_DDL,
    )
    allowed = S.allowed_items(items.unionByName(extra), AS_OF, 14).cache()
    ids = [r.item_id for r in allowed.collect()]
    events = spark.createDataFrame(
        [
            ev(
                f"u{u}",
                rng.choice(ids),
                "click",
                ts(14, rng.randrange(24)),
                f"s{u}",
                rng.choice(["US", "DE", None]),
            )
            for u in range(12)
            for _ in range(rng.randint(1, 8))
        ],
        EV_DDL,
    )
    inter = S.interactions(events).join(allowed.select(C.ITEM_ID, "category"), C.ITEM_ID)
    users = spark.createDataFrame(
        [(f"u{u}", rng.choice(["US", "DE", None])) for u in range(14)], "user_id string, country string"
    )
    affinity = S.category_affinity(inter.drop("category"), items.unionByName(extra), AS_OF).cache()
    g, c, cat = (
        S.trending(inter, AS_OF, 24.0, 6),
        S.trending(inter, AS_OF, 24.0, 6, by=[C.COUNTRY]),
        S.trending(inter, AS_OF, 24.0, 6, by=["category"]),
    )
    others = spark.createDataFrame(
        [(f"u{u}", rng.choice(ids), "als", round(rng.random(), 2), "x") for u in range(14) for _ in range(5)],
        "user_id string, item_id string, source string, source_score double, detail string",
    ).dropDuplicates([C.USER_ID, C.ITEM_ID])
    consumed = S.consumed(events)
    spark_sources = others.unionByName(S.trending_candidates(users, g, c, cat, affinity)).unionByName(
        S.fresh_candidates(allowed, users, affinity, AS_OF, 48, 5)
    )
    want = S.apply_budget(S.filter_candidates(spark_sources, allowed, consumed), budget=12)
    lists = S.collect_item_lists(g, c, cat, allowed, AS_OF, 48, 5)
    got = S.filter_and_budget(
        others, allowed, consumed, budget=12, users=users, affinity=affinity, lists=lists
    )
    assert want.where("source = 'trending'").count() > 20 and want.where("source = 'fresh'").count() > 20
    assertDataFrameEqual(got, want)
