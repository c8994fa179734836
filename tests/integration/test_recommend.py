"""The recommend job end-to-end on the shared synthetic lake (20k events, 14 days)."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.candidates.run import CandidateParams
from recpipe.candidates.sources import allowed_items
from recpipe.scoring.publish import PublishCheckError, publish_recommendations
from recpipe.scoring.run import run_recommend
from recpipe.scoring.scorers import ScorerRef

pytestmark = pytest.mark.integration

RUN_DATE = dt.date(2026, 10, 15)
AS_OF = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)
NEW_USER = "p_brand_new_user"
# Fewer ALS iterations keep the test fast; the job's defaults are in CandidateParams.
PARAMS = CandidateParams(als_max_iter=5, als_rank=16)


def publish(lake, cfg, recs, day, items, counts, as_of=AS_OF, force=False):
    """``publish_recommendations`` with the config's N and shares."""
    rc = cfg.recommend
    return publish_recommendations(
        lake,
        recs,
        day,
        items,
        counts,
        as_of,
        rc.top_n,
        max_drop_share=rc.max_drop_share,
        max_short_share=rc.max_short_share,
        force=force,
    )


def stored(lake, day):
    return lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(day))


@pytest.fixture(scope="module")
def published(spark, synthetic_lake):
    """Given the synthetic lake and one user who has no events, when recommend runs for 2026-10-15."""
    cfg, lake, _raw, _manifest = synthetic_lake
    extra = spark.createDataFrame([(NEW_USER, "DE")], "user_id string, country string")
    summary = run_recommend(cfg, spark, RUN_DATE, extra_users=extra, lake=lake, params=PARAMS)
    recs = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE)).cache()
    return cfg, lake, summary, recs, extra


def test_every_active_user_gets_n_distinct_allowed_items_with_reasons(published):
    cfg, lake, summary, recs, _ = published
    n = cfg.recommend.top_n
    assert summary["ranker"] == "popularity" and summary["model_version"] is None
    assert summary["users"] == summary["lists"] == summary["full_lists"]
    per_user = recs.groupBy(C.USER_ID).agg(
        F.count("*").alias("n"), F.countDistinct(C.ITEM_ID).alias("d"), F.max(C.RANK).alias("r")
    )
    assert per_user.where((F.col("n") != n) | (F.col("d") != n) | (F.col("r") != n)).count() == 0
    active = (
        lake.read(C.SILVER_EVENTS)
        .where(F.col(C.EVENT_TS) >= F.lit(AS_OF - dt.timedelta(days=28)).cast("timestamp"))
        .where(F.col(C.EVENT_TS) < F.lit(AS_OF).cast("timestamp"))
        .select(C.USER_ID)
        .distinct()
    )
    assert active.join(per_user, C.USER_ID, "left_anti").count() == 0
    allowed = allowed_items(lake.read(C.SILVER_ITEMS), AS_OF, cfg.recommend.max_item_age_days)
    assert recs.join(allowed, C.ITEM_ID, "left_anti").count() == 0
    assert recs.where(~F.col(C.REASON).isin(C.REASON_CODES) | F.col(C.REASON_DETAIL).isNull()).count() == 0
    assert recs.where((F.col(C.PROPENSITY) <= 0) | (F.col(C.PROPENSITY) > 1)).count() == 0
    consumed = (
        lake.read(C.SILVER_EVENTS)
        .where(F.col(C.EVENT_TS) < F.lit(AS_OF).cast("timestamp"))
        .where(F.col(C.EVENT_TYPE).isin("click", "read"))
        .select(C.USER_ID, C.ITEM_ID)
    )
    assert recs.join(consumed, [C.USER_ID, C.ITEM_ID], "left_semi").count() == 0
    share = summary["reason_share"]
    assert 0.03 < share.get("explore", 0) < 0.2
    assert {"co_visit", "als", "similar_content"} <= set(share)


def test_category_cap_holds(published):
    cfg, lake, _, recs, _ = published
    cats = recs.join(lake.read(C.SILVER_ITEMS).select(C.ITEM_ID, "category"), C.ITEM_ID)
    over = cats.groupBy(C.USER_ID, "category").count().where(F.col("count") > cfg.recommend.max_per_category)
    assert over.count() == 0


def test_brand_new_user_and_brand_new_item_are_covered(published):
    cfg, lake, _, recs, _ = published
    new_user = recs.where(F.col(C.USER_ID) == NEW_USER).collect()
    assert len(new_user) == cfg.recommend.top_n
    assert {r[C.REASON] for r in new_user} <= {"trending", "fresh", "explore"}
    events = lake.read(C.SILVER_EVENTS).where(F.col(C.EVENT_TS) < F.lit(AS_OF).cast("timestamp"))
    fresh_unseen = (
        allowed_items(lake.read(C.SILVER_ITEMS), AS_OF, cfg.recommend.max_item_age_days)
        .where(F.col("published_ts") >= F.lit(AS_OF - dt.timedelta(hours=cfg.recommend.fresh_window_hours)))
        .join(events.select(C.ITEM_ID), C.ITEM_ID, "left_anti")
        .select(C.ITEM_ID)
    )
    assert fresh_unseen.count() > 0, "the synthetic lake should hold recently published items without events"
    cands = lake.read(C.GOLD_CANDIDATES).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE))
    assert (
        cands.join(fresh_unseen, C.ITEM_ID, "left_semi").select(C.ITEM_ID).distinct().count()
        == fresh_unseen.count()
    )
    assert recs.join(fresh_unseen, C.ITEM_ID, "left_semi").count() > 0


def test_rerun_for_the_same_date_changes_nothing(published, spark):
    cfg, lake, first, recs, extra = published
    version = lake.version(C.GOLD_RECOMMENDATIONS)
    before = recs.collect()
    again = run_recommend(cfg, spark, RUN_DATE, extra_users=extra, lake=lake, params=PARAMS)
    assert again["published"]["committed"] is False
    assert again["published"]["fingerprint"] == first["published"]["fingerprint"]
    assert lake.version(C.GOLD_RECOMMENDATIONS) == version
    after = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE)).collect()
    assert sorted(before) == sorted(after)


def test_lists_for_users_rank_like_the_published_run_without_publishing(published, spark):
    from recpipe.scoring.run import lists_for_users
    from recpipe.scoring.scorers import POPULARITY

    cfg, lake, summary, recs, _extra = published
    version = lake.version(C.GOLD_RECOMMENDATIONS)
    users = sorted(r[0] for r in recs.select(C.USER_ID).distinct().collect())[:25]
    got = lists_for_users(cfg, spark, RUN_DATE, users, POPULARITY, params=PARAMS, lake=lake)
    cols = [C.USER_ID, C.RANK, C.ITEM_ID, C.PROPENSITY, C.REASON, C.REASON_DETAIL]
    want = recs.where(F.col(C.USER_ID).isin(users)).select(*cols).toPandas()
    assert summary["ranker"] == "popularity" and len(want) == 25 * cfg.recommend.top_n
    key = [C.USER_ID, C.RANK]
    got = got[cols].sort_values(key).reset_index(drop=True)
    assert got.equals(want.sort_values(key).reset_index(drop=True))
    assert lake.version(C.GOLD_RECOMMENDATIONS) == version  # nothing published


@pytest.mark.parametrize("damage", ["duplicate", "blocked", "short"])
def test_failing_publish_check_keeps_the_last_good_lists(published, spark, damage):
    cfg, lake, _, recs, _ = published
    version = lake.version(C.GOLD_RECOMMENDATIONS)
    items = lake.read(C.SILVER_ITEMS)
    victim = recs.select(C.USER_ID).orderBy(C.USER_ID).first()[0]
    if damage == "duplicate":  # rank 2 shows the rank-1 item again
        first_item = recs.where((F.col(C.USER_ID) == victim) & (F.col(C.RANK) == 1)).first()[C.ITEM_ID]
        bad = recs.withColumn(
            C.ITEM_ID,
            F.when((F.col(C.USER_ID) == victim) & (F.col(C.RANK) == 2), F.lit(first_item)).otherwise(
                F.col(C.ITEM_ID)
            ),
        )
        expected = "item twice"
    elif damage == "blocked":
        blocked = items.where(F.col("status") == "blocked").first()[C.ITEM_ID]
        bad = recs.withColumn(
            C.ITEM_ID,
            F.when((F.col(C.USER_ID) == victim) & (F.col(C.RANK) == 1), F.lit(blocked)).otherwise(
                F.col(C.ITEM_ID)
            ),
        )
        expected = "blocked or expired"
    else:
        bad = recs.where(~((F.col(C.USER_ID) == victim) & (F.col(C.RANK) == cfg.recommend.top_n)))
        expected = "shorter than N"
    counts = spark.createDataFrame([(victim, 50)], "user_id string, n_candidates long")
    with pytest.raises(PublishCheckError, match=expected):
        publish(lake, cfg, bad, RUN_DATE, items, counts)
    assert lake.version(C.GOLD_RECOMMENDATIONS) == version
    assert (
        lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE)).count() == recs.count()
    )


def test_earlier_dates_are_kept(published, spark):
    cfg, lake, _, recs, _ = published
    day_before = RUN_DATE - dt.timedelta(days=1)
    older = recs.withColumn(C.RUN_DATE, F.lit(day_before))
    counts = spark.createDataFrame([], "user_id string, n_candidates long")
    publish(
        lake, cfg, older, day_before, lake.read(C.SILVER_ITEMS), counts, as_of=AS_OF - dt.timedelta(days=1)
    )
    dates = {r[0] for r in lake.read(C.GOLD_RECOMMENDATIONS).select(C.RUN_DATE).distinct().collect()}
    # both dates are there (other tests sharing the lake may have published more dates)
    assert {RUN_DATE, day_before} <= dates
    assert (
        lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE)).count() == recs.count()
    )


def test_an_empty_result_never_replaces_the_published_lists(published, spark):
    """Issue 9 defect 1: a setting made recommend publish 0 lists, replacing the date's partition."""
    cfg, lake, _, recs, _ = published
    version, before = lake.version(C.GOLD_RECOMMENDATIONS), stored(lake, RUN_DATE).count()
    assert before == recs.count() > 0
    no_counts = spark.createDataFrame([], "user_id string, n_candidates long")
    for force in (False, True):
        with pytest.raises(
            PublishCheckError, match=r"gold\.recommendations: the result is empty \(0 lists, rows\)"
        ):
            publish(lake, cfg, recs.limit(0), RUN_DATE, lake.read(C.SILVER_ITEMS), no_counts, force=force)
    assert lake.version(C.GOLD_RECOMMENDATIONS) == version
    assert stored(lake, RUN_DATE).count() == before


def test_a_big_drop_against_the_last_publish_needs_force(published, spark):
    cfg, lake, _, recs, _ = published
    items = lake.read(C.SILVER_ITEMS)
    no_counts = spark.createDataFrame([], "user_id string, n_candidates long")
    # dates of their own, before the data: the forced publish must not touch other tests' lists
    day, next_day = dt.date(2026, 9, 20), dt.date(2026, 9, 21)
    full = recs.withColumn(C.RUN_DATE, F.lit(day))
    users = sorted(r[0] for r in recs.select(C.USER_ID).distinct().collect())
    kept = users[: len(users) * 2 // 5]  # 40% of the lists: a 60% drop
    part = full.where(F.col(C.USER_ID).isin(kept))
    assert publish(lake, cfg, full, day, items, no_counts)["committed"]
    version, n_full, n_part = lake.version(C.GOLD_RECOMMENDATIONS), full.count(), part.count()
    # republishing the date: compared with the lists already published for it
    with pytest.raises(
        PublishCheckError,
        match=rf"lists fall from {len(users)} to {len(kept)} \(-60%\) against the lists already published "
        r"for 2026-09-20, more than recommend\.max_drop_share=0\.5; pass --force",
    ):
        publish(lake, cfg, part, day, items, no_counts)
    # a new date: compared with the most recent earlier publish
    with pytest.raises(
        PublishCheckError,
        match=rf"rows fall from {n_full} to {n_part} .* the last published lists \(2026-09-20\)",
    ):
        publish(lake, cfg, part.withColumn(C.RUN_DATE, F.lit(next_day)), next_day, items, no_counts)
    assert lake.version(C.GOLD_RECOMMENDATIONS) == version
    assert stored(lake, day).count() == n_full and stored(lake, next_day).count() == 0
    # --force: the smaller lists are published
    res = publish(lake, cfg, part, day, items, no_counts, force=True)
    assert res["committed"] and res["previous"]["lists"] == len(users) and res["counts"]["lists"] == len(kept)
    assert stored(lake, day).count() == n_part


def test_too_many_short_lists_are_refused(published, spark):
    """Lists shorter than N for more than recommend.max_short_share of the users, even where the
    candidates did not allow more (the per-user check only knows a shortfall against candidates)."""
    cfg, lake, _, recs, _ = published
    n = cfg.recommend.top_n
    version, before = lake.version(C.GOLD_RECOMMENDATIONS), stored(lake, RUN_DATE).count()
    users = sorted(r[0] for r in recs.select(C.USER_ID).distinct().collect())
    short_users = users[: len(users) // 10]  # 10% of the lists lose their last item
    bad = recs.where(~(F.col(C.USER_ID).isin(short_users) & (F.col(C.RANK) == n)))
    counts = spark.createDataFrame([(u, n - 1) for u in short_users], "user_id string, n_candidates long")
    with pytest.raises(
        PublishCheckError,
        match=rf"{len(short_users)} of {len(users)} users \([\d.]+%\) have a list shorter than N={n}, "
        r"more than recommend\.max_short_share=0\.05",
    ) as err:
        publish(lake, cfg, bad, RUN_DATE, lake.read(C.SILVER_ITEMS), counts)
    assert "although enough candidates existed" not in str(err.value)
    assert lake.version(C.GOLD_RECOMMENDATIONS) == version
    assert stored(lake, RUN_DATE).count() == before


def test_model_scorer_scores_with_the_shared_inputs(spark):
    """The model scorer turns a pandas batch into inputs with recpipe.model.inputs and predicts."""
    import numpy as np
    import pandas as pd

    from recpipe.model.models import build_model
    from recpipe.scoring.scorers import ModelScorer
    from tests.support import model_examples as MT

    spec = MT.synthetic_spec()
    model = build_model("dcn", spec)
    pdf = MT.synthetic_examples(rows=16)
    scores = ModelScorer(model, spec, "m00001").score(pd.DataFrame(pdf))
    assert scores.shape == (len(pdf),) and np.isfinite(scores).all()
    # a model input the serving frame did not build is an error, not a silent default (skew)
    with pytest.raises(ValueError, match=f"lacks model inputs \\['{spec.columns[0]}'\\]"):
        ModelScorer(model, spec, "m00001").score(pd.DataFrame(pdf.drop(columns=[spec.columns[0]])))


def test_model_scores_in_spark_equal_the_scorer_on_pandas(spark, tmp_path):
    """score_candidates with a model ref: Arrow batches (list columns included) reach the model
    unchanged, only the kept columns come back, and each row's score is the scorer's score of
    that row from a pandas frame."""
    import numpy as np

    from recpipe.model.artifact import write_export
    from recpipe.model.models import build_model
    from recpipe.scoring.rank import score_candidates
    from recpipe.scoring.scorers import ModelScorer
    from tests.support import model_examples as MT

    spec = MT.synthetic_spec()
    model = build_model("dcn", spec)
    write_export(str(tmp_path), model, spec, {})
    pdf = MT.synthetic_examples(rows=3000, seed=5)
    # as in the serving frame, a user's context is one value per user (scorers.ModelScorer.score_sides)
    pdf["device"] = pdf.groupby("user_id")["device"].transform("first")
    pdf["extra"] = np.arange(len(pdf))
    sdf = spark.createDataFrame(pdf[[*spec.columns, "extra"]])
    ref = ScorerRef("model", version="t1", uri=str(tmp_path), inputs=tuple(spec.columns))
    got = score_candidates(sdf.repartition(3), ref, keep=[C.USER_ID, C.ITEM_ID, "extra"])
    assert got.columns == [C.USER_ID, C.ITEM_ID, "extra", C.SCORE]
    out = got.toPandas().sort_values("extra")
    want = ModelScorer(model, spec, "t1").score(pdf)
    assert len(out) == len(pdf)
    np.testing.assert_allclose(out[C.SCORE].to_numpy(), np.round(want, 6), atol=2e-6)


def test_item_inputs_broadcast_to_the_kernel_score_like_the_joined_column(spark, tmp_path):
    """The text vectors handed to score_candidates as a per-item table (added to each batch by
    item id; an item missing from it gets null, i.e. zeros) give the scores of the frame with
    the vectors joined to every row, across several gathered batches."""
    import numpy as np
    import pyarrow as pa

    from recpipe.model.artifact import write_export
    from recpipe.model.models import build_model
    from recpipe.scoring.rank import score_candidates
    from tests.support import model_examples as MT

    spec = MT.synthetic_spec()
    write_export(str(tmp_path), build_model("dcn", spec), spec, {})
    pdf = MT.synthetic_examples(rows=5000, seed=6)
    # as in the serving frame, a user's context is one value per user (scorers.ModelScorer.score_sides)
    pdf["device"] = pdf.groupby("user_id")["device"].transform("first")
    pdf["row"] = np.arange(len(pdf))
    first = pdf.groupby("item_id")["text_vec"].first()
    missing = sorted(first.index)[:5]
    pdf["text_vec"] = [None if i in missing else first[i] for i in pdf["item_id"]]
    items = pa.table(
        {
            "item_id": [i for i in first.index if i not in missing],
            "text_vec": pa.array([first[i] for i in first.index if i not in missing], pa.list_(pa.float32())),
        }
    )
    assert pdf["text_vec"].isna().sum() > 0
    ref = ScorerRef("model", version="t2", uri=str(tmp_path), inputs=tuple(spec.columns))
    keep = [C.USER_ID, C.ITEM_ID, "row"]
    joined = spark.createDataFrame(pdf[[*spec.columns, "row"]]).repartition(2)
    bare = spark.createDataFrame(pdf[[c for c in spec.columns if c != "text_vec"] + ["row"]]).repartition(2)
    a = score_candidates(joined, ref, keep).toPandas().sort_values("row")
    b = score_candidates(bare, ref, keep, items=items).toPandas().sort_values("row")
    assert len(a) == len(b) == len(pdf)
    np.testing.assert_allclose(b[C.SCORE].to_numpy(), a[C.SCORE].to_numpy(), atol=2e-6)


def test_scored_candidates_are_the_users_distinct_candidate_items(published):
    """The fused kernel counts what it scored: one row per (user, candidate item) of the run."""
    _cfg, lake, summary, _recs, _ = published
    cands = lake.read(C.GOLD_CANDIDATES).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE))
    assert summary["scored_candidates"] == cands.select(C.USER_ID, C.ITEM_ID).distinct().count() > 0
    assert "rerank_s" not in summary["timings_s"]  # scored and re-ranked in one pass: score_s


def _ranking_inputs(spark):
    """Candidates of 40 users over 60 items from three sources (overlapping), items with and
    without a category, affinities (one with a null category) and item stats for a few items."""
    import numpy as np

    rng = np.random.default_rng(5)
    items = [f"i{j:02d}" for j in range(60)]
    cats = [None if j % 13 == 0 else f"c{j % 4}" for j in range(60)]
    base = dt.datetime(2026, 10, 14, tzinfo=dt.UTC)
    allowed = spark.createDataFrame(
        [(i, c, base - dt.timedelta(hours=int(h))) for i, c, h in zip(items, cats, rng.integers(1, 400, 60))],
        "item_id string, category string, published_ts timestamp",
    )
    rows = []
    for u in range(40):
        for src in (C.REASON_ALS, C.REASON_CO_VISIT, C.REASON_TRENDING):
            for j in rng.choice(60, size=25, replace=False):
                rows.append((f"u{u:02d}", items[j], src, float(np.round(rng.random(), 4)), f"d{j % 3}"))
    cands = spark.createDataFrame(
        rows, "user_id string, item_id string, source string, source_score double, detail string"
    )
    aff = [(f"u{u:02d}", f"c{c}", float(np.round(rng.random(), 3))) for u in range(40) for c in range(3)]
    aff.append(("u00", None, 0.5))
    affinity = spark.createDataFrame(aff, "user_id string, category string, affinity double")
    stats = spark.createDataFrame(
        [(items[j], float(rng.random()), int(rng.integers(0, 50))) for j in range(0, 60, 2)],
        "item_id string, popularity double, impressions long",
    )
    return cands.repartition(4), allowed, affinity, stats


def test_ranking_frame_equals_the_joins_it_replaced_and_shuffles_candidates_once(spark):
    """ranking_frame's per-user affinity map gives the rows of the plain (user, category) join;
    scoring and re-ranking it add no shuffle of candidate rows on top of the one by user."""
    from recpipe.scoring.rank import ranking_frame, score_and_rerank
    from recpipe.scoring.rerank import RerankParams
    from recpipe.scoring.scorers import POPULARITY

    cands, allowed, affinity, stats = _ranking_inputs(spark)
    as_of = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)
    got = ranking_frame(cands, allowed, affinity, stats, as_of, 48).toPandas()
    # Reference: the affinity joined on (user, category) as before, the rest from the frame.
    ref = (
        cands.select(C.USER_ID, C.ITEM_ID)
        .distinct()
        .join(allowed.select(C.ITEM_ID, "category"), C.ITEM_ID)
        .join(affinity, [C.USER_ID, "category"], "left")
        .select(C.USER_ID, C.ITEM_ID, F.coalesce("affinity", F.lit(0.0)).alias("want"))
        .toPandas()
    )
    both = got.merge(ref, on=[C.USER_ID, C.ITEM_ID], how="outer", indicator=True)
    assert (both["_merge"] == "both").all() and len(both) == len(ref) > 500
    assert (both["cat_affinity"] == both["want"]).all()
    assert both["cat_affinity"].gt(0).sum() > 100  # the map lookups hit

    lists = score_and_rerank(
        ranking_frame(cands, allowed, affinity, stats, as_of, 48), POPULARITY, RerankParams(), RUN_DATE
    )
    assert lists.count() == 40 * 10
    plan = lists._jdf.queryExecution().executedPlan().toString()
    assert (
        "hashpartitioning(user_id, item_id" not in plan and "hashpartitioning(user_id, category" not in plan
    ), plan


def test_fused_kernel_lists_equal_scoring_then_reranking(spark):
    """score_and_rerank == the two-step reference (score_candidates, then one re-rank shuffle by
    user over rerank_partitions): same items, ranks, reasons, scores and exact propensities."""
    from recpipe.scoring.rank import ranking_frame, score_and_rerank, score_candidates
    from recpipe.scoring.rerank import INPUT_COLUMNS, OUT_DDL, RerankParams, rerank_partitions
    from recpipe.scoring.scorers import POPULARITY

    cands, allowed, affinity, stats = _ranking_inputs(spark)
    as_of = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)
    frame = ranking_frame(cands, allowed, affinity, stats, as_of, 48).cache()
    params = RerankParams(top_n=8, max_per_category=2, explore_share=0.3, pool_size=5)
    keys = [C.USER_ID, C.RANK]
    got = score_and_rerank(frame, POPULARITY, params, RUN_DATE).toPandas().sort_values(keys)
    scored = score_candidates(frame, POPULARITY, [c for c in INPUT_COLUMNS if c != C.SCORE])
    want = (
        scored.repartition(3, C.USER_ID)
        .sortWithinPartitions(C.USER_ID)
        .mapInPandas(rerank_partitions(params, RUN_DATE.isoformat()), OUT_DDL)
        .toPandas()
        .sort_values(keys)
    )
    frame.unpersist()
    assert len(got) == len(want) == 40 * 8
    assert (want[C.REASON] == C.REASON_EXPLORE).sum() > 10  # the draws matter
    for c in (C.USER_ID, C.RANK, C.ITEM_ID, C.REASON, C.REASON_DETAIL, C.SCORE, C.PROPENSITY):
        assert got[c].tolist() == want[c].tolist(), c
