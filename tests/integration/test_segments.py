"""gold.user_segments from hand-made gold.user_profiles rows: rules, KMeans clusters, the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe.cli import main
from recpipe.features.profiles import PROFILES_SCHEMA as PROFILE_SCHEMA
from recpipe.features.segments import MEMBER_SCHEMA, build_segments
from recpipe.guard import DestructiveWriteError
from recpipe.lake import open_lake
from tests.conftest import make_config

pytestmark = pytest.mark.integration

AS_OF = dt.datetime(2026, 10, 20, tzinfo=dt.UTC)


def profile(user, days_ago, interests=None, events=None, weight=None, subcats=None, tags=None):
    """A profile row last seen ``days_ago`` days before AS_OF; weight defaults to the interests' sum."""
    interests = interests or {}
    events = events or {"click": 1}
    last_seen = AS_OF - dt.timedelta(days=days_ago)  # aware: the same instant whatever the local zone
    weight = float(sum(interests.values())) if weight is None else weight
    return (
        user,
        last_seen,
        last_seen - dt.timedelta(days=30),
        sum(events.values()),
        events,
        weight,
        interests,
        subcats or {},
        tags or {},
        None,
        0.0,
        [],
        "b1",
        last_seen,
    )


def setup(spark, tmp_path, rows, **segments):
    cfg = make_config(tmp_path / "lake", tmp_path / "raw", segments={"clusters": 0, **segments})
    lake = open_lake(cfg, spark)
    if rows is not None:
        lake.overwrite(C.GOLD_USER_PROFILES, spark.createDataFrame(rows, PROFILE_SCHEMA))
    return cfg, lake


def memberships(lake, kind=None):
    df = lake.read(C.GOLD_USER_SEGMENTS)
    if kind:
        df = df.where(F.col("kind") == kind)
    return df.select(*MEMBER_SCHEMA.fieldNames())


RULES = {
    "sports_fans": "interest.sports >= 0.3",
    "dormant": "days_since_last_seen > 14",
    "heavy_clickers": "events_total >= 50 and events.click >= 10",
    "foodies": 'interest."food & drink" >= 0.5',
    "cup_watchers": "tag.worldcup > 0.1",
    "indie": "subcategory.indie >= 0.5",
    "faded": "interest_weight < 1",
}

RULE_PROFILES = [
    # sports share 0.5; dormant (15 days); decayed weight 4 * 2^(-15*24/168) = 0.91 < 1
    profile("u1", 15, {"sports": 2.0, "news": 2.0}, tags={"worldcup": 1.0}),
    # sports share 0.25 (not a fan); heavy clicker; active
    profile("u2", 1, {"sports": 1.0, "news": 3.0}, events={"click": 40, "impression": 60}),
    # 50 events but only 5 clicks; food & drink 0.6; tag share 0.05
    profile(
        "u3", 2, {"food & drink": 3.0, "news": 2.0}, events={"click": 5, "read": 45}, tags={"worldcup": 0.25}
    ),
    # exactly 14 days: not dormant (> 14); indie 0.5 of weight; weight 2 decays to 0.5 (faded)
    profile("u4", 14, {"music": 2.0}, subcats={"indie": 1.0}),
    # no interests at all (a click-only user): every share is 0, weight 0 (faded)
    profile("u5", 0.5, {}, weight=0.0),
]


def test_rules_select_exactly_the_matching_users(spark, tmp_path):
    cfg, lake = setup(spark, tmp_path, RULE_PROFILES, rules=RULES)
    # when the segments are built as of AS_OF
    out = build_segments(cfg, spark, lake, as_of=AS_OF)
    # then each rule holds exactly its users
    expected = [
        ("u1", "sports_fans"),
        ("u1", "dormant"),
        ("u1", "cup_watchers"),
        ("u1", "faded"),
        ("u2", "heavy_clickers"),
        ("u3", "foodies"),
        ("u4", "indie"),
        ("u4", "faded"),
        ("u5", "faded"),
    ]
    assertDataFrameEqual(
        memberships(lake),
        spark.createDataFrame([(u, s, "rule", RULES[s]) for u, s in expected], MEMBER_SCHEMA),
    )
    stored = lake.read(C.GOLD_USER_SEGMENTS)
    as_of_us = (AS_OF - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    assert stored.select(F.unix_micros("as_of"), "run_id").distinct().collect() == [(as_of_us, out["run_id"])]
    assert out["job"] == "segments" and out["as_of"] == AS_OF.isoformat() and out["users"] == 5
    sizes = {name: s["users"] for name, s in out["segments"].items()}
    assert sizes == {
        "sports_fans": 1,
        "dormant": 1,
        "heavy_clickers": 1,
        "foodies": 1,
        "cup_watchers": 1,
        "indie": 1,
        "faded": 3,
    }
    assert out["segments"]["foodies"] == {"kind": "rule", "label": RULES["foodies"], "users": 1}
    assert out["clusters_skipped"] is None and out["table_version"] == lake.version(C.GOLD_USER_SEGMENTS)


def test_days_since_last_seen_is_measured_at_as_of(spark, tmp_path):
    rows = [profile("a", 0), profile("b", 5), profile("c", 20.5)]
    cfg, lake = setup(spark, tmp_path, rows, rules={"dormant": "days_since_last_seen > 14"})
    # by default as_of is the latest last_seen (user a's)
    out = build_segments(cfg, spark, lake)
    assert out["as_of"] == AS_OF.isoformat()
    assert [r.user_id for r in memberships(lake).collect()] == ["c"]
    # ten days later b is dormant too; fractional days count (c: 20.5 + 10)
    build_segments(cfg, spark, lake, as_of=AS_OF + dt.timedelta(days=10))
    assert sorted(r.user_id for r in memberships(lake).collect()) == ["b", "c"]
    cfg2, lake2 = setup(spark, tmp_path / "2", rows, rules={"d": "days_since_last_seen >= 20.5"})
    build_segments(cfg2, spark, lake2, as_of=AS_OF)
    assert [r.user_id for r in memberships(lake2).collect()] == ["c"]


def _group(prefix, n, shares):
    return [
        profile(f"{prefix}{i}", 1, {c: s * (1 + 0.02 * i) for c, s in shares.items()}, weight=1.0 + 0.02 * i)
        for i in range(n)
    ]


def test_kmeans_puts_each_obvious_group_in_its_own_labelled_cluster(spark, tmp_path):
    rows = (
        _group("s", 12, {"sports": 0.7, "tech": 0.25, "news": 0.05})
        + _group("m", 10, {"music": 0.95, "news": 0.05})
        + _group("f", 8, {"food & drink": 0.5, "travel": 0.45, "news": 0.05})
        + [profile("z", 1, {}, weight=2.0), profile("y", 1, {}, weight=0.0)]  # no interests: no cluster
    )
    cfg, lake = setup(spark, tmp_path, rows, clusters=3, seed=5)
    out = build_segments(cfg, spark, lake, as_of=AS_OF)
    # then the groups are the clusters, numbered by size and labelled by their top categories
    expected = [(u, "cluster_0", "cluster", "sports+tech") for u, *_ in rows[:12]]
    expected += [(u, "cluster_1", "cluster", "music") for u, *_ in rows[12:22]]
    expected += [(u, "cluster_2", "cluster", "food & drink+travel") for u, *_ in rows[22:30]]
    assertDataFrameEqual(memberships(lake), spark.createDataFrame(expected, MEMBER_SCHEMA))
    assert out["segments"] == {
        "cluster_0": {"kind": "cluster", "label": "sports+tech", "users": 12},
        "cluster_1": {"kind": "cluster", "label": "music", "users": 10},
        "cluster_2": {"kind": "cluster", "label": "food & drink+travel", "users": 8},
    }
    assert out["clusters"] == {"requested": 3, "fitted": 3, "categories": 6}
    assert out["clusters_skipped"] is None and out["users"] == 32


def test_rules_and_clusters_together_and_a_vocabulary_cap(spark, tmp_path):
    rows = _group("s", 4, {"sports": 0.9, "news": 0.1}) + _group("m", 4, {"music": 0.9, "tech": 0.1})
    cfg, lake = setup(
        spark, tmp_path, rows, clusters=2, cluster_categories=2, rules={"fans": "interest.sports >= 0.5"}
    )
    out = build_segments(cfg, spark, lake, as_of=AS_OF)
    # a user is in a rule segment and one cluster; the vectors use the 2 largest categories only
    assert out["clusters"]["categories"] == 2
    assert {n: (s["kind"], s["users"]) for n, s in out["segments"].items()} == {
        "fans": ("rule", 4),
        "cluster_0": ("cluster", 4),
        "cluster_1": ("cluster", 4),
    }
    assert {out["segments"]["cluster_0"]["label"], out["segments"]["cluster_1"]["label"]} == {
        "music",
        "sports",
    }
    per_user = memberships(lake).groupBy("user_id").count()
    assert dict(per_user.collect()) == {**{f"s{i}": 2 for i in range(4)}, **{f"m{i}": 1 for i in range(4)}}


def test_fewer_users_than_k(spark, tmp_path):
    rows = [
        profile("a", 1, {"sports": 1.0}),
        profile("b", 1, {"music": 1.0}),
        profile("c", 1, {"music": 2.0}),
    ]
    cfg, lake = setup(spark, tmp_path, rows, clusters=4)
    out = build_segments(cfg, spark, lake, as_of=AS_OF)
    # two distinct vectors: two clusters, not four
    assert out["clusters"] == {"requested": 4, "fitted": 2, "categories": 2}
    assert {n: (s["label"], s["users"]) for n, s in out["segments"].items()} == {
        "cluster_0": ("music", 2),
        "cluster_1": ("sports", 1),
    }
    # one user: nothing to cluster, said so
    cfg1, lake1 = setup(spark, tmp_path / "one", rows[:1], clusters=4, rules={"all": "events_total >= 0"})
    out1 = build_segments(cfg1, spark, lake1, as_of=AS_OF)
    assert out1["clusters_skipped"] == "1 distinct interest vector(s): nothing to cluster"
    assert set(out1["segments"]) == {"all"}


def test_no_categories_skips_the_clusters_with_a_reason(spark, tmp_path, caplog):
    # a click-only source without a catalog: interest weight but no categories
    rows = [profile(f"u{i}", i, {}, weight=1.0 + i, events={"click": i + 1}) for i in range(5)]
    cfg, lake = setup(spark, tmp_path, rows, clusters=3, rules={"clickers": "events.click >= 3"})
    out = build_segments(cfg, spark, lake, as_of=AS_OF)
    assert out["clusters_skipped"].startswith("no categories in gold.user_profiles.interests")
    assert "clusters skipped: no categories" in caplog.text
    assert out["clusters"] == {"requested": 3, "fitted": 0, "categories": 0}
    assert out["segments"] == {"clickers": {"kind": "rule", "label": "events.click >= 3", "users": 3}}
    assert lake.row_count(C.GOLD_USER_SEGMENTS) == 3


def test_an_empty_result_does_not_replace_stored_segments(spark, tmp_path):
    cfg, lake = setup(spark, tmp_path, RULE_PROFILES, rules={"dormant": "days_since_last_seen > 14"})
    build_segments(cfg, spark, lake, as_of=AS_OF)
    version = lake.version(C.GOLD_USER_SEGMENTS)
    # when the rule matches nobody any more (as_of before everyone went quiet)
    with pytest.raises(DestructiveWriteError, match="no rule or cluster matched any of the 5 profiles"):
        build_segments(cfg, spark, lake, as_of=AS_OF - dt.timedelta(days=10))
    # then the stored segments stay
    assert lake.version(C.GOLD_USER_SEGMENTS) == version
    assert [r.user_id for r in memberships(lake).collect()] == ["u1"]
    # --force writes it
    out = build_segments(cfg, spark, lake, as_of=AS_OF - dt.timedelta(days=10), force=True)
    assert out["rows"] == 0 and lake.row_count(C.GOLD_USER_SEGMENTS) == 0
    # and with no profile at all, the empty result is the right one
    build_segments(cfg, spark, lake, as_of=AS_OF)
    lake.overwrite(C.GOLD_USER_PROFILES, spark.createDataFrame([], PROFILE_SCHEMA))
    out = build_segments(cfg, spark, lake, as_of=AS_OF)
    assert out["users"] == 0 and lake.row_count(C.GOLD_USER_SEGMENTS) == 0


def test_cli_prints_the_sizes_of_the_stored_segments(spark, tmp_path, capsys):
    rows = RULE_PROFILES + _group("s", 5, {"sports": 0.9, "news": 0.1}) + _group("m", 5, {"music": 1.0})
    cfg, lake = setup(spark, tmp_path, rows)
    argv = ["segments", "--set", f"lake.root={cfg.lake.root}", "--set", "spark.show_progress=false"]
    # conf/local.yaml: rules dormant and heavy, 4 clusters
    rc = main([*argv, "--as-of", "2026-10-20T00:00:00Z"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out.strip().splitlines()[-1])
    stored = {
        r["segment"]: r["count"] for r in lake.read(C.GOLD_USER_SEGMENTS).groupBy("segment").count().collect()
    }
    assert {n: s["users"] for n, s in out["segments"].items() if s["users"]} == stored
    assert out["segments"]["dormant"]["users"] == 1 and out["segments"]["heavy"]["users"] == 2
    assert out["clusters"]["fitted"] >= 2 and out["as_of"] == "2026-10-20T00:00:00+00:00"
    for name, s in out["segments"].items():
        assert f"{name}  " in captured.err and s["label"] in captured.err


def test_cli_errors_in_one_line(spark, tmp_path, capsys):
    cfg, lake = setup(spark, tmp_path, None)
    rc = main(["segments", "--set", f"lake.root={cfg.lake.root}"])
    assert rc == 2
    assert "recpipe segments: error: gold.user_profiles does not exist: run `recpipe stream` first" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["segments", "--as-of", "yesterday"])
    assert "invalid timestamp 'yesterday'" in capsys.readouterr().err
