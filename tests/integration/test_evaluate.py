"""Evaluation of published lists on the synthetic lake, and the report notebook on its output."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas.testing as pd_testing
import pytest
from pyspark.sql import functions as F

from recpipe.candidates.run import CandidateParams
from recpipe.config import replace
from recpipe.evaluation.run import OPS_EVALUATIONS, run_evaluate
from recpipe.scoring.run import run_recommend
from tests.integration.test_notebooks import execute, images

pytestmark = pytest.mark.integration

RUN_DATE = dt.date(2026, 10, 12)


@pytest.fixture(scope="module")
def report(spark, synthetic_lake, tmp_path_factory):
    cfg, lake, _raw, _manifest = synthetic_lake
    cfg = replace(cfg, [f"evaluate.report_dir={tmp_path_factory.mktemp('reports')}"])
    run_recommend(cfg, spark, RUN_DATE, lake=lake, params=CandidateParams(als_max_iter=5, als_rank=16))
    return lake, run_evaluate(cfg, spark, RUN_DATE, lake=lake)


def test_metrics_for_published_and_baselines_per_segment(report):
    lake, rep = report
    by = {(r["policy"], r["segment"]): r for r in rep["top_n"]}
    assert {p for p, _ in by} == {"published", "popularity", "als"}
    # the fixture's lists come from the fallback ranker itself: nothing to compare it with
    assert rep["fallback_ranker"] == {
        "skipped": "the published lists are the fallback ranker's own (no model version)"
    }
    assert {s for _, s in by} == {"all", "cold", "warm"}
    k = rep["k"]
    for row in by.values():
        for m in (f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}", "mrr", "catalog_coverage"):
            assert row[m] is None or 0.0 <= row[m] <= 1.0
    assert by[("published", "all")]["users_evaluated"] > 0
    assert rep["truth_window"] == ["2026-10-12", "2026-10-19"]
    # the file and the table hold the same run
    saved = json.loads(Path(rep["report_path"]).read_text())
    assert saved["run_id"] == rep["run_id"]
    stored = lake.read(OPS_EVALUATIONS).where(F.col("run_id") == rep["run_id"])
    assert stored.where("policy = 'published' and segment = 'all' and metric = 'ndcg@10'").count() == 1


def test_true_click_model_expected_clicks_recomputed_from_the_published_rows(report, synthetic_lake):
    import numpy as np

    from recpipe.datasets.synthetic import true_click_probability
    from recpipe.evaluation.run import true_click_model_eval
    from recpipe.events.transforms import pseudonymize_py
    from recpipe.stages.daily import true_click_model

    lake, rep = report
    cfg, _lake, raw, manifest = synthetic_lake
    # the fixture's config says "raw" data: the report says why there is no true click model
    assert "data.source is 'raw'" in rep["true_click_model"]["skipped"]
    # given the same lake declared as generator output
    synthetic = replace(cfg, ["data.source=synthetic"])
    # without a click model (the stage builds it from data.raw_dir) the report says why not
    assert "no true click model given" in true_click_model_eval(synthetic, lake, RUN_DATE)["skipped"]
    tc = true_click_model_eval(synthetic, lake, RUN_DATE, true_click_model(synthetic))
    # then the published figure is the generator's click probability of every published slot
    # (0-based position = rank - 1, at noon of the run date) summed per human user
    key = cfg.pseudonym_key()
    users = _world_users(raw)
    raw_of = {pseudonymize_py(u, key): u for u, _bot in users}
    bots = {pseudonymize_py(u, key) for u, bot in users if bot}
    pub = lake.read("gold.recommendations").where(F.col("run_date") == F.lit(RUN_DATE)).toPandas()
    pub = pub[pub.user_id.isin(raw_of) & ~pub.user_id.isin(bots)]
    noon = np.datetime64("2026-10-12T12:00:00", "ms")
    p = true_click_probability(
        raw, [raw_of[u] for u in pub.user_id], pub.item_id.tolist(), pub["rank"].to_numpy() - 1, noon
    )
    n_users = pub.user_id.nunique()
    assert tc["users"] == n_users > 0
    assert tc["published_expected_clicks_per_list"] == pytest.approx(p.sum() / n_users, abs=1e-4)
    # and both baselines fill N slots for every one of those users
    n = cfg.recommend.top_n
    assert tc["popularity_slots"] == tc["als_only_slots"] == n * n_users
    assert tc["popularity_expected_clicks_per_list"] > 0 and tc["als_only_expected_clicks_per_list"] > 0


def _world_users(raw):
    from recpipe.datasets.synthetic import load_world

    w = load_world(raw)
    return list(zip(w.user_ids.tolist(), w.is_bot.tolist(), strict=True))


def test_off_policy_inputs_match_an_independent_recount(report, spark):
    lake, rep = report
    ope = rep["off_policy"]
    # given: the logged impressions with propensities in the truth window, counted here directly
    ev = lake.read("silver.events")
    start, end = (F.lit(d).cast("date") for d in rep["truth_window"])
    window = (F.col("event_date") >= start) & (F.col("event_date") < end)
    imps = ev.where((F.col("event_type") == "impression") & F.col("propensity").isNotNull() & window)
    clicked = (
        ev.where((F.col("event_type") == "click") & F.col("request_id").isNotNull())
        .select("request_id", "item_id")
        .distinct()
    )
    n = imps.count()
    n_clicked = imps.join(clicked, ["request_id", "item_id"], "left_semi").count()
    # then: the estimator saw exactly those rows and rewards
    assert ope["impressions"] == n > 0
    assert ope["observed_ctr"] == pytest.approx(n_clicked / n)
    # the logging policy evaluated on itself has weights 1: IPS and SNIPS equal the observed rate
    assert ope["ips"]["value"] == pytest.approx(ope["observed_ctr"])
    assert ope["ips"]["ci_low"] < ope["observed_ctr"] < ope["ips"]["ci_high"]


def test_evaluation_report_notebook_runs(report):
    _lake, rep = report
    nb = execute("evaluation_report.ipynb", {"RECPIPE_REPORT": rep["report_path"]})
    assert images(nb) >= 3


def test_evaluation_html_report_renders_in_a_browser(report, tmp_path):
    from tests.browser import assert_renders_in_browser
    from tests.unit.test_reports import assert_self_contained

    _lake, rep = report
    page = Path(rep["report_html"])
    # beside the JSON, self-contained, and rendered from the JSON alone
    assert page.parent == Path(rep["report_path"]).parent and page.name == f"evaluation-{RUN_DATE}.html"
    assert_self_contained(page.read_text(), min_images=3)
    imgs = assert_renders_in_browser(page, tmp_path, min_images=3)
    assert {"Top-N accuracy by policy and segment", "Slots per reason"} <= {i["alt"] for i in imgs}


def test_als_baseline_scores_the_model_recommend_stored_not_a_refit(report, spark):
    """Given recommend stored the day's ALS factors (rank 16, 5 iterations, not the config's
    32/10), evaluation's ALS lists come from those factors, and equal the lists of a fresh fit
    with the stored settings; a date without stored factors falls back to a fit."""
    from recpipe import constants as C
    from recpipe.candidates import sources as S
    from recpipe.candidates.als import day_factors, load_factors
    from recpipe.evaluation import offline as O

    lake, rep = report
    assert rep["als_baseline"]["model"] == "stored"
    assert rep["als_baseline"]["params"]["rank"] == 16 and rep["als_baseline"]["params"]["max_iter"] == 5
    factors, params = load_factors(lake, RUN_DATE)
    assert json.loads(params) == rep["als_baseline"]["params"]
    day = lake.read(C.GOLD_ALS_FACTORS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE))
    sides = {r["side"]: r["count"] for r in day.groupBy("side").count().collect()}
    assert sides["user"] == factors.users.count() > 0 and sides["item"] == factors.items.count() > 0
    assert day.where("(side = 'user') != (user_id is not null and item_id is null)").count() == 0
    assert {len(r.features) for r in factors.users.select("features").limit(5).collect()} == {16}

    as_of = dt.datetime.combine(RUN_DATE, dt.time(), tzinfo=dt.UTC)
    before = S.history(lake.read(C.SILVER_EVENTS), as_of)
    users = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE)).select(C.USER_ID)
    users = users.distinct().orderBy(C.USER_ID).limit(60)
    refit = S.fit_als(S.interactions(before), S.AlsParams(**json.loads(params)))
    got = {r.user_id: r["items"] for r in O.als_lists(factors, before, users, 10).collect()}
    want = {r.user_id: r["items"] for r in O.als_lists(refit, before, users, 10).collect()}
    assert len(got) > 30 and got == want

    other = RUN_DATE - dt.timedelta(days=1)
    assert load_factors(lake, other) is None
    _f, model = day_factors(lake, S.interactions(before), other, S.AlsParams(rank=4, max_iter=2))
    assert model == {"model": "fitted", "params": {**json.loads(params), "rank": 4, "max_iter": 2}}


def test_the_fallback_lists_rebuilt_from_stored_candidates_equal_the_published_ones(
    report, spark, synthetic_lake
):
    """evaluate's fallback_ranker lists come from the run's stored candidates, the events before
    it and the job's re-rank: for a run the fallback ranker published, they are those lists."""
    from recpipe.scoring.run import stored_lists
    from recpipe.scoring.scorers import POPULARITY

    lake, _rep = report
    cfg, _lake, _raw, _manifest = synthetic_lake
    cols = ["user_id", "rank", "item_id", "score", "propensity", "reason", "reason_detail"]
    day = lake.read("gold.recommendations").where(F.col("run_date") == F.lit(RUN_DATE))
    assert day.where(F.col("model_version").isNotNull()).count() == 0  # the fallback ranker's
    pub = day.select(*cols)
    again = stored_lists(cfg, lake, RUN_DATE, POPULARITY).select(*cols)
    a = pub.toPandas().sort_values(["user_id", "rank"]).reset_index(drop=True)
    b = again.toPandas().sort_values(["user_id", "rank"]).reset_index(drop=True)
    assert len(a) > 0
    pd_testing.assert_frame_equal(a, b)
