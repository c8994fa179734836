"""Calibration of the CTR model: expected calibration error, Brier score and a per-decile table.

Exploration and position correction use the model's scores as click probabilities, not only as a
ranking, so a model can rank well (AUC) and still mislead them: the reports therefore give, next to
the AUC, how far the predicted probabilities are from the observed click rates.

Binning: equal-count (quantile) bins, ten by default (deciles), with the bin edges and assignment of
:func:`sklearn.calibration.calibration_curve` with ``strategy="quantile"`` (edges at the
percentiles of the predictions, a prediction equal to an inner edge goes to the lower bin). CTR
predictions crowd into a small range, where equal-width bins would leave most bins empty. Equal
predictions always share one bin, so ties (a constant model, a score that takes few values) make
some bins larger than a tenth and leave others empty; empty bins are left out of the table. A
constant prediction ``c`` gives a single bin and ``ECE = |c - observed rate|``.

Only numpy and scikit-learn are used: training calls this on its Horovod rank 0, away from Spark.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DECILES", "calibration_summary"]

DECILES = 10


def calibration_summary(y_true: Any, y_prob: Any, bins: int = DECILES) -> dict[str, Any]:
    """ECE, Brier score and the per-bin table of labels ``y_true`` (0/1) and predictions ``y_prob``.

    Returns ``{"binning", "n", "ece", "brier", "deciles"}``: ``n`` the scored rows; ``ece`` the
    expected calibration error ``sum_b n_b / n * |mean predicted_b - observed_b|`` over ``bins``
    equal-count bins (see the module docstring for ties); ``brier`` the mean squared difference
    between prediction and label; ``deciles`` one row per non-empty bin in increasing prediction
    order: ``bin`` (1-based slot among the ``bins``, so a gap shows bins merged by ties), ``n``,
    ``p_min`` / ``p_max`` (the bin's lowest and highest prediction), ``mean_predicted`` and
    ``observed_ctr`` (the share of positive labels: a CTR where the negatives are logged
    impressions, the sampling's positive rate where they are drawn). The ``n`` of the rows sum to
    ``n``. Empty inputs give ``n = 0``, ``ece`` and ``brier`` None and no rows, not an error.

    Raises ValueError when the inputs differ in length, a label is not 0/1 or a prediction is not
    a probability in [0, 1] (NaN included): such scores have no calibration to report.
    """
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_prob, dtype=np.float64).reshape(-1)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not ((p >= 0.0) & (p <= 1.0)).all():
        raise ValueError("predictions must be probabilities in [0, 1]")
    out: dict[str, Any] = {"binning": f"{bins} equal-count (quantile) bins", "n": len(y)}
    if len(y) == 0:
        return {**out, "ece": None, "brier": None, "deciles": []}
    edges = np.percentile(p, np.linspace(0.0, 100.0, bins + 1))
    slot = np.searchsorted(edges[1:-1], p)  # calibration_curve's assignment (side="left")
    n = np.bincount(slot, minlength=bins)
    sum_p = np.bincount(slot, weights=p, minlength=bins)
    sum_y = np.bincount(slot, weights=y, minlength=bins)
    rows = []
    ece = 0.0
    for b in np.flatnonzero(n):
        in_bin = p[slot == b]
        mean_p, obs = sum_p[b] / n[b], sum_y[b] / n[b]
        ece += n[b] / len(y) * abs(mean_p - obs)
        rows.append(
            {
                "bin": int(b) + 1,
                "n": int(n[b]),
                "p_min": float(in_bin.min()),
                "p_max": float(in_bin.max()),
                "mean_predicted": float(mean_p),
                "observed_ctr": float(obs),
            }
        )
    return {**out, "ece": float(ece), "brier": float(brier_score_loss(y, p)), "deciles": rows}
