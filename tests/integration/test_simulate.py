"""`recpipe simulate`: two simulated days of the closed loop on a tiny synthetic world, run twice.

Four days of generated history (2026-10-01..04); the lists of 10-05 come from the daily plan of
10-05; days 10-05 and 10-06 are served (recpipe / popularity / random arms), each followed by the
daily plan of the next day. Training every 7 days keeps it to one one-epoch model. Seven daily
plans in all (~6 min on 2 cores): an e2e test (`make test-e2e`, run by CI), not in `make test`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.datasets.synthetic import load_world
from recpipe.events.transforms import pseudonymize_py
from recpipe.lake import open_lake
from recpipe.simulation import serve
from recpipe.simulation.loop import SimulationError, run_simulation
from tests.conftest import make_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]

DAYS = [dt.date(2026, 10, 5), dt.date(2026, 10, 6)]
ARMS = {"recpipe": 0.4, "previous": 0.2, "popularity": 0.2, "random": 0.2}


def _cfg(base: Path, **simulate):
    return make_config(
        base / "lake",
        base / "raw",
        data={
            "source": "synthetic",
            "synthetic": {"events": 5000, "seed": 5, "start": "2026-10-01", "days": 4},
        },
        examples={"window_days": 3},
        train={"every_days": 1, "epochs": 1, "num_proc": 1, "batch_size": 256},
        simulate={
            "users_per_day": 160,
            "new_items_per_day": 10,
            "arms": ARMS,
            **simulate,
        },
    )


@pytest.fixture(scope="module")
def simulated(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("simulate")
    cfg = _cfg(base)
    first = run_simulation(cfg, spark, days=2)
    lake = open_lake(cfg, spark)
    versions = {t: lake.version(t) for t in lake.list_tables()}
    raw_files = {p: p.stat().st_mtime_ns for p in (base / "raw" / "events").rglob("*.jsonl")}
    second = run_simulation(cfg, spark, days=2)
    return cfg, lake, first, second, versions, raw_files, base


def _raw_events(base: Path, day: dt.date) -> pd.DataFrame:
    files = sorted((base / "raw" / "events" / day.isoformat()).glob("*.jsonl"))
    return pd.concat(
        [pd.read_json(f, lines=True, dtype={"position": "Int64"}) for f in files], ignore_index=True
    )


def test_the_summary_has_arms_days_and_the_checked_ope(simulated):
    _cfg_, _lake, out, _second, _v, _f, _base = simulated
    assert out["job"] == "simulate" and out["days_simulated"] == 2 and out["start"] == "2026-10-05"
    for summary in [out["arms"], *(d["arms"] for d in out["days"])]:
        assert set(summary) == set(ARMS)
        for m in summary.values():
            assert {"ctr", "ci_low", "ci_high", "clicks_per_list", "impressions"} <= set(m)
            assert m["ci_low"] <= m["ctr"] <= m["ci_high"]
            assert m["impressions"] > 0
    assert [d["date"] for d in out["days"]] == ["2026-10-05", "2026-10-06"]
    # each day ran the next day's plan: lists published for the next day
    for d in out["days"]:
        assert d["pipeline_next_day"]["recommend"] == "ok", d["pipeline_next_day"]
        assert "evaluate" not in d["pipeline_next_day"]
    # the estimate made on 10-05 for the lists of 10-06 met their online value on 10-06
    ope = out["days"][0]["ope"]
    assert ope["estimator"] == "dr_position_based" and ope["users"] > 0
    assert ope["snips_per_slot"]["users"] == ope["users"]
    assert ope["position_curve"]["impressions"] == out["days"][0]["arms"]["random"]["impressions"]
    assert "observed" in ope and ope["ci_contains_observed"] == (
        ope["ci_low"] <= ope["observed"] <= ope["ci_high"]
    )
    assert "observed" not in out["days"][1]["ope"]  # 10-07 was not served
    assert out["ope_summary"]["days_checked"] == 1
    lift = out["lift_over_popularity"]
    assert lift["ci_low"] <= lift["lift"] <= lift["ci_high"]
    retrain = out["lift_over_previous"]
    assert retrain["baseline"] == "previous" and retrain["ci_low"] <= retrain["lift"] <= retrain["ci_high"]
    # the run's report: the JSON (the summary itself) and its page
    stored = json.loads(Path(out["report_path"]).read_text())
    assert stored["arms"] == out["arms"] and [d["arms"] for d in stored["days"]] == [
        d["arms"] for d in out["days"]
    ]
    assert Path(out["report_html"]).name == "simulation-2026-10-05.html"
    assert "<img" in Path(out["report_html"]).read_text()


def test_online_metrics_equal_what_ingest_stored_from_the_served_logs(simulated):
    _cfg_, lake, out, _second, _v, _f, _base = simulated
    ev = lake.read(C.SILVER_EVENTS).where(F.col(C.EVENT_DATE).isin(DAYS) & F.col(C.ARM).isNotNull())
    counts = {
        (str(r[C.EVENT_DATE]), r[C.ARM], r[C.EVENT_TYPE]): r["n"]
        for r in ev.groupBy(C.EVENT_DATE, C.ARM, C.EVENT_TYPE).agg(F.count("*").alias("n")).collect()
    }
    for day in out["days"]:
        for arm, m in day["arms"].items():
            assert counts[(day["date"], arm, "impression")] == m["impressions"], (day["date"], arm)
            assert counts.get((day["date"], arm, "click"), 0) == m["clicks"], (day["date"], arm)


def test_a_click_is_only_ever_attributed_to_a_served_impression(simulated):
    _cfg_, lake, _out, _second, _v, _f, base = simulated
    for day in DAYS:
        raw = _raw_events(base, day)
        imp = raw[raw["event_type"] == "impression"]
        assert imp["list_run_id"].notna().all() and imp["propensity"].between(0, 1, inclusive="right").all()
        keys = ["user_id", "item_id", "request_id", "list_run_id", "arm"]
        follow = raw[raw["event_type"] != "impression"].merge(imp[keys], on=keys, how="left", indicator=True)
        assert len(follow) and (follow["_merge"] == "both").all()
    # in the lake: every served click's (user, request, item) has a served impression
    ev = lake.read(C.SILVER_EVENTS).where(F.col(C.LIST_RUN_ID).isNotNull())
    clicks = ev.where(F.col(C.EVENT_TYPE) == "click").select(C.USER_ID, C.REQUEST_ID, C.ITEM_ID)
    imps = ev.where(F.col(C.EVENT_TYPE) == "impression").select(C.USER_ID, C.REQUEST_ID, C.ITEM_ID)
    assert clicks.count() > 0
    assert clicks.join(imps, [C.USER_ID, C.REQUEST_ID, C.ITEM_ID], "left_anti").count() == 0


def test_each_user_stays_in_one_arm_and_recpipe_serves_the_published_lists(simulated):
    cfg, lake, _out, _second, _v, _f, base = simulated
    served = pd.concat(
        [pd.read_parquet(base / "raw" / "_simulation" / f"served-{d}.parquet").assign(day=d) for d in DAYS]
    )
    arms = served.groupby("user")["arm"].nunique()
    assert (arms == 1).all()
    # users who came back on the second day: the one-arm check above spans days for them
    both = set(served[served["day"] == DAYS[0]]["user"]) & set(served[served["day"] == DAYS[1]]["user"])
    assert len(both) > 10
    first_arm = served.drop_duplicates("user").set_index("user")["arm"]
    assert (
        serve.assign_arms(first_arm.index.tolist(), cfg.simulate.arms, cfg.simulate.seed) == first_arm
    ).all()
    key = cfg.pseudonym_key()
    for day in DAYS:
        rec = served[(served["day"] == day) & (served["arm"] == "recpipe") & ~served["fallback"]]
        assert len(rec)
        pub = (
            lake.read(C.GOLD_RECOMMENDATIONS)
            .where(F.col(C.RUN_DATE) == F.lit(day))
            .select(C.USER_ID, C.RANK, C.ITEM_ID, C.PROPENSITY, C.RUN_ID)
            .toPandas()
        )
        pseudo = {pseudonymize_py(u, key): u for u in rec["user"].unique()}
        pub = pub[pub[C.USER_ID].isin(pseudo)]
        pub = pub.assign(user=pub[C.USER_ID].map(pseudo))
        got = rec.set_index(["user", "position"]).sort_index()
        want = pub.assign(position=pub[C.RANK] - 1).set_index(["user", "position"]).sort_index()
        assert got.index.equals(want.index)
        assert (got["item_id"] == want[C.ITEM_ID]).all()
        assert (got["propensity"] == want[C.PROPENSITY]).all()
        assert (got["list_run_id"] == want[C.RUN_ID]).all()


def test_the_previous_arm_is_ranked_by_the_model_promoted_before_the_published_one(simulated):
    cfg, lake, out, _second, _v, _f, base = simulated
    from recpipe.model.registry import read_registry

    promoted = sorted(
        r["model_version"] for r in read_registry(lake) if r["status"] in ("current", "archived")
    )
    assert len(promoted) >= 1
    top_n = cfg.recommend.top_n
    for day in out["days"]:
        published = day["model_version"]
        assert published in promoted
        earlier = [v for v in promoted if v < published]
        assert day["previous_ranker"] == (earlier[-1] if earlier else "popularity"), day
        served = pd.read_parquet(base / "raw" / "_simulation" / f"served-{day['date']}.parquet")
        prev = served[(served["arm"] == "previous") & ~served["fallback"]]
        assert (
            len(prev)
            and prev["list_run_id"].eq(f"simulate-previous-{day['date']}-{day['previous_ranker']}").all()
        )
        # whole lists, each slot once, with the re-ranker's propensities and reasons
        assert prev.groupby("user")["position"].agg(lambda p: sorted(p) == list(range(len(p)))).all()
        assert prev.groupby("user").size().max() == top_n
        assert prev["propensity"].between(0, 1, inclusive="right").all() and prev["reason"].notna().all()
        assert not prev.duplicated(["user", "item_id"]).any()


def test_new_items_arrive_in_the_catalog_and_the_world(simulated):
    cfg, lake, _out, _second, _v, _f, base = simulated
    spec = json.loads((base / "raw" / "_simulation.json").read_text())
    assert spec["days"] == 2 and spec["new_items_per_day"] == 10
    world = load_world(cfg.data.raw_dir)
    new = world.item_ids[-20:]
    stored = {r[0] for r in lake.read(C.SILVER_ITEMS).select(C.ITEM_ID).collect()}
    assert set(new) <= stored
    # published on their simulated day
    pub_days = {dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date() for ms in world.item_pub_ms[-20:]}
    assert pub_days == set(DAYS)
    # the simulated days' new items are recommended from the day after they were published
    recs = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(dt.date(2026, 10, 7)))
    assert recs.where(F.col(C.ITEM_ID).isin(new)).count() > 0
    # interests are the generator's until the simulation starts, then drift
    u = np.flatnonzero(~world.is_bot)[:50]
    cat = np.zeros(len(u), dtype=np.int64)
    start_ms = world.drift_start_ms
    before = world.interest_at(u, cat, np.full(len(u), start_ms - 86_400_000))
    later = world.interest_at(u, cat, np.full(len(u), start_ms + 5 * 86_400_000))
    assert np.allclose(before, world.interest[u, 0])
    assert not np.allclose(later, before)


def test_a_second_run_serves_nothing_again_and_commits_nothing(simulated):
    _cfg_, lake, first, second, versions, raw_files, base = simulated
    assert second["arms"] == first["arms"]
    assert [d["ope"] for d in second["days"]] == [d["ope"] for d in first["days"]]
    # the rerun skips recommend and still names the model behind each day's lists
    versions_by_day = [d["model_version"] for d in first["days"]]
    assert all(versions_by_day) and [d["model_version"] for d in second["days"]] == versions_by_day
    assert {p: p.stat().st_mtime_ns for p in (base / "raw" / "events").rglob("*.jsonl")} == raw_files
    changed = {
        t: (v, lake.version(t)) for t, v in versions.items() if t != "ops.runs" and lake.version(t) != v
    }
    assert not changed


def test_refusals_name_the_problem(simulated, spark, tmp_path):
    cfg, _lake, _out, _second, _v, _f, _base = simulated
    with pytest.raises(SimulationError, match="inside the generated logs"):
        run_simulation(cfg, spark, days=1, start=dt.date(2026, 10, 3))
    with pytest.raises(SimulationError, match="days must be >= 1"):
        run_simulation(cfg, spark, days=0)
    other = make_config(tmp_path / "lake", tmp_path / "raw")
    with pytest.raises(SimulationError, match="needs the synthetic world"):
        run_simulation(other, spark, days=1)
    # another simulation's settings over the same landing folder
    changed = _cfg(Path(cfg.data.raw_dir).parent, drift_per_day=0.5)
    with pytest.raises(SimulationError, match="other settings"):
        run_simulation(changed, spark, days=1)
