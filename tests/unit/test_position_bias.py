"""train.position_bias (recpipe.model.position): the spec each mode trains and serves with, the
examination curve fitted from logged impressions with their propensities, and the IPW labels."""

from __future__ import annotations

import numpy as np
import pytest

from recpipe.model import position as P
from tests.conftest import REPO
from tests.support.model_examples import synthetic_spec

pytestmark = pytest.mark.unit

BETA = 0.8


def _confounded_log(n: int = 200_000, slots: int = 10, items: int = 50, seed: int = 3):
    """A logging policy that puts relevant items on top: slot k draws item i with probability
    q_k(i) ~ exp(s_k * relevance_i), s_k falling with k (exact propensities logged); a click
    happens with probability relevance_i * (1 + k) ** -BETA."""
    rng = np.random.default_rng(seed)
    rel = rng.uniform(0.02, 0.3, items)
    k = rng.integers(0, slots, n)
    sharp = np.linspace(20.0, 0.0, slots)
    q = np.exp(sharp[:, None] * rel[None, :])
    q /= q.sum(axis=1, keepdims=True)
    cum = q.cumsum(axis=1)
    i = np.minimum((rng.random(n)[:, None] > cum[k]).sum(axis=1), items - 1)
    click = (rng.random(n) < rel[i] * (1.0 + k) ** -BETA).astype(np.int32)
    return k, i, click, q[k, i], rel


def test_spec_keeps_position_only_for_the_feature_mode():
    spec = synthetic_spec()
    assert "position" in spec.columns
    feat = P.spec_for_mode(spec, "feature")
    assert feat.columns == spec.columns and feat.metadata["position_bias"] == "feature"
    for mode in ("none", "ipw"):
        s = P.spec_for_mode(spec, mode)
        assert "position" not in s.columns and s.metadata["position_bias"] == mode
        assert [d.name for d in s.dense] == [d.name for d in spec.dense if d.name != "position"]
    with pytest.raises(ValueError, match="train.position_bias must be one of feature, none, ipw, got 'dcn'"):
        P.spec_for_mode(spec, "dcn")


def test_examination_curve_recovers_the_decay_under_a_policy_that_puts_good_items_on_top():
    k, _, click, prop, _ = _confounded_log()
    weighted = P.examination_curve(k, click, prop)
    raw = P.examination_curve(k, click)  # no propensities: the policy's preference looks like decay
    assert weighted["beta"] == pytest.approx(BETA, abs=0.1), weighted
    assert raw["beta"] >= weighted["beta"] + 0.1, raw  # the uncorrected fit is steeper
    assert weighted["impressions"] == len(k) and weighted["clicks"] == int(click.sum())
    assert len(weighted["theta"]) == 10 and weighted["theta"][0] == 1.0
    assert np.all(np.diff(weighted["theta"]) < 0)


def test_examination_curve_ignores_rows_without_a_position_and_handles_no_clicks():
    pos = np.array([0, 1, np.nan, -1, 2], dtype=float)
    out = P.examination_curve(pos, np.zeros(5), max_positions=4)
    assert out == {"beta": None, "theta": [1.0] * 4, "impressions": 3, "clicks": 0}
    empty = P.examination_curve(np.array([np.nan]), np.array([1]))
    assert empty["beta"] is None and empty["impressions"] == 0


def test_ipw_weights_weigh_clicks_by_inverse_theta_clipped_and_leave_the_rest():
    theta = [1.0, 0.5, 0.25, 0.05]
    y = np.array([[1], [1], [0], [1], [1], [1]], dtype=np.float32)
    pos = np.array([0, 1, 2, 3, np.nan, 9], dtype=float)
    w = P.ipw_weights(y, pos, theta, clip=10.0)
    assert w.dtype == np.float32 and w.shape == (6,)
    # slot 3's 1/theta = 20 is clipped at 10; a non-click, no position, past the curve: 1
    assert w.tolist() == [1.0, 2.0, 1.0, 10.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="ipw_clip must be >= 1"):
        P.ipw_weights(y, pos, theta, clip=0.5)


def test_ipw_weighted_loss_targets_the_top_slot_click_rate_per_item():
    # What the weighted log loss converges to per item, sum(w c) / (sum(w c) + sum(1 - c)), is
    # close to the item's click probability in slot 0; its raw click rate (any slots) is not.
    k, i, click, prop, rel = _confounded_log(n=400_000)
    curve = P.examination_curve(k, click, prop)
    w = P.ipw_weights(click, k, curve["theta"], clip=100.0)
    pos_mass = np.bincount(i, weights=w * click)
    neg_mass = np.bincount(i, weights=1.0 - click)
    target = pos_mass / np.maximum(pos_mass + neg_mass, 1e-12)
    raw = np.bincount(i, weights=click) / np.maximum(np.bincount(i), 1)
    seen = np.bincount(i) > 2_000
    err_ipw = np.abs(target[seen] - rel[seen]).mean()
    err_raw = np.abs(raw[seen] - rel[seen]).mean()
    assert err_ipw < 0.02, err_ipw
    assert err_raw > 3 * err_ipw, (err_raw, err_ipw)


def test_users_who_click_most_of_what_they_see_are_left_out_of_the_curve():
    users = np.array(["bot"] * 20 + ["a"] * 20 + ["b"] * 5)
    label = np.r_[np.ones(18), np.zeros(2), np.ones(3), np.zeros(17), np.ones(5)]
    bots = P.likely_bots(users, label)
    # "bot" clicks 90% of 20; "b" clicks all of 5 (too few rows to tell); "a" 15%
    assert bots.tolist() == [True] * 20 + [False] * 25
    assert P.likely_bots(np.array([], dtype=object), np.array([])).shape == (0,)


def test_position_bias_config_default_and_bad_values():
    from recpipe.config import ConfigError, load_config

    tc = load_config(REPO / "conf/local.yaml").train
    assert (tc.position_bias, tc.ipw_clip) == ("feature", 10.0)
    tc = load_config(REPO / "conf/local.yaml", ["train.position_bias=ipw", "train.ipw_clip=5"]).train
    assert (tc.position_bias, tc.ipw_clip) == ("ipw", 5.0)
    with pytest.raises(ConfigError, match="train.position_bias"):
        load_config(REPO / "conf/local.yaml", ["train.position_bias=propensity"])
    with pytest.raises(ConfigError, match="train.ipw_clip"):
        load_config(REPO / "conf/local.yaml", ["train.ipw_clip=0.5"])


def test_position_bias_is_a_fingerprinted_training_parameter():
    from recpipe.config import load_config
    from recpipe.model.train import TRAIN_PARAM_KEYS
    from recpipe.stages.base import config_part

    assert {"position_bias", "ipw_clip"} <= set(TRAIN_PARAM_KEYS)
    part = config_part(load_config(REPO / "conf/local.yaml"), "train")
    assert part["position_bias"] == "feature" and part["ipw_clip"] == 10.0
    for override in ("train.position_bias=none", "train.ipw_clip=20"):
        assert config_part(load_config(REPO / "conf/local.yaml", [override]), "train") != part
