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
from recpipe.scoring.scorers import model_api_available

pytestmark = pytest.mark.integration

RUN_DATE = dt.date(2026, 10, 15)
AS_OF = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)
NEW_USER = "p_brand_new_user"
# Fewer ALS iterations keep the test fast; the job's defaults are in CandidateParams.
PARAMS = CandidateParams(als_max_iter=5, als_rank=16)


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
        publish_recommendations(lake, bad, RUN_DATE, items, counts, AS_OF, cfg.recommend.top_n)
    assert lake.version(C.GOLD_RECOMMENDATIONS) == version
    assert (
        lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE)).count() == recs.count()
    )


def test_earlier_dates_are_kept(published, spark):
    cfg, lake, _, recs, _ = published
    day_before = RUN_DATE - dt.timedelta(days=1)
    older = recs.withColumn(C.RUN_DATE, F.lit(day_before))
    counts = spark.createDataFrame([], "user_id string, n_candidates long")
    publish_recommendations(
        lake,
        older,
        day_before,
        lake.read(C.SILVER_ITEMS),
        counts,
        AS_OF - dt.timedelta(days=1),
        cfg.recommend.top_n,
    )
    dates = {r[0] for r in lake.read(C.GOLD_RECOMMENDATIONS).select(C.RUN_DATE).distinct().collect()}
    # both dates are there (other tests sharing the lake may have published more dates)
    assert {RUN_DATE, day_before} <= dates
    assert (
        lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE)).count() == recs.count()
    )


@pytest.mark.skipif(
    not model_api_available(),
    reason="TODO(issue 4): recpipe.model.registry / recpipe.model.inputs not available; model scorer untested",
)
def test_model_scorer_scores_with_the_shared_inputs(spark):
    """The model scorer turns a pandas batch into inputs with recpipe.model.inputs and predicts."""
    import numpy as np
    import pandas as pd

    from recpipe.model import testing as MT
    from recpipe.model.models import build_model
    from recpipe.scoring.scorers import ModelScorer

    spec = MT.synthetic_spec()
    model = build_model("dcn", spec)
    pdf = MT.synthetic_examples(rows=16)
    scores = ModelScorer(model, spec, "m00001").score(pd.DataFrame(pdf))
    assert scores.shape == (len(pdf),) and np.isfinite(scores).all()
    # a model input the serving frame did not build is an error, not a silent default (skew)
    with pytest.raises(ValueError, match=f"lacks model inputs \\['{spec.columns[0]}'\\]"):
        ModelScorer(model, spec, "m00001").score(pd.DataFrame(pdf.drop(columns=[spec.columns[0]])))
