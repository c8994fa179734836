"""Calibration of the CTR model's scores: hand-computed ECE and Brier figures, ties, empty input,
and the bins of scikit-learn's quantile calibration curve as the reference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from recpipe.evaluation.calibration import calibration_summary

pytestmark = pytest.mark.unit


def test_calibrated_scores_have_zero_ece():
    # given ten score levels k/10, ten rows each, k of them clicked: every level's rate is its score
    p = np.repeat(np.arange(1, 11) / 10, 10)
    y = np.concatenate([np.r_[np.ones(k), np.zeros(10 - k)] for k in range(1, 11)])
    cal = calibration_summary(y, p)
    # then each level is one decile, on the diagonal
    assert cal["ece"] == pytest.approx(0.0, abs=1e-12)
    assert [(r["bin"], r["n"]) for r in cal["deciles"]] == [(b, 10) for b in range(1, 11)]
    for r, level in zip(cal["deciles"], np.arange(1, 11) / 10, strict=True):
        assert r["mean_predicted"] == pytest.approx(level) == r["observed_ctr"]
        assert r["p_min"] == r["p_max"] == pytest.approx(level)
    # Brier = mean of q (1 - q) over the levels = (5.5 - 3.85) / 10
    assert cal["brier"] == pytest.approx(0.165)
    assert cal["n"] == 100 and cal["binning"] == "10 equal-count (quantile) bins"


def test_miscalibrated_scores_give_the_hand_computed_ece():
    # given two bins of two rows: scores 0.1, 0.2 (one click) and 0.7, 0.9 (two clicks)
    cal = calibration_summary([0, 1, 1, 1], [0.1, 0.2, 0.7, 0.9], bins=2)
    # then ECE = 1/2 |0.15 - 0.5| + 1/2 |0.8 - 1.0| = 0.275
    assert cal["ece"] == pytest.approx(0.275)
    # and Brier = (0.1^2 + 0.8^2 + 0.3^2 + 0.1^2) / 4
    assert cal["brier"] == pytest.approx(0.1875)
    assert cal["deciles"] == [
        {
            "bin": 1,
            "n": 2,
            "p_min": 0.1,
            "p_max": 0.2,
            "mean_predicted": pytest.approx(0.15),
            "observed_ctr": 0.5,
        },
        {
            "bin": 2,
            "n": 2,
            "p_min": 0.7,
            "p_max": 0.9,
            "mean_predicted": pytest.approx(0.8),
            "observed_ctr": 1.0,
        },
    ]


def test_tied_scores_share_a_bin_whatever_the_row_order():
    # given two score values, ten rows each: 0.2 with 4 clicks, 0.6 with 3 clicks
    p = np.repeat([0.2, 0.6], 10)
    y = np.r_[np.ones(4), np.zeros(6), np.ones(3), np.zeros(7)]
    cal = calibration_summary(y, p)
    # then each value fills one bin (the lower one of the deciles it spans) and the others stay empty
    assert [(r["bin"], r["n"], r["observed_ctr"]) for r in cal["deciles"]] == [
        (1, 10, pytest.approx(0.4)),
        (6, 10, pytest.approx(0.3)),
    ]
    # ECE = 1/2 |0.2 - 0.4| + 1/2 |0.6 - 0.3|; Brier = (4 * 0.8^2 + 6 * 0.2^2 + 3 * 0.4^2 + 7 * 0.6^2) / 20
    assert cal["ece"] == pytest.approx(0.25)
    assert cal["brier"] == pytest.approx(0.29)
    # and no row is split by its position among equal scores
    order = np.random.default_rng(0).permutation(len(p))
    shuffled = calibration_summary(y[order], p[order])
    assert shuffled["deciles"] == [
        {**r, "mean_predicted": pytest.approx(r["mean_predicted"])} for r in cal["deciles"]
    ]
    assert shuffled["ece"] == pytest.approx(cal["ece"])


def test_constant_predictions_are_one_bin():
    # given a model that predicts 0.3 for every row, and 2 clicks in 8 rows
    cal = calibration_summary(np.r_[np.ones(2), np.zeros(6)], np.full(8, 0.3))
    # then one bin, ECE = |0.3 - 0.25| and Brier = (2 * 0.7^2 + 6 * 0.3^2) / 8
    assert cal["deciles"] == [
        {
            "bin": 1,
            "n": 8,
            "p_min": 0.3,
            "p_max": 0.3,
            "mean_predicted": pytest.approx(0.3),
            "observed_ctr": 0.25,
        }
    ]
    assert cal["ece"] == pytest.approx(0.05)
    assert cal["brier"] == pytest.approx(0.19)


def test_empty_input_has_no_figures():
    assert calibration_summary([], []) == {
        "binning": "10 equal-count (quantile) bins",
        "n": 0,
        "ece": None,
        "brier": None,
        "deciles": [],
    }


def test_bins_are_those_of_sklearns_quantile_calibration_curve():
    # given scores with ties (rounded to 2 digits) and labels drawn at a lower rate than scored
    rng = np.random.default_rng(7)
    p = np.round(rng.beta(2, 20, 5_000), 2)
    y = (rng.random(5_000) < 0.7 * p).astype(int)
    cal = calibration_summary(y, p)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    # then the non-empty bins are sklearn's, in the same order
    np.testing.assert_allclose([r["observed_ctr"] for r in cal["deciles"]], prob_true)
    np.testing.assert_allclose([r["mean_predicted"] for r in cal["deciles"]], prob_pred)
    # every row is in one bin, bins do not overlap, and ECE is their weighted gap
    assert sum(r["n"] for r in cal["deciles"]) == 5_000
    assert all(a["p_max"] < b["p_min"] for a, b in zip(cal["deciles"], cal["deciles"][1:]))
    gaps = [r["n"] / 5_000 * abs(r["mean_predicted"] - r["observed_ctr"]) for r in cal["deciles"]]
    assert cal["ece"] == pytest.approx(sum(gaps))
    # the over-prediction shows: ECE near 0.3 of the mean score
    assert cal["ece"] == pytest.approx(0.3 * p.mean(), rel=0.25)


def test_distinct_scores_make_ten_equal_bins():
    rng = np.random.default_rng(1)
    cal = calibration_summary(rng.integers(0, 2, 1_000), rng.random(1_000))
    assert [r["n"] for r in cal["deciles"]] == [100] * 10


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.5], "2 labels but 1 predictions"),
        ([0, 2], [0.5, 0.5], "labels must be 0 or 1"),
        ([0, 1], [0.5, 1.2], r"predictions must be probabilities in \[0, 1\]"),
        ([0, 1], [0.5, float("nan")], r"predictions must be probabilities in \[0, 1\]"),
    ],
)
def test_invalid_inputs_raise(y, p, message):
    with pytest.raises(ValueError, match=message):
        calibration_summary(y, p)
