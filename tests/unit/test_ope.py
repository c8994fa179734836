"""Off-policy evaluation: IPS / SNIPS / DR against a synthetic bandit with known truth, input validation,
and the Open Bandit Dataset sample (skipped when the shared data folder is absent)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recpipe.evaluation.ope import (
    Estimate,
    bootstrap_ci,
    doubly_robust,
    effective_sample_size,
    evaluate_policy,
    ips,
    snips,
)
from tests.support.open_bandit import load_open_bandit

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------------------------------------------------------
# synthetic contextual bandit with known truth

N_CONTEXTS, N_ACTIONS = 5, 10


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Bandit:
    """Uniform contexts; per-(context, action) click rate ``q``; softmax logging and target policies."""

    def __init__(self, seed: int = 7):
        rng = np.random.default_rng(seed)
        self.q = rng.uniform(0.02, 0.30, size=(N_CONTEXTS, N_ACTIONS))
        self.pi0 = _softmax(
            rng.normal(0.0, 0.7, size=(N_CONTEXTS, N_ACTIONS))
        )  # logging: non-uniform softmax
        self.pie = _softmax(
            4.0 * self.q / self.q.std()
        )  # target: prefers high click rate, differs from logging
        # reward model for DR: biased, noisy version of q
        self.q_hat = np.clip(self.q + rng.normal(0.01, 0.03, size=self.q.shape), 0.0, 1.0)

    @property
    def true_value(self) -> float:
        return float(np.mean(np.sum(self.pie * self.q, axis=1)))

    def log(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        x = rng.integers(0, N_CONTEXTS, size=n)
        cdf = np.cumsum(self.pi0[x], axis=1)
        a = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), N_ACTIONS - 1)
        r = (rng.random(n) < self.q[x, a]).astype(float)
        return {
            "rewards": r,
            "logging_propensity": self.pi0[x, a],
            "target_propensity": self.pie[x, a],
            "reward_hat_logged": self.q_hat[x, a],
            "reward_hat_target": np.sum(self.pie[x] * self.q_hat[x], axis=1),
        }


@pytest.fixture(scope="module")
def bandit() -> Bandit:
    return Bandit()


@pytest.fixture(scope="module")
def big_log(bandit) -> dict[str, np.ndarray]:
    return bandit.log(200_000, np.random.default_rng(20240601))


def test_setup_is_off_policy(bandit):
    # the target really is a different policy with a different value, and logging covers every action
    on_policy = float(np.mean(np.sum(bandit.pi0 * bandit.q, axis=1)))
    assert abs(bandit.true_value - on_policy) > 0.02
    assert bandit.pi0.min() > 0.01


def test_estimates_contain_truth_on_large_sample(bandit, big_log):
    res = evaluate_policy(**big_log)
    assert set(res) == {"ips", "snips", "dr"}
    truth = bandit.true_value
    for name, est in res.items():
        assert isinstance(est, Estimate)
        assert est.n == 200_000
        assert est.ci_low < est.value < est.ci_high
        assert est.contains(truth), f"{name}: {est} does not contain {truth}"
        assert abs(est.value - truth) < 0.005
    w = big_log["target_propensity"] / big_log["logging_propensity"]
    assert res["ips"].effective_sample_size == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert 0 < res["ips"].effective_sample_size < 200_000
    # a decent reward model shrinks the interval
    width = {k: e.ci_high - e.ci_low for k, e in res.items()}
    assert width["dr"] < width["ips"]


def test_ci_coverage_near_nominal(bandit):
    rng = np.random.default_rng(12345)
    truth = bandit.true_value
    reps = 200
    hits = {"ips": 0, "snips": 0, "dr": 0}
    for _ in range(reps):
        for name, est in evaluate_policy(**bandit.log(2_000, rng)).items():
            hits[name] += est.contains(truth)
    coverage = {k: v / reps for k, v in hits.items()}
    for name in ("ips", "snips"):
        assert 0.90 <= coverage[name] <= 0.99, coverage
    assert 0.88 <= coverage["dr"] <= 0.995, coverage


def test_on_policy_reduces_to_sample_mean():
    rng = np.random.default_rng(0)
    r = (rng.random(1_000) < 0.1).astype(float)
    p = rng.uniform(0.05, 1.0, size=1_000)
    for fn in (ips, snips):
        est = fn(r, p, p)
        assert est.value == pytest.approx(r.mean())
        assert est.effective_sample_size == pytest.approx(1_000)
        half = 1.959963984540054 * r.std(ddof=1) / math.sqrt(1_000)
        assert est.ci_low == pytest.approx(r.mean() - half)
        assert est.ci_high == pytest.approx(r.mean() + half)
    # DR with a constant model and w == 1 is also the sample mean
    dr = doubly_robust(r, p, p, np.full(1_000, 0.3), np.full(1_000, 0.3))
    assert dr.value == pytest.approx(r.mean())


def test_alpha_changes_width_and_to_dict():
    rng = np.random.default_rng(1)
    r = (rng.random(500) < 0.2).astype(float)
    p0 = np.full(500, 0.25)
    pe = rng.choice([0.0, 0.5], size=500)
    e95, e99 = ips(r, p0, pe), ips(r, p0, pe, alpha=0.01)
    assert e99.ci_high - e99.ci_low > e95.ci_high - e95.ci_low
    d = e95.to_dict()
    assert d == {
        "estimator": "ips",
        "value": e95.value,
        "ci_low": e95.ci_low,
        "ci_high": e95.ci_high,
        "n": 500,
        "effective_sample_size": e95.effective_sample_size,
    }


def test_bootstrap_ci_deterministic_and_close_to_analytic(bandit):
    log = bandit.log(3_000, np.random.default_rng(99))
    args = (log["rewards"], log["logging_propensity"], log["target_propensity"])
    b1 = bootstrap_ci(lambda *a: snips(*a).value, *args, n_boot=300, seed=5)
    b2 = bootstrap_ci(lambda *a: snips(*a).value, *args, n_boot=300, seed=5)
    b3 = bootstrap_ci(lambda *a: snips(*a).value, *args, n_boot=300, seed=6)
    assert b1 == b2
    assert b1 != b3
    delta = snips(*args)
    assert b1[0] == pytest.approx(delta.ci_low, abs=0.01)
    assert b1[1] == pytest.approx(delta.ci_high, abs=0.01)
    # the estimator option gives the same numbers
    boot = snips(*args, ci="bootstrap", n_boot=300, seed=5)
    assert (boot.ci_low, boot.ci_high) == b1
    assert boot.value == delta.value
    # fn may return an Estimate
    assert bootstrap_ci(lambda *a: ips(*a), *args, n_boot=50, seed=1) == bootstrap_ci(
        lambda *a: ips(*a).value, *args, n_boot=50, seed=1
    )


def test_degenerate_cases():
    r = np.array([1.0, 0.0, 1.0])
    p0 = np.array([0.5, 0.5, 0.5])
    zero = np.zeros(3)
    assert ips(r, p0, zero).value == 0.0
    s = snips(r, p0, zero)
    assert math.isnan(s.value) and s.effective_sample_size == 0.0
    one = ips([1.0], [0.5], [0.5])
    assert one.value == 1.0 and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    assert effective_sample_size([0.0, 0.0]) == 0.0
    assert effective_sample_size([2.0, 2.0, 2.0]) == pytest.approx(3.0)


# ----------------------------------------------------------------------------------------------------------------
# input validation

GOOD = {
    "rewards": [1.0, 0.0, 1.0],
    "logging_propensity": [0.5, 0.2, 1.0],
    "target_propensity": [0.0, 1.0, 0.5],
}


@pytest.mark.parametrize(
    "override, match",
    [
        ({"logging_propensity": [0.5, 0.0, 1.0]}, r"logging_propensity\[1\] = 0\.0 is outside \(0, 1\]"),
        ({"logging_propensity": [0.5, 0.2, -0.1]}, r"logging_propensity\[2\]"),
        ({"logging_propensity": [1.5, 0.2, 1.0]}, r"logging_propensity\[0\] = 1\.5"),
        ({"target_propensity": [0.0, 1.01, 0.5]}, r"target_propensity\[1\] = 1\.01 is outside \[0, 1\]"),
        ({"target_propensity": [0.0, -0.5, 0.5]}, r"target_propensity\[1\]"),
        ({"rewards": [1.0, float("nan"), 0.0]}, r"rewards\[1\] is nan"),
        ({"logging_propensity": [0.5, 0.2, float("nan")]}, r"logging_propensity\[2\] is nan"),
        ({"target_propensity": [float("inf"), 1.0, 0.5]}, r"target_propensity\[0\] is inf"),
        ({"target_propensity": [0.0, 1.0]}, r"length mismatch: target_propensity has 2 rows, rewards has 3"),
        ({"logging_propensity": [0.5, 0.2, 1.0, 1.0]}, r"length mismatch: logging_propensity has 4"),
        ({"rewards": [], "logging_propensity": [], "target_propensity": []}, r"rewards is empty"),
        ({"rewards": [[1.0], [0.0], [1.0]]}, r"rewards must be 1-d"),
        ({"rewards": ["a", "b", "c"]}, r"rewards must be a sequence of numbers"),
    ],
)
@pytest.mark.parametrize("fn", [ips, snips, evaluate_policy])
def test_validation_errors(fn, override, match):
    with pytest.raises(ValueError, match=match):
        fn(**{**GOOD, **override})


def test_validation_errors_dr_and_options():
    with pytest.raises(ValueError, match=r"reward_hat_logged\[1\] is nan"):
        doubly_robust(**GOOD, reward_hat_logged=[0.1, float("nan"), 0.1], reward_hat_target=[0.1] * 3)
    with pytest.raises(ValueError, match=r"length mismatch: reward_hat_target has 2 rows"):
        doubly_robust(**GOOD, reward_hat_logged=[0.1] * 3, reward_hat_target=[0.1] * 2)
    with pytest.raises(ValueError, match=r"reward_hat_target is missing"):
        evaluate_policy(**GOOD, reward_hat_logged=[0.1] * 3)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        ips(**GOOD, alpha=1.5)
    with pytest.raises(ValueError, match=r"ci must be one of"):
        ips(**GOOD, ci="wald")
    with pytest.raises(ValueError, match=r"n_boot must be a positive integer"):
        bootstrap_ci(np.mean, [1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match=r"length mismatch: bootstrap_ci array 1 has 1 rows"):
        bootstrap_ci(lambda a, b: 0.0, [1.0, 2.0], [1.0])


# ----------------------------------------------------------------------------------------------------------------
# Open Bandit Dataset sample (uniform-random logging over 80 items x 3 positions)


def _shared_data() -> Path:
    env = os.environ.get("RECPIPE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


OBD_FILE = _shared_data() / "open_bandit" / "random_all.csv"
needs_obd = pytest.mark.skipif(
    not OBD_FILE.is_file(),
    reason=f"Open Bandit sample not found at {OBD_FILE} (research-licensed shared data; set RECPIPE_SHARED_DATA)",
)


@pytest.fixture(scope="module")
def obd() -> pd.DataFrame:
    return load_open_bandit(OBD_FILE)


@needs_obd
def test_open_bandit_loader(obd):
    assert list(obd.columns[:5]) == ["ts", "item_id", "position", "click", "propensity"]
    assert str(obd["ts"].dt.tz) == "UTC"
    assert obd["item_id"].dtype == np.int64 and obd["position"].dtype == np.int64
    assert obd["click"].dtype == np.int64 and obd["propensity"].dtype == np.float64
    assert {f"user_feature_{i}" for i in range(4)} <= set(obd.columns)
    assert sum(c.startswith("user-item_affinity_") for c in obd.columns) == 80
    assert not any(str(c).startswith("Unnamed") for c in obd.columns)
    assert len(obd) == 10_000
    assert set(obd["position"]) == {1, 2, 3}
    assert obd["item_id"].nunique() == 80
    # uniform-random logging: per-slot probability of the logged item is 1/80 in every row
    assert np.allclose(obd["propensity"], 1 / 80)


def test_open_bandit_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="random_all.csv"):
        load_open_bandit(tmp_path)
    f = tmp_path / "random_all.csv"
    f.write_text(",timestamp,item_id,position,click\n0,2019-11-24 00:00:34+00:00,1,1,0\n")
    with pytest.raises(ValueError, match=r"random_all\.csv: required column\(s\) missing: propensity_score"):
        load_open_bandit(f)
    f.write_text(",timestamp,item_id,position,click,propensity_score\n0,2019-11-24 00:00:34+00:00,1,1,0,0\n")
    with pytest.raises(ValueError, match=r"column 'propensity_score' must be in \(0, 1\], row 0"):
        load_open_bandit(tmp_path)
    f.write_text(
        ",timestamp,item_id,position,click,propensity_score\n0,2019-11-24 00:00:34+00:00,1,1,0,0.5\n"
    )
    assert load_open_bandit(tmp_path)["propensity"].tolist() == [0.5]


@needs_obd
def test_open_bandit_logging_policy_value(obd):
    r, p = obd["click"].to_numpy(), obd["propensity"].to_numpy()
    observed = r.mean()
    res = evaluate_policy(r, p, p)
    for est in res.values():
        assert est.contains(observed), est
        assert est.value == pytest.approx(observed)
        assert est.effective_sample_size == pytest.approx(len(obd))


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _greedy_per_position(train: pd.DataFrame) -> dict[int, int]:
    """Item with the highest training CTR per position (ties: more impressions, then lower item id)."""
    g = train.groupby(["position", "item_id"])["click"].agg(["sum", "count"]).reset_index()
    g["ctr"] = g["sum"] / g["count"]
    g = g.sort_values(["position", "ctr", "count", "item_id"], ascending=[True, False, False, True])
    best = g.groupby("position").head(1)
    return dict(zip(best["position"].astype(int), best["item_id"].astype(int)))


@needs_obd
def test_open_bandit_greedy_target_policy(obd):
    df = obd.sort_values("ts", kind="stable").reset_index(drop=True)
    half = len(df) // 2
    train, test = df.iloc[:half], df.iloc[half:]
    choice = _greedy_per_position(train)
    assert set(choice) == {1, 2, 3}

    chosen = test["position"].map(choice).to_numpy()
    target = (test["item_id"].to_numpy() == chosen).astype(float)  # deterministic target policy
    matched = target == 1.0
    assert matched.sum() > 0
    # logging is uniform, so rows where the logged item equals the target's choice are an on-policy sample
    on_policy_ctr = test["click"].to_numpy()[matched].mean()

    # DR reward model: training CTR per item (pooled over positions), shrunk to the overall training CTR
    prior, strength = train["click"].mean(), 50.0
    g = train.groupby("item_id")["click"].agg(["sum", "count"])
    q = ((g["sum"] + strength * prior) / (g["count"] + strength)).reindex(range(80), fill_value=prior)
    q_logged = q.to_numpy()[test["item_id"].to_numpy()]
    q_target = q.to_numpy()[chosen]

    res = evaluate_policy(test["click"], test["propensity"], target, q_logged, q_target)
    for est in res.values():
        assert est.effective_sample_size == pytest.approx(matched.sum())
    for name in ("ips", "snips"):
        assert res[name].contains(on_policy_ctr), (res[name], on_policy_ctr)
    # DR borrows strength from the reward model, so its value differs from the matched-rows mean (which here is
    # 0 clicks in ~50 rows, itself very uncertain); require its CI to overlap the Wilson 95% CI of that mean.
    lo, hi = _wilson(int(test["click"].to_numpy()[matched].sum()), int(matched.sum()))
    assert res["dr"].ci_low <= hi and lo <= res["dr"].ci_high, (res["dr"], (lo, hi))
    # with uniform logging and a deterministic target, SNIPS is exactly the matched-rows click rate
    assert res["snips"].value == pytest.approx(on_policy_ctr)
