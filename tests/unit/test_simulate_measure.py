"""The closed loop's arithmetic: arm assignment, online metrics with intervals, the next-day OPE."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recpipe.simulation import measure, serve

pytestmark = pytest.mark.unit


def test_arm_assignment_is_stable_order_free_and_follows_the_shares():
    ids = [f"U{i:07d}" for i in range(20_000)]
    arms = {"recpipe": 0.5, "popularity": 0.25, "random": 0.25}
    a = serve.assign_arms(ids, arms, seed=7)
    # the same user gets the same arm whatever else is assigned with it, and in any order
    rev = serve.assign_arms(ids[::-1], arms, seed=7)[::-1]
    assert (a == rev).all()
    assert serve.assign_arms(ids[123:124], arms, seed=7)[0] == a[123]
    shares = pd.Series(a).value_counts(normalize=True)
    for name, share in arms.items():
        assert abs(shares[name] - share) < 0.015, (name, shares[name])
    # another seed is another experiment: about half the users move
    other = serve.assign_arms(ids, arms, seed=8)
    assert 0.4 < (other != a).mean() < 0.8


def test_random_lists_draw_without_replacement_with_exact_sequential_propensities():
    rng = np.random.default_rng(0)
    allowed = [f"N{i:03d}" for i in range(30)]
    consumed = {"u1": {"N000", "N001", "N002", "N003", "N004"}}
    out = serve.random_lists(["u1", "u2"], allowed, consumed, 10, "run", rng)
    u1 = out[out["user"] == "u1"]
    assert len(u1) == 10 and u1["item_id"].is_unique and not set(u1["item_id"]) & consumed["u1"]
    # 25 eligible items: slot k is one of the 25 - k not shown yet
    assert np.allclose(u1["propensity"], [1 / (25 - k) for k in range(10)])
    u2 = out[out["user"] == "u2"]
    assert np.allclose(u2["propensity"], [1 / (30 - k) for k in range(10)])
    assert list(u2["position"]) == list(range(10))


def test_popularity_lists_skip_consumed_items_in_rank_order():
    out = serve.popularity_lists(["a", "b"], ["x", "y", "z", "w"], {"a": {"y"}}, 2, "run", "popularity")
    assert out[out["user"] == "a"]["item_id"].tolist() == ["x", "z"]
    assert out[out["user"] == "b"]["item_id"].tolist() == ["x", "y"]
    assert (out["propensity"] == 1.0).all() and (out["arm"] == "popularity").all()


def _served(clicks_by_list: dict[str, list[int]], arm: str) -> pd.DataFrame:
    rows = []
    for req, clicks in clicks_by_list.items():
        for pos, c in enumerate(clicks):
            rows.append({"request_id": req, "user": req, "arm": arm, "position": pos, "clicked": bool(c)})
    return pd.DataFrame(rows)


def test_arm_metrics_by_hand():
    imp = _served({"r1": [1, 0, 0, 0], "r2": [0, 0, 0, 0], "r3": [1, 1, 0, 0]}, "recpipe")
    m = measure.arm_metrics(imp)["recpipe"]
    assert (m["impressions"], m["lists"], m["clicks"]) == (12, 3, 3)
    assert m["ctr"] == pytest.approx(0.25)
    assert m["clicks_per_list"] == pytest.approx(1.0)
    # per-list clicks 1, 0, 2: sd 1, so the 95% interval is 1 +- 1.96 / sqrt(3)
    assert m["clicks_per_list_ci_high"] - m["clicks_per_list"] == pytest.approx(
        1.959964 / np.sqrt(3), abs=1e-4
    )
    # the CTR interval is the same one over 4 impressions per list
    assert m["ci_high"] - m["ctr"] == pytest.approx(1.959964 / np.sqrt(3) / 4, abs=1e-4)


def test_ctr_lift_interval_contains_the_truth_on_simulated_arms():
    rng = np.random.default_rng(3)
    rows = []
    for arm, p in (("recpipe", 0.12), ("popularity", 0.08)):
        for r in range(3000):
            for pos in range(10):
                rows.append((f"{arm}-{r}", arm, pos, rng.random() < p))
    imp = pd.DataFrame(rows, columns=["request_id", "arm", "position", "clicked"])
    lift = measure.ctr_lift(imp, "recpipe", "popularity")
    assert lift["ci_low"] < 0.5 < lift["ci_high"]
    assert lift["ci_low"] > 0.3  # 30,000 impressions per arm: the interval excludes zero by far


def test_next_day_ope_of_an_unchanged_policy_is_its_own_clicks_per_list():
    rng = np.random.default_rng(1)
    rows = []
    for u in range(400):
        for pos in range(5):
            rows.append({"user": f"u{u}", "position": pos, "item_id": f"i{u}-{pos}", "propensity": 0.9})
    logged = pd.DataFrame(rows)
    logged["clicked"] = rng.random(len(logged)) < 0.2
    out = measure.next_day_ope(logged, logged.drop(columns="clicked"))
    assert out["value"] == pytest.approx(logged.groupby("user")["clicked"].sum().mean(), abs=1e-4)
    assert out["ci_low"] < out["value"] < out["ci_high"]
    assert out["matched_slot_share"] == 1.0 and out["slots_without_overlap"] == 0
    # a target that keeps no logged item has no estimate in any slot
    moved = logged.drop(columns="clicked").assign(item_id=lambda d: d["item_id"] + "-new")
    none = measure.next_day_ope(logged, moved)
    assert none["slots_without_overlap"] == 5 and none["value"] == 0 and none["ips"]["value"] == 0


def _pbm_world(users: int, beta: float, seed: int):
    """Lists of 10 slots, true P(click) = theta_k * q with theta_k = (1 + k) ** -beta."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for k in range(10):
            rows.append({"user": f"u{u}", "position": k, "item_id": f"i{u}-{k}", "q": rng.uniform(0.05, 0.4)})
    df = pd.DataFrame(rows)
    df["p"] = (1.0 + df["position"]) ** -beta * df["q"]
    df["clicked"] = rng.random(len(df)) < df["p"]
    return df


def test_position_curve_recovers_the_examination_decay_of_a_random_arm():
    df = _pbm_world(4000, 0.8, seed=2).assign(arm="random")
    curve = measure.position_curve(df, max_positions=10)
    assert abs(curve["beta"] - 0.8) < 0.1
    assert curve["theta"][0] == 1.0 and len(curve["theta"]) == 10
    # no randomized arm, or no click: no curve (theta 1 everywhere) rather than a guess
    assert measure.position_curve(df.assign(arm="recpipe"))["beta"] is None


def test_doubly_robust_next_day_estimate_corrects_a_biased_reward_model_where_logs_overlap():
    df = _pbm_world(3000, 0.8, seed=4)
    truth = df.groupby("user")["p"].sum().mean()
    theta = list((1.0 + np.arange(10)) ** -0.8)
    logged = df.assign(propensity=1.0)[["user", "position", "item_id", "propensity", "clicked"]]
    exact = df.assign(propensity=1.0, score=df["q"])[["user", "position", "item_id", "propensity", "score"]]
    est = measure.next_day_dr(logged, exact, theta)
    assert est["ci_low"] <= truth <= est["ci_high"] and est["matched_slot_share"] == 1.0
    # scores twice too high: the direct method is off by 100%, the correction brings it back
    biased = exact.assign(score=exact["score"] * 2)
    est = measure.next_day_dr(logged, biased, theta)
    assert est["direct_method"] == pytest.approx(2 * truth, rel=0.05)
    assert est["ci_low"] <= truth <= est["ci_high"]
    # a target of items the logs never showed: only the direct method is left
    unseen = exact.assign(item_id=exact["item_id"] + "-new")
    est = measure.next_day_dr(logged, unseen, theta)
    assert est["matched_slot_share"] == 0 and est["value"] == pytest.approx(est["direct_method"])
    assert est["value"] == pytest.approx(truth, rel=0.02)
