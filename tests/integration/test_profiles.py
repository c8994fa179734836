"""gold.user_profiles (recpipe.features.profiles): incremental merges equal the recompute."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe.candidates import sources as S
from recpipe.candidates.run import CandidateParams, build_candidates
from recpipe.features import profiles as P
from recpipe.lake import Txn, open_lake
from tests.conftest import make_config

pytestmark = pytest.mark.integration

UTC = dt.UTC
HALF_LIFE = 24.0
K = 3
ITEM_DDL = "item_id string, category string, subcategory string, tags array<string>"
# Compared within 1e-9 relative (weights) or exactly (everything else but the float32 centroid).
EXACT = [c for c in P.PROFILES_SCHEMA.fieldNames() if c not in (P.TEXT_CENTROID, C.BATCH_ID, P.UPDATED_AT)]


def ts(day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, minute, tzinfo=UTC)


def event(n: int, user: str, item: str, etype: str, t: dt.datetime, batch: str) -> tuple:
    """One SILVER_EVENTS_SCHEMA row."""
    return (
        f"e{n}",
        user,
        item,
        etype,
        t,
        "s1",
        "r1",
        1,
        None,
        "mobile",
        "DE",
        None,
        False,
        batch,
        t,
        t.date(),
    )


def events_of(spark, rows: list[tuple]):
    return spark.createDataFrame([event(n, *r) for n, r in enumerate(rows)], C.SILVER_EVENTS_SCHEMA)


@pytest.fixture
def items(spark):
    return spark.createDataFrame(
        [
            ("a", "tech", "ai", ["ml", "gpu"]),
            ("b", "tech", "phones", ["mobile"]),
            ("c", "sports", "football", []),
            ("d", None, None, None),  # no category: only in interest_weight
        ],
        ITEM_DDL,
    )


@pytest.fixture
def vectors(spark):
    # unit vectors; item c has none
    return spark.createDataFrame(
        [("a", [1.0, 0.0, 0.0]), ("b", [0.6, 0.8, 0.0]), ("d", [0.0, 0.0, 1.0])],
        "item_id string, features array<float>",
    )


# Three micro-batches. u1: a repeated item (a in b1 and b3), a late event in b3 older than the
# stored last_seen, an impression-only batch (b2); u2: first seen in b2; u3: impressions only.
BATCHES = {
    "b1": [
        ("u1", "a", "click", ts(10, 9)),
        ("u1", "c", "impression", ts(10, 9)),
        ("u1", "b", "like", ts(11, 8)),
        ("u3", "a", "impression", ts(11, 1)),
    ],
    "b2": [
        ("u1", "c", "impression", ts(12, 7)),
        ("u2", "c", "share", ts(12, 6)),
        ("u2", "d", "read", ts(12, 7)),
    ],
    "b3": [
        ("u1", "a", "read", ts(13, 5)),
        ("u1", "d", "click", ts(9, 22)),  # late: older than u1's stored last_seen
        ("u1", "c", "click", ts(11, 23)),
        ("u2", "a", "click", ts(12, 6)),
        ("u3", "b", "impression", ts(13, 1)),
    ],
}


def all_rows(batches=BATCHES) -> list[tuple]:
    return [(*r, b) for b, rows in batches.items() for r in rows]


def fold(table, new):
    """What update_profiles stores: the table's other users plus the merged rows of ``new``'s."""
    merged = P.merge_profiles(table, new, HALF_LIFE, K)
    kept = table.join(new.select(C.USER_ID), C.USER_ID, "left_anti")
    return kept.unionByName(merged).localCheckpoint()


def test_batches_merged_one_after_another_equal_the_recompute(spark, items, vectors):
    """Given three batches (a late event, a repeated item, an impression-only batch), when each
    batch's profiles are merged into the stored rows, then the rows equal the profiles computed
    from all the events at once."""
    evs = events_of(spark, all_rows()).cache()
    state = None
    for b in BATCHES:
        new = P.profiles_from_events(evs.where(F.col(C.BATCH_ID) == b), items, vectors, HALF_LIFE, K, b)
        state = new if state is None else fold(state, new)
    want = P.profiles_from_events(evs, items, vectors, HALF_LIFE, K, "all")
    assertDataFrameEqual(state.select(EXACT), want.select(EXACT), rtol=1e-9, atol=0.0)
    assertDataFrameEqual(
        state.select(C.USER_ID, P.TEXT_CENTROID),
        want.select(C.USER_ID, P.TEXT_CENTROID),
        rtol=1e-6,
        atol=1e-7,
    )
    got = {r[C.USER_ID]: r for r in state.collect()}
    assert got["u1"][C.BATCH_ID] == "b3" and got["u3"][C.BATCH_ID] == "b3"
    # the literal values behind the comparison
    u1 = got["u1"]
    assert u1[P.LAST_SEEN] == ts(13, 5).replace(tzinfo=None) and u1[P.FIRST_SEEN] == ts(9, 22).replace(
        tzinfo=None
    )
    assert u1[P.EVENTS_TOTAL] == 7 and u1[P.EVENT_COUNTS] == {
        "click": 3,
        "impression": 2,
        "like": 1,
        "read": 1,
    }
    assert [r[C.ITEM_ID] for r in u1[P.RECENT_ITEMS]] == ["a", "c", "b"]  # a at its latest use, d cut by k=3
    decay = lambda t: 2 ** (-(ts(13, 5) - t).total_seconds() / 3600 / HALF_LIFE)  # noqa: E731
    tech = 1 * decay(ts(10, 9)) + 2 * decay(ts(11, 8)) + 0.5 * decay(ts(13, 5))
    assert u1[P.INTERESTS] == pytest.approx({"tech": tech, "sports": decay(ts(11, 23))}, rel=1e-12)
    assert u1[P.INTEREST_WEIGHT] == pytest.approx(tech + decay(ts(11, 23)) + decay(ts(9, 22)), rel=1e-12)
    assert u1[P.TAG_INTERESTS]["mobile"] == pytest.approx(2 * decay(ts(11, 8)), rel=1e-12)
    u3 = got["u3"]  # impressions only
    assert u3[P.INTEREST_WEIGHT] == 0.0 and u3[P.INTERESTS] == {} and u3[P.RECENT_ITEMS] == []
    assert u3[P.TEXT_CENTROID] is None and u3[P.TEXT_WEIGHT] == 0.0
    assert u3[P.EVENT_COUNTS] == {"impression": 2}


def test_merge_is_commutative_and_associative(spark, items):
    evs = events_of(spark, all_rows()).cache()
    parts = [
        P.profiles_from_events(evs.where(F.col(C.BATCH_ID) == b), items, None, HALF_LIFE, K, "x")
        for b in BATCHES
    ]
    a, b, c = parts
    left = fold(fold(a, b), c)
    right = fold(a, fold(c, b))
    other = fold(fold(c, a), b)
    assert left.count() == 3
    assertDataFrameEqual(left.select(EXACT), right.select(EXACT), rtol=1e-9, atol=0.0)
    assertDataFrameEqual(left.select(EXACT), other.select(EXACT), rtol=1e-9, atol=0.0)


def test_click_only_log_without_categories_or_text(spark):
    """Given clicks and no catalog, text or categories, then maps are empty, the centroid is
    null and the counts and weights are right."""
    evs = events_of(
        spark,
        [
            ("u1", "x", "click", ts(10), "b1"),
            ("u1", "y", "click", ts(11), "b1"),
            ("u1", "x", "click", ts(12), "b1"),
            ("u2", "y", "click", ts(12), "b1"),
        ],
    )
    got = {r[C.USER_ID]: r for r in P.profiles_from_events(evs, None, None, HALF_LIFE, K, "b1").collect()}
    u1 = got["u1"]
    assert u1[P.INTERESTS] == u1[P.SUBCATEGORY_INTERESTS] == u1[P.TAG_INTERESTS] == {}
    assert u1[P.TEXT_CENTROID] is None and u1[P.TEXT_WEIGHT] == 0.0
    assert u1[P.EVENTS_TOTAL] == 3 and u1[P.EVENT_COUNTS] == {"click": 3}
    assert u1[P.INTEREST_WEIGHT] == pytest.approx(1 + 0.5 + 0.25, rel=1e-12)  # 24 h half-life
    assert [(r[C.ITEM_ID], r[C.EVENT_TS]) for r in u1[P.RECENT_ITEMS]] == [
        ("x", ts(12).replace(tzinfo=None)),
        ("y", ts(11).replace(tzinfo=None)),
    ]
    assert got["u2"][P.EVENTS_TOTAL] == 1 and got["u2"][P.INTEREST_WEIGHT] == 1.0


def test_centroid_is_the_decayed_weighted_mean_of_the_item_vectors(spark, items, vectors):
    evs = events_of(
        spark,
        [
            ("u1", "a", "click", ts(10), "b1"),
            ("u1", "b", "share", ts(11), "b1"),
            ("u1", "c", "click", ts(11), "b1"),
        ],
    )
    row = P.profiles_from_events(evs, items, vectors, HALF_LIFE, K, "b1").first()
    wa, wb = 1.0 * 0.5, 3.0  # a is 24 h (one half-life) older than last_seen; c has no vector
    want = [(wa * 1.0 + wb * 0.6) / (wa + wb), (wb * 0.8) / (wa + wb), 0.0]
    assert row[P.TEXT_CENTROID] == pytest.approx(want, abs=1e-6)
    assert row[P.TEXT_WEIGHT] == pytest.approx(wa + wb, rel=1e-12)


@pytest.fixture
def tiny_lake(spark, tmp_path, items):
    cfg = make_config(
        tmp_path / "lake", tmp_path / "raw", profiles={"half_life_hours": HALF_LIFE, "recent_items": K}
    )
    lake = open_lake(cfg, spark)
    lake.append(C.SILVER_EVENTS, events_of(spark, all_rows()), partition_by=[C.EVENT_DATE])
    full = items.select(
        *[
            (F.col(f.name) if f.name in items.columns else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in C.SILVER_ITEMS_SCHEMA.fields
        ]
    )
    lake.append(C.SILVER_ITEMS, full)
    return cfg, lake


def test_update_profiles_folds_batches_into_the_table_once(spark, tiny_lake, items):
    """Given a lake with three ingested batches, when update_profiles runs per batch (the first
    twice with the same token), then the rerun commits nothing and the table equals the
    profiles of all events; profiles_as_of recomputes a point in time."""
    cfg, lake = tiny_lake
    first = P.update_profiles(cfg, spark, lake, "b1", Txn("profiles-b1"))
    assert first["users_updated"] == 2 and first["events"] == 4 and "skipped_reason" not in first
    version = lake.version(C.GOLD_USER_PROFILES)
    again = P.update_profiles(cfg, spark, lake, "b1", Txn("profiles-b1"))
    assert again["users_updated"] == 0 and "already committed" in again["skipped_reason"]
    assert lake.version(C.GOLD_USER_PROFILES) == version == again["table_version"]
    for b in ("b2", "b3"):
        res = P.update_profiles(cfg, spark, lake, b, Txn(f"profiles-{b}"))
        assert res["table_version"] == lake.version(C.GOLD_USER_PROFILES)
    stored = lake.read(C.GOLD_USER_PROFILES)
    assert stored.schema.fieldNames() == P.PROFILES_SCHEMA.fieldNames()
    want = P.profiles_from_events(lake.read(C.SILVER_EVENTS), items, None, HALF_LIFE, K, "all")
    assertDataFrameEqual(stored.select(EXACT), want.select(EXACT), rtol=1e-9, atol=0.0)
    # point in time: only events before 2026-10-12 00:00
    as_of = dt.datetime(2026, 10, 12, tzinfo=UTC)
    pit = P.profiles_as_of(cfg, spark, lake, as_of)
    early = lake.read(C.SILVER_EVENTS).where(F.col(C.EVENT_TS) < F.lit(as_of).cast("timestamp"))
    assertDataFrameEqual(
        pit.select(EXACT),
        P.profiles_from_events(early, items, None, HALF_LIFE, K, "x").select(EXACT),
        rtol=1e-9,
    )
    shares = {(r[C.USER_ID], r["category"]): r for r in P.interest_shares(pit, as_of).collect()}
    u1 = pit.where(F.col(C.USER_ID) == "u1").first()
    assert set(shares) == {("u1", "tech"), ("u1", "sports")}  # u3 (impressions only): no rows
    assert shares[("u1", "tech")]["share"] == pytest.approx(
        u1[P.INTERESTS]["tech"] / u1[P.INTEREST_WEIGHT], rel=1e-12
    )
    assert shares[("u1", "tech")]["days_since_last_seen"] == pytest.approx(1 / 24, rel=1e-9)  # 11th 23:00


def test_update_profiles_without_a_catalog_or_a_batch(spark, tmp_path):
    cfg = make_config(tmp_path / "lake", tmp_path / "raw")
    lake = open_lake(cfg, spark)
    lake.append(
        C.SILVER_EVENTS,
        events_of(spark, [("u1", "x", "click", ts(10), "b1"), ("u1", "y", "impression", ts(10), "b1")]),
        partition_by=[C.EVENT_DATE],
    )
    none = P.update_profiles(cfg, spark, lake, "other", Txn("profiles-other"))
    assert (
        none["users_updated"] == 0 and none["table_version"] is None and "no events" in none["skipped_reason"]
    )
    res = P.update_profiles(cfg, spark, lake, "b1", Txn("profiles-b1"))
    assert res == {"users_updated": 1, "events": 2, "table_version": 0}
    row = lake.read(C.GOLD_USER_PROFILES).first()
    assert (
        row[P.INTERESTS] == {}
        and row[P.TEXT_CENTROID] is None
        and row[P.EVENT_COUNTS] == {"click": 1, "impression": 1}
    )


# -- recommend reads the freshest profile (issue #16 item 5) -------------------------------------
RUN_DATE = dt.date(2026, 10, 15)
TARGET = "p_target"


def world_event(n: int, user: str, item: str, t: dt.datetime, batch: str, country: str | None) -> tuple:
    day = t.date().isoformat()
    return (
        f"w{n}", user, item, "click", t, f"{user}-{day}", f"{user}-{day}", 1, None, "mobile", country,
        None, False, batch, t, t.date(),
    )  # fmt: skip


@pytest.fixture
def fresh_world(spark, tmp_path):
    """A lake for run date D = 2026-10-15: sports items are popular, tech items rare; the target
    user (no country) clicked only sports before D, then three tech items at D 10:00 (streamed
    as batch "stream-1")."""
    cfg = make_config(tmp_path / "lake", tmp_path / "raw", recommend={"top_n": 5})
    lake = open_lake(cfg, spark)
    sports, tech = [f"s{i}" for i in range(10)], [f"t{i}" for i in range(10)]
    published = dt.datetime(2026, 10, 9, tzinfo=UTC)
    items = spark.createDataFrame(
        [(i, "sports" if i in sports else "tech", published, "active") for i in sports + tech],
        "item_id string, category string, published_ts timestamp, status string",
    )
    lake.append(
        C.SILVER_ITEMS,
        items.select(
            *[
                (F.col(f.name) if f.name in items.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                for f in C.SILVER_ITEMS_SCHEMA.fields
            ]
        ),
    )
    rows = []
    for u in range(8):  # others: six sports clicks each, one tech click each on D-1
        for j in range(6):
            rows.append((f"u{u}", sports[(u + j) % 10], ts(14, 8 + j), "history", "DE"))
        rows.append((f"u{u}", tech[3 + u % 7], ts(14, 15), "history", "DE"))
    rows += [(TARGET, s, ts(13, 12), "history", None) for s in sports[:5]]
    stream = [(TARGET, t, ts(15, 10), "stream-1", None) for t in tech[:3]]
    events = spark.createDataFrame(
        [world_event(n, *r) for n, r in enumerate(rows + stream)], C.SILVER_EVENTS_SCHEMA
    )
    lake.append(C.SILVER_EVENTS, events, partition_by=[C.EVENT_DATE])
    return cfg, lake, tech


def test_recommend_uses_the_fresh_profile_of_a_user_active_today(spark, fresh_world):
    """Given a user whose history is all sports before D and who clicked three tech items at
    D 10:00, when candidates for D are built without and then with gold.user_profiles, then only
    with it does the user get tech candidates whose detail names the profile, and every other
    user's candidates are unchanged."""
    cfg, lake, tech = fresh_world
    params = CandidateParams(als_rank=4, als_max_iter=3)

    def candidates():
        cs = build_candidates(cfg, lake, RUN_DATE, params=params)
        cands = cs.candidates.localCheckpoint()
        aff = cs.affinity.where(F.col(C.USER_ID) == TARGET).localCheckpoint()
        cs.unpersist()
        return cands, aff

    before, aff_before = candidates()
    mine = before.where(F.col(C.USER_ID) == TARGET)
    assert {r["category"] for r in aff_before.collect()} == {"sports"}
    assert mine.where(F.col(C.DETAIL).contains("tech") | F.col(C.DETAIL).contains("profile")).count() == 0

    # the stream's history batch and today's micro-batch folded into the profiles
    for batch in ("history", "stream-1"):
        assert P.update_profiles(cfg, spark, lake, batch, Txn(f"profiles-{batch}"))["users_updated"] > 0
    after, aff_after = candidates()
    shares = {r["category"]: (r["affinity"], r[S.AFFINITY_BASIS]) for r in aff_after.collect()}
    decay = 2 ** (-(46 / 168))  # the sports clicks are 46 h older than the last tech click
    assert shares["tech"] == (pytest.approx(3 / (3 + 5 * decay), abs=1e-6), "profile")
    assert shares["sports"][1] == "profile"
    mine = after.where(F.col(C.USER_ID) == TARGET)
    from_profile = mine.where(F.col(C.DETAIL) == "category:tech (profile)").select(C.ITEM_ID, C.SOURCE)
    got = {r[C.ITEM_ID] for r in from_profile.collect()}
    assert got and got <= set(tech[3:]), got  # tech items, not the three just clicked
    assert {r[C.SOURCE] for r in from_profile.collect()} == {C.REASON_TRENDING}
    assert mine.where(F.col(C.ITEM_ID).isin(tech[:3])).count() == 0
    others = [C.USER_ID, C.ITEM_ID, C.SOURCE, C.SOURCE_SCORE, C.DETAIL]
    assertDataFrameEqual(
        after.where(F.col(C.USER_ID) != TARGET).select(others),
        before.where(F.col(C.USER_ID) != TARGET).select(others),
    )


def test_the_budget_kernel_names_the_affinity_basis_as_the_spark_sources_do(spark):
    """Trending and fresh candidates applied in the budget kernel give the rows of the Spark
    reference sources when some users' affinities come from a profile."""
    as_of = dt.datetime(2026, 10, 15, tzinfo=UTC)
    allowed = spark.createDataFrame(
        [(f"i{j}", ["sports", "tech"][j % 2], ts(14, j), None, "active") for j in range(12)],
        "item_id string, category string, published_ts timestamp, expires_ts timestamp, status string",
    )
    inter = spark.createDataFrame(
        [(f"u{u}", f"i{(u + j) % 12}", ts(14, 20), "DE", 1.0) for u in range(6) for j in range(3)],
        "user_id string, item_id string, event_ts timestamp, country string, weight double",
    ).join(allowed.select(C.ITEM_ID, "category"), C.ITEM_ID)
    users = spark.createDataFrame([(f"u{u}", None) for u in range(6)], "user_id string, country string")
    affinity = spark.createDataFrame(
        [
            (f"u{u}", c, a, "profile" if u < 3 else None)
            for u in range(6)
            for c, a in (("sports", 0.7), ("tech", 0.3))
        ],
        f"user_id string, category string, affinity double, {S.AFFINITY_BASIS} string",
    )
    g, c, cat = (S.trending(inter, as_of, 24.0, 4, by=by) for by in (None, [C.COUNTRY], ["category"]))
    none = spark.createDataFrame([], "user_id string, item_id string")
    want = S.apply_budget(
        S.trending_candidates(users, g, c, cat, affinity).unionByName(
            S.fresh_candidates(allowed, users, affinity, as_of, 48, 4)
        ),
        budget=50,
    )
    lists = S.collect_item_lists(g, c, cat, allowed, as_of, 48, 4)
    empty = want.limit(0)
    got = S.filter_and_budget(empty, allowed, none, 50, users=users, affinity=affinity, lists=lists)
    assertDataFrameEqual(got, want)
    details = {r[C.DETAIL] for r in got.where(F.col(C.USER_ID) == "u0").collect()}
    assert {"category:tech (profile)", "new in sports (profile)"} <= details
    others = {r[C.DETAIL] for r in got.where(F.col(C.USER_ID) == "u5").collect()}
    assert "category:tech" in others and not any("profile" in d for d in others)
