"""Off-policy evaluation (OPE) of a target policy's expected reward from logged bandit feedback.

Every input is one value per *logged* row, i.e. per (context, action) pair that the logging policy actually
chose:

``rewards``
    the observed reward of the logged action (a click in {0, 1}, or any finite real number);
``logging_propensity``
    ``pi_0(a_i | x_i)``, the logging policy's probability of the logged action, in ``(0, 1]``;
``target_propensity``
    ``pi_e(a_i | x_i)``, the target policy's probability of that same logged action, in ``[0, 1]``
    (``0`` is allowed: the target would never take that action);
``reward_hat_logged`` (DR only)
    a reward model's prediction ``q_hat(x_i, a_i)`` for the logged action;
``reward_hat_target`` (DR only)
    the target policy's expected predicted reward ``sum_a pi_e(a | x_i) q_hat(x_i, a)`` in context ``x_i``.

With importance weights ``w_i = pi_e(a_i | x_i) / pi_0(a_i | x_i)`` the estimators are

* IPS:   ``V = mean(w_i r_i)``;
* SNIPS: ``V = sum(w_i r_i) / sum(w_i)`` (self-normalised; biased but consistent, usually lower variance);
* DR:    ``V = mean(reward_hat_target_i + w_i (r_i - reward_hat_logged_i))`` (unbiased if either the
  propensities or the reward model are correct).

Confidence intervals (two-sided, level ``1 - alpha``, z quantile from :class:`statistics.NormalDist`):

* IPS and DR: normal approximation on the i.i.d. per-row terms, ``V +/- z * sd(terms, ddof=1) / sqrt(n)``.
* SNIPS: delta method for the ratio estimator ``mean(w r) / mean(w)``. Its linearisation (influence function)
  gives the per-row terms ``phi_i = w_i (r_i - V) / mean(w)``; the CI is ``V +/- z * sd(phi, ddof=1) / sqrt(n)``.
* Any estimator, optionally (``ci="bootstrap"``): the percentile bootstrap of :func:`bootstrap_ci`, which
  resamples rows jointly with replacement and is deterministic under ``seed``.

The effective sample size reported with every estimate is Kish's ``(sum w)^2 / sum(w^2)`` of the importance
weights (``n`` when the target equals the logging policy; ``0`` when the target gives every logged action zero
probability). With ``n == 1`` the analytic CI is undefined and reported as NaN; SNIPS is undefined (NaN) when
all weights are zero.

Caveat for rare rewards: when the per-row terms do not vary (e.g. no click on any row the target policy gives
positive weight), the normal and delta-method intervals collapse to the point estimate (zero width), and so
does the bootstrap. Such an interval says "not enough data", not "no uncertainty": check the effective sample
size and the number of rewarded rows with positive weight before trusting it.

Only numpy and the standard library are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Estimate",
    "bootstrap_ci",
    "doubly_robust",
    "effective_sample_size",
    "evaluate_policy",
    "ips",
    "snips",
]

_CI_METHODS = ("normal", "bootstrap")
# A validated 1-d float array (rewards, propensities, weights, per-row terms).
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """A point estimate of a policy value with a two-sided ``1 - alpha`` confidence interval."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    effective_sample_size: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the closed interval ``[ci_low, ci_high]``."""
        return bool(self.ci_low <= x <= self.ci_high)


# --------------------------------------------------------------------------------------------------------------
# validation helpers


def _as_1d(name: str, values: npt.ArrayLike, n: int | None = None) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers: {exc}") from None
    if arr.ndim == 0:
        raise ValueError(f"{name} must be a 1-d sequence, got a scalar")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if n is not None and arr.size != n:
        raise ValueError(f"length mismatch: {name} has {arr.size} rows, rewards has {n}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] is {arr[i]!r}: values must be finite (not NaN/inf)")
    return arr


def _check_range(name: str, arr: FloatArray, low: float, high: float, low_open: bool) -> None:
    bad_low = arr <= low if low_open else arr < low
    bad = np.flatnonzero(bad_low | (arr > high))
    if bad.size:
        i = int(bad[0])
        lo = "(" if low_open else "["
        raise ValueError(f"{name}[{i}] = {arr[i]!r} is outside {lo}{low:g}, {high:g}]")


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def _validate(
    rewards: npt.ArrayLike, logging_propensity: npt.ArrayLike, target_propensity: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    r = _as_1d("rewards", rewards)
    n = r.size
    p0 = _as_1d("logging_propensity", logging_propensity, n)
    pe = _as_1d("target_propensity", target_propensity, n)
    _check_range("logging_propensity", p0, 0.0, 1.0, low_open=True)
    _check_range("target_propensity", pe, 0.0, 1.0, low_open=False)
    return r, p0, pe


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def effective_sample_size(weights: npt.ArrayLike) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum(w^2)``; 0.0 when every weight is 0."""
    w = np.asarray(weights, dtype=float)
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def _normal_ci(value: float, terms: FloatArray, alpha: float) -> tuple[float, float]:
    n = terms.size
    if n < 2 or not math.isfinite(value):
        return math.nan, math.nan
    half = _z(alpha) * float(np.std(terms, ddof=1)) / math.sqrt(n)
    return value - half, value + half


# --------------------------------------------------------------------------------------------------------------
# bootstrap


def bootstrap_ci(
    fn: Callable[..., float | Estimate],
    *arrays: npt.ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``fn(*arrays)``.

    Rows are resampled jointly (the same indices for every array) ``n_boot`` times with
    ``numpy.random.default_rng(seed)``, so the result is deterministic for a given ``seed``. ``fn`` may return a
    float or an :class:`Estimate` (its ``value`` is used). Resamples whose statistic is NaN (e.g. SNIPS with all
    weights zero) are dropped; if all are, ``(nan, nan)`` is returned.
    """
    alpha = _check_alpha(alpha)
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if n == 0:
        raise ValueError("bootstrap_ci: arrays are empty")
    for k, a in enumerate(arrs):
        if len(a) != n:
            raise ValueError(f"length mismatch: bootstrap_ci array {k} has {len(a)} rows, array 0 has {n}")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, dtype=float)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        out = fn(*(a[idx] for a in arrs))
        stats[b] = out.value if isinstance(out, Estimate) else float(out)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _point(estimator: str, *arrays: FloatArray) -> float:
    """Point estimate only (used inside the bootstrap, inputs already validated)."""
    if estimator == "ips":
        r, p0, pe = arrays
        return float(np.mean(pe / p0 * r))
    if estimator == "snips":
        r, p0, pe = arrays
        w = pe / p0
        sw = float(np.sum(w))
        return float(np.sum(w * r)) / sw if sw > 0 else math.nan
    r, p0, pe, qlog, qtgt = arrays
    return float(np.mean(qtgt + pe / p0 * (r - qlog)))


def _finish(
    estimator: str,
    value: float,
    terms: FloatArray,
    weights: FloatArray,
    alpha: float,
    ci: str,
    n_boot: int,
    seed: int | None,
    arrays: Sequence[FloatArray],
) -> Estimate:
    if ci == "normal":
        low, high = _normal_ci(value, terms, alpha)
    elif ci == "bootstrap":
        low, high = bootstrap_ci(
            lambda *a: _point(estimator, *a), *arrays, n_boot=n_boot, alpha=alpha, seed=seed
        )
    else:
        raise ValueError(f"ci must be one of {_CI_METHODS}, got {ci!r}")
    return Estimate(
        estimator=estimator,
        value=float(value),
        ci_low=float(low),
        ci_high=float(high),
        n=int(weights.size),
        effective_sample_size=effective_sample_size(weights),
    )


# --------------------------------------------------------------------------------------------------------------
# estimators


def ips(
    rewards: npt.ArrayLike,
    logging_propensity: npt.ArrayLike,
    target_propensity: npt.ArrayLike,
    alpha: float = 0.05,
    *,
    ci: str = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Inverse propensity scoring: ``mean(w_i r_i)``; CI by normal approximation (or ``ci="bootstrap"``)."""
    alpha = _check_alpha(alpha)
    r, p0, pe = _validate(rewards, logging_propensity, target_propensity)
    w = pe / p0
    terms = w * r
    return _finish("ips", float(np.mean(terms)), terms, w, alpha, ci, n_boot, seed, (r, p0, pe))


def snips(
    rewards: npt.ArrayLike,
    logging_propensity: npt.ArrayLike,
    target_propensity: npt.ArrayLike,
    alpha: float = 0.05,
    *,
    ci: str = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``.

    The analytic CI uses the delta method for the ratio of means ``mean(w r) / mean(w)``: the per-row influence
    terms are ``phi_i = w_i (r_i - V) / mean(w)`` and the interval is ``V +/- z * sd(phi) / sqrt(n)``.
    The value is NaN when every weight is zero (the target never takes a logged action).
    """
    alpha = _check_alpha(alpha)
    r, p0, pe = _validate(rewards, logging_propensity, target_propensity)
    w = pe / p0
    w_mean = float(np.mean(w))
    if w_mean <= 0:
        value = math.nan
        terms = np.full_like(w, math.nan)
    else:
        value = float(np.sum(w * r) / np.sum(w))
        terms = w * (r - value) / w_mean
    return _finish("snips", value, terms, w, alpha, ci, n_boot, seed, (r, p0, pe))


def doubly_robust(
    rewards: npt.ArrayLike,
    logging_propensity: npt.ArrayLike,
    target_propensity: npt.ArrayLike,
    reward_hat_logged: npt.ArrayLike,
    reward_hat_target: npt.ArrayLike,
    alpha: float = 0.05,
    *,
    ci: str = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Doubly robust: ``mean(reward_hat_target + w (r - reward_hat_logged))``; normal-approximation CI."""
    alpha = _check_alpha(alpha)
    r, p0, pe = _validate(rewards, logging_propensity, target_propensity)
    qlog = _as_1d("reward_hat_logged", reward_hat_logged, r.size)
    qtgt = _as_1d("reward_hat_target", reward_hat_target, r.size)
    w = pe / p0
    terms = qtgt + w * (r - qlog)
    return _finish("dr", float(np.mean(terms)), terms, w, alpha, ci, n_boot, seed, (r, p0, pe, qlog, qtgt))


def evaluate_policy(
    rewards: npt.ArrayLike,
    logging_propensity: npt.ArrayLike,
    target_propensity: npt.ArrayLike,
    reward_hat_logged: npt.ArrayLike | None = None,
    reward_hat_target: npt.ArrayLike | None = None,
    alpha: float = 0.05,
    *,
    ci: str = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> dict[str, Estimate]:
    """Run IPS and SNIPS, plus DR when both reward-model inputs are given; keys ``"ips"``, ``"snips"``, ``"dr"``."""
    if (reward_hat_logged is None) != (reward_hat_target is None):
        missing = "reward_hat_target" if reward_hat_target is None else "reward_hat_logged"
        raise ValueError(f"doubly robust needs both reward-model inputs; {missing} is missing")
    kw: dict[str, Any] = {"alpha": alpha, "ci": ci, "n_boot": n_boot, "seed": seed}
    out = {
        "ips": ips(rewards, logging_propensity, target_propensity, **kw),
        "snips": snips(rewards, logging_propensity, target_propensity, **kw),
    }
    if reward_hat_logged is not None and reward_hat_target is not None:  # (both or neither: checked above)
        out["dr"] = doubly_robust(
            rewards, logging_propensity, target_propensity, reward_hat_logged, reward_hat_target, **kw
        )
    return out
