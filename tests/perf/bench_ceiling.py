"""History ceiling of the synthetic data (issue #13): the test AUC that a model seeing only each
user's point-in-time history could reach, next to the oracle's (no timed assertions).

On the test rows of ``gold.training_examples`` (the rows the train summary's ``oracle_auc`` uses),
every row is scored with the generator's click model (``recpipe.datasets.synthetic.world``)

    p = clip(0.16 * K * interest[u, cat] * quality * (1 + position)^-0.8 * fresh(age), 0, 0.95)

where quality, position and freshness are known exactly and only the user's interest varies:

- ``oracle``: the true interest (reproduces the train summary's ``oracle_auc``);
- ``history_bayes``: the posterior mean of the interest given the user's own impressions and
  clicks strictly before the example's feature cut-off (``as_of_date`` 00:00 UTC, the cut-off of
  ``recpipe.examples``), under the Dirichlet(0.3) prior and the Bernoulli likelihood of each
  impression; ``history_bayes_predictive``: the posterior mean of ``p`` itself (the Bayes-optimal
  score given that information, hence the ceiling proper);
- ``click_share``: interest ``(0.3 + clicks_c) / (0.3 K + clicks)`` from the prior click counts;
- ``prior_only``: the prior mean interest ``1/K`` for everyone (the item-side part alone).

Bots are scored 0.9 in every variant (``is_bot`` known, as the true model does); the AUCs are also
reported without the bots' rows, and the groups (0, 1-2, 3-5, 6+ prior clicks) are of humans.

The posterior is computed exactly on a lattice (``--grid`` points per unit of interest): the
likelihood factorizes over categories, so the integral over the simplex is a convolution of one
factor per category (see :func:`posterior`). An impression whose click could still arrive after
the cut-off counts with the click probability times the chance that the click (1-60 s after the
impression in the generator) came before it. Plain importance sampling from the prior (``--draws``
draws per posterior) is run beside it as a check: it agrees where its effective sample size is
large, which it is not for the heavier users (reported).

``lists``: the same for issue #13's list target (expected clicks per published top-N list under
the true model): the latest ``gold.candidates`` run's candidates of each human user (each item
once: the table has a row per source) ranked by the true probability, by the history posterior,
by the click share and by the pipeline's own feature rows (``observed_ctr``: the item's stored CTR
times the user's CTR on its category), next to the published list.

``realtime``: the same with the cut-off at the example's own time (history up to the request), to
separate what the daily cut-off costs from what the history cannot tell. ``checks``: the history's
recomputed true probabilities against ground_truth.parquet, and the recovery of known interests
of simulated users from n impressions drawn like the real ones (error against posterior variance),
the lattice against a 4x finer one.

    .venv/bin/python tests/perf/bench_ceiling.py [--lake lakehouse] [--raw-dir data/raw] [--out bench-results/ceiling.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from recpipe import constants as C  # noqa: E402
from recpipe.datasets.synthetic.world import CATEGORIES, SyntheticWorld, load_world  # noqa: E402

Array = npt.NDArray[Any]

K = len(CATEGORIES)
PRIOR = 0.3  # world.make_users: interest ~ Dirichlet(0.3 * ones(K))
P_MAX = 0.95
BOT_P = 0.9
MS_HOUR = 3_600_000
CLICK_DELAY_MS = (1_000, 60_000)  # simulation._follow_ups: a click 1-60 s after its impression
CLICK_GROUPS = ((0, 0, "0"), (1, 2, "1-2"), (3, 5, "3-5"), (6, None, "6+"))


# -- data ---------------------------------------------------------------------------------------------
def _table_path(lake: Path, table: str) -> str:
    from recpipe.lake.base import table_parts

    return str(lake.joinpath(*table_parts(table)))


def _ms(ts: pd.Series) -> Array:
    """Epoch milliseconds of a timestamp column (tz-aware or naive UTC)."""
    values = ts.dt.tz_convert("UTC").dt.tz_localize(None) if ts.dt.tz is not None else ts
    out: Array = values.to_numpy().astype("datetime64[ms]").astype(np.int64)
    return out


def load_test_rows(lake: Path, version: int | None) -> pd.DataFrame:
    """The test split as the train summary's oracle reads it (``recpipe.model.data.read_split``)."""
    from recpipe.model.data import read_split

    cols = [C.USER_ID, C.ITEM_ID, C.REQUEST_ID, C.POSITION, C.EVENT_TS, C.AS_OF_DATE, C.LABEL]
    df: pd.DataFrame = read_split(
        _table_path(lake, C.GOLD_TRAINING_EXAMPLES), version, "test", cols
    ).to_pandas()
    df["ts_ms"] = _ms(df[C.EVENT_TS])
    cut = pd.to_datetime(df[C.AS_OF_DATE]).to_numpy().astype("datetime64[ms]").astype(np.int64)
    df["cutoff_ms"] = cut
    return df


def history(lake: Path, users: set[str], attribution_minutes: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """The impressions of ``users`` in ``silver.events`` with their click time (NaN: none), each
    click matched like ``recpipe.examples.labels.label_impressions`` (same user, item and request,
    within the attribution window); a click without its impression becomes an impression at the
    click's time and position."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    cols = [C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_TS, C.REQUEST_ID, C.POSITION, C.IS_HISTORY]
    dset = DeltaTable(_table_path(lake, C.SILVER_EVENTS)).to_pyarrow_dataset()
    wanted = ds.field(C.EVENT_TYPE).isin(["impression", "click"]) & ds.field(C.USER_ID).isin(sorted(users))
    ev: pd.DataFrame = dset.to_table(columns=cols, filter=wanted).to_pandas()
    ev["ts_ms"] = _ms(ev[C.EVENT_TS])
    counts = {"history_flagged_events_left_out": int(ev[C.IS_HISTORY].fillna(False).sum())}
    ev = ev[~ev[C.IS_HISTORY].fillna(False).astype(bool)]
    key = [C.USER_ID, C.REQUEST_ID, C.ITEM_ID]
    imps = ev[ev[C.EVENT_TYPE] == "impression"].drop_duplicates(key)
    clicks = ev[ev[C.EVENT_TYPE] == "click"].sort_values("ts_ms").drop_duplicates(key)
    m = imps.merge(clicks[[*key, "ts_ms"]].rename(columns={"ts_ms": "click_ms"}), on=key, how="left")
    late = m["click_ms"].notna() & (
        (m["click_ms"] < m["ts_ms"]) | (m["click_ms"] > m["ts_ms"] + attribution_minutes * 60_000)
    )
    m.loc[late, "click_ms"] = np.nan
    orphan = clicks.merge(imps[key], on=key, how="left", indicator=True)
    orphan = orphan[orphan["_merge"] == "left_only"].drop(columns="_merge")
    orphan = orphan.assign(click_ms=orphan["ts_ms"].astype(np.float64))
    out = pd.concat([m, orphan], ignore_index=True)[[*key, C.POSITION, "ts_ms", "click_ms"]]
    counts.update(
        impressions=len(imps),
        clicks=len(clicks),
        clicks_matched=int(m["click_ms"].notna().sum()),
        clicks_outside_window=int(late.sum()),
        orphan_clicks_as_impressions=len(orphan),
    )
    return out.sort_values([C.USER_ID, "ts_ms"], kind="stable").reset_index(drop=True), counts


# -- the click model, interest factored out -----------------------------------------------------------
def scale(world: SyntheticWorld, item: Array, position: Array, ts_ms: Array) -> Array:
    """``a`` of ``p = clip(a * interest[cat], 0, 0.95)``: 0.16 K quality pos_bias fresh
    (``world.affinity`` / ``world.click_probability`` with the interest taken out)."""
    age_h = np.clip((ts_ms - world.item_pub_ms[item]) / MS_HOUR, 0.0, None)
    fresh = 0.3 + 0.7 * np.power(0.5, age_h / 36.0)
    pos_bias = 1.0 / np.power(1.0 + np.asarray(position, dtype=np.float64), 0.8)
    out: Array = 0.16 * K * world.item_quality[item] * pos_bias * fresh
    return out


def clicked_by(imp_ms: Array, cutoff_ms: float) -> Array:
    """Chance that a click on an impression at ``imp_ms`` came before ``cutoff_ms``."""
    lo, hi = CLICK_DELAY_MS
    out: Array = np.clip((cutoff_ms - imp_ms - lo) / (hi - lo), 0.0, 1.0)
    return out


# -- the posterior of a user's interest ---------------------------------------------------------------
# The likelihood factorizes over categories: L(theta) = prod_c L_c(theta_c), each L_c a product over
# the user's impressions of that category. With the Dirichlet prior, the posterior is the law of
# independent X_c with densities x^(0.3-1) L_c(x) on [0, 1] conditioned on sum(X) = 1. On the
# lattice x = i / N that is a discrete convolution: P(X_k = i/N | sum = 1) is proportional to
# m_k[i] * (conv of the other m_c)[N - i]. Every m_c is tilted by exp(lambda x) (which leaves the
# conditional law unchanged) so that the sum's mass sits near 1 and the FFT convolutions keep
# their precision where it matters.
class Lattice:
    """The grid x = 0, 1/N, ..., 1 and the prior's mass ``int x^(0.3-1) dx`` of each cell."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.x = np.arange(n + 1) / n
        edges = np.r_[0.0, (np.arange(n) + 0.5) / n, 1.0]
        self.log_prior = np.log(np.diff(edges**PRIOR))
        self.fft_len = 1 << int(np.ceil(np.log2(2 * n + 2)))

    def conv(self, f: Array, g: Array) -> Array:
        """``(f * g)[0..N]`` (last axis), by FFT, negative round-off set to 0."""
        L = self.fft_len
        out: Array = np.fft.irfft(np.fft.rfft(f, L) * np.fft.rfft(g, L), L)[..., : self.n + 1]
        return np.maximum(out, 0.0)


def log_lik_grid(lat: Lattice, cat: Array, a: Array, e: Array, y: Array, chunk: int = 1024) -> Array:
    """(K, N+1): log L_c on the grid, L_c = prod over the category's impressions of Bernoulli(y |
    e * clip(a x, 0, 0.95)) (``e``: the chance the click, if any, was seen by the cut-off)."""
    out = np.zeros((K, lat.n + 1))
    with np.errstate(divide="ignore"):
        for s in range(0, len(cat), chunk):
            sl = slice(s, s + chunk)
            p = e[sl, None] * np.minimum(a[sl, None] * lat.x[None, :], P_MAX)
            ll = np.where(y[sl, None], np.log(p), np.log1p(-p))
            onehot = np.zeros((K, len(ll)))
            onehot[cat[sl], np.arange(len(ll))] = 1.0
            out += onehot @ np.where(np.isfinite(ll), ll, 0.0)
            out[np.unique(cat[sl][y[sl]]), 0] = -np.inf  # a click: interest 0 impossible
    return out


def _tilt(x: Array, logm: Array, iters: int = 40) -> float:
    """lambda with sum_c E[X_c] = 1 under m_c(x) exp(lambda x) (bisection on a log-scaled bracket)."""

    def total_mean(lam: float) -> float:
        t = logm + lam * x
        w = np.exp(t - t.max(axis=1, keepdims=True))
        return float(np.sum((w @ x) / w.sum(axis=1)))

    lo, hi = -1.0, 1.0
    while total_mean(lo) > 1.0 and lo > -1e7:
        lo *= 4.0
    while total_mean(hi) < 1.0 and hi < 1e7:
        hi *= 4.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total_mean(mid) < 1.0 else (lo, mid)
        if hi - lo < 0.05:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Posterior:
    """The posterior marginals of a user's interest on the lattice: ``marg[c, i] = P(theta_c = x_i)``."""

    x: Array
    marg: Array  # (K, N+1), rows sum to 1

    def mean(self) -> Array:
        out: Array = self.marg @ self.x
        return out

    def var(self) -> Array:
        out: Array = self.marg @ self.x**2 - self.mean() ** 2
        return out

    def predictive(self, cat: Array, a: Array) -> Array:
        """Posterior mean click probability of rows (category, scale)."""
        p = np.minimum(a[:, None] * self.x[None, :], P_MAX)
        out: Array = np.sum(p * self.marg[cat], axis=1)
        return out


def posterior(lat: Lattice, cat: Array, a: Array, e: Array, y: Array) -> Posterior:
    """The posterior of the interest given the impressions (category, scale, seen-share, clicked)."""
    logm = lat.log_prior[None, :] + log_lik_grid(lat, cat, a, e, y)
    t = logm + _tilt(lat.x, logm) * lat.x
    m = np.exp(t - t.max(axis=1, keepdims=True))
    unit = np.zeros(lat.n + 1)
    unit[0] = 1.0
    prefix, suffix = [unit], [unit]
    for k in range(K):
        p = lat.conv(prefix[-1], m[k])
        prefix.append(p / max(p.max(), 1e-300))
        s = lat.conv(suffix[-1], m[K - 1 - k])
        suffix.append(s / max(s.max(), 1e-300))
    # others[k] = conv of every m_c but m_k: prefix[k] (c < k) with suffix[K-1-k] (c > k)
    others = lat.conv(np.stack(prefix[:K]), np.stack(suffix[K - 1 :: -1]))
    marg = m * others[:, ::-1]
    marg /= marg.sum(axis=1, keepdims=True)
    return Posterior(lat.x, marg)


def is_check(
    gen: np.random.Generator, cat: Array, a: Array, e: Array, y: Array, draws: int
) -> tuple[Array, float]:
    """Plain importance sampling from the prior (``draws`` draws): the posterior mean and the ESS."""
    theta = gen.dirichlet(np.full(K, PRIOR), size=draws)
    ll = np.zeros(draws)
    for s in range(0, len(cat), 1024):
        sl = slice(s, s + 1024)
        p = e[sl, None] * np.minimum(a[sl, None] * theta[:, cat[sl]].T, P_MAX)
        ll += np.where(y[sl, None], np.log(np.maximum(p, 1e-300)), np.log1p(-p)).sum(axis=0)
    w = np.exp(ll - ll.max())
    w /= w.sum()
    mean: Array = w @ theta
    return mean, float(1.0 / np.sum(w**2))


# -- scoring ------------------------------------------------------------------------------------------
def _cut(h: pd.DataFrame, cutoff: float) -> tuple[Array, Array, Array, Array]:
    """(category, scale, seen-share, clicked) of the impressions in ``h`` strictly before ``cutoff``;
    a click counts when it happened before the cut-off."""
    h = h[h["ts_ms"].to_numpy() < cutoff]
    y = h["click_ms"].to_numpy() < cutoff  # NaN (no click) compares False
    e = np.where(y, 1.0, clicked_by(h["ts_ms"].to_numpy(), cutoff))
    return h["cat"].to_numpy(), h["a"].to_numpy(), e, y


def click_share(cat: Array, y: Array) -> Array:
    """Interest from the click counts with the prior's pseudo-counts: (0.3 + n_c) / (0.3 K + n)."""
    counts = np.bincount(cat[y], minlength=K)
    out: Array = (PRIOR + counts) / (PRIOR * K + counts.sum())
    return out


def score(
    lat: Lattice,
    rows: pd.DataFrame,
    hist: pd.DataFrame,
    cutoff_col: str,
    is_draws: int = 0,
    gen: np.random.Generator | None = None,
) -> tuple[dict[str, Array], pd.DataFrame]:
    """Per test row (``rows``: user index ``u``, ``cat``, ``a``, ``bot``) the Bayes plug-in and
    predictive scores, the click-share score, the prior clicks and impressions, with the history
    cut at ``rows[cutoff_col]`` (strictly before); bots 0.9. With ``is_draws``, per posterior the
    plain prior importance sampling's ESS and its largest difference from the lattice's mean."""
    n = len(rows)
    out = {k: np.zeros(n) for k in ("bayes", "bayes_pred", "click_share", "prior_clicks", "prior_imps")}
    bot = rows["bot"].to_numpy()
    h_by_user = {u: g for u, g in hist.groupby("u", sort=False)}
    empty = hist.iloc[:0]
    diag = []
    for (u, cutoff), idx in rows.groupby(["u", cutoff_col], sort=False).indices.items():
        cat, a, e, y = _cut(h_by_user.get(u, empty), cutoff)
        out["prior_clicks"][idx] = y.sum()
        out["prior_imps"][idx] = len(cat)
        if bot[idx[0]]:
            continue  # scored 0.9 below
        post = posterior(lat, cat, a, e, y)
        rc, ra = rows["cat"].to_numpy()[idx], rows["a"].to_numpy()[idx]
        out["bayes"][idx] = np.minimum(ra * post.mean()[rc], P_MAX)
        out["bayes_pred"][idx] = post.predictive(rc, ra)
        out["click_share"][idx] = np.minimum(ra * click_share(cat, y)[rc], P_MAX)
        if is_draws and gen is not None and len(cat):
            is_mean, ess = is_check(gen, cat, a, e, y, is_draws)
            diag.append(
                {"impressions": len(cat), "ess": ess, "max_abs_diff": np.abs(is_mean - post.mean()).max()}
            )
    for k in ("bayes", "bayes_pred", "click_share"):
        out[k] = np.where(bot, BOT_P, out[k])
    return out, pd.DataFrame(diag, columns=["impressions", "ess", "max_abs_diff"])


def _auc(y: Array, s: Array) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, s)), 4) if len(np.unique(y)) == 2 else None


SCORES = {
    "oracle": "oracle",
    "history_bayes": "bayes",
    "history_bayes_predictive": "bayes_pred",
    "click_share": "click_share",
    "prior_only": "prior_only",
}


def aucs(y: Array, scores: dict[str, Array], mask: Array) -> dict[str, float | None]:
    return {f"{name}_auc": _auc(y[mask], scores[k][mask]) for name, k in SCORES.items()}


def group_masks(prior_clicks: Array, bot: Array) -> list[tuple[str, Array]]:
    """(label, row mask) of each prior-click group of humans, then of the bots."""
    out = [
        (label, ~bot & (prior_clicks >= lo) & (prior_clicks <= (np.inf if hi is None else hi)))
        for lo, hi, label in CLICK_GROUPS
    ]
    return [*out, ("bots", bot)]


def bootstrap(
    gen: np.random.Generator, y: Array, scores: dict[str, Array], users: Array, reps: int
) -> dict[str, Any]:
    """Users resampled with replacement (``reps`` times): the standard deviation of each AUC and the
    95% interval of the oracle's lead over the history ceiling (predictive) and the click share."""
    from sklearn.metrics import roc_auc_score

    uniq, inv = np.unique(users, return_inverse=True)
    names = ("oracle", "bayes_pred", "click_share")
    draws = {k: np.zeros(reps) for k in names}
    for b in range(reps):
        w = np.bincount(gen.integers(0, len(uniq), size=len(uniq)), minlength=len(uniq))[inv]
        for k in names:
            draws[k][b] = roc_auc_score(y, scores[k], sample_weight=w)

    def interval(v: Array) -> list[float]:
        return [round(float(q), 4) for q in np.percentile(v, [2.5, 97.5])]

    return {
        "reps": reps,
        "resampled": "users",
        "sd_oracle_auc": round(float(draws["oracle"].std()), 4),
        "sd_history_bayes_predictive_auc": round(float(draws["bayes_pred"].std()), 4),
        "oracle_minus_history_bayes_predictive_95": interval(draws["oracle"] - draws["bayes_pred"]),
        "history_bayes_predictive_minus_click_share_95": interval(draws["bayes_pred"] - draws["click_share"]),
    }


def train_reports(lake: Path) -> list[dict[str, Any]]:
    """The trained models' test AUCs beside the figures (``<lake>/_artifacts/reports/train-*.json``)."""
    out = []
    for path in sorted((lake / "_artifacts" / "reports").glob("train-*.json")):
        rep = json.loads(path.read_text())
        keys = ("model", "examples_version", "test_auc", "oracle_auc")
        out.append({"file": path.name, **{k: rep.get(k) for k in keys}})
    return out


def groups(y: Array, scores: dict[str, Array], users: Array, bot: Array) -> list[dict[str, Any]]:
    """Per prior-click group: rows, share, users, CTR, median prior impressions, the AUCs."""
    out = []
    for label, m in group_masks(scores["prior_clicks"], bot):
        out.append(
            {
                "prior_clicks": label,
                "rows": int(m.sum()),
                "share_of_rows": round(float(m.mean()), 4),
                "users": int(np.unique(users[m]).size),
                "ctr": round(float(y[m].mean()), 4) if m.any() else None,
                "median_prior_impressions": float(np.median(scores["prior_imps"][m])) if m.any() else None,
                **aucs(y, scores, m),
            }
        )
    return out


# -- checks -------------------------------------------------------------------------------------------
def _z(d: Array) -> float:
    """Mean of ``d`` over its standard error (0 for all zeros): squared error minus posterior
    variance has mean 0 when the posterior is right, so |z| should mostly stay under 2."""
    sd = float(np.std(d))
    return float(np.mean(d) / (sd / np.sqrt(len(d)))) if sd > 0 else 0.0


def recovery_check(
    gen: np.random.Generator, lat: Lattice, pool: pd.DataFrame, sizes: tuple[int, ...], users: int
) -> list[dict[str, Any]]:
    """Simulated users (interest ~ Dirichlet(0.3)) with n impressions drawn from ``pool`` (real
    human impressions: category and scale) and clicks from the true model: how far the posterior
    mean, the click share and the prior mean are from the true interest (mean L1), and the
    posterior mean's squared error against the posterior variance (equal in expectation when the
    posterior is right)."""
    out = []
    for n in sizes:
        l1: dict[str, list[float]] = {"bayes": [], "click_share": [], "prior": []}
        se, pv = [], []
        for _ in range(users):
            theta = gen.dirichlet(np.full(K, PRIOR))
            pick = gen.integers(0, len(pool), size=n)
            cat, a = pool["cat"].to_numpy()[pick], pool["a"].to_numpy()[pick]
            y = gen.random(n) < np.minimum(a * theta[cat], P_MAX)
            post = posterior(lat, cat, a, np.ones(n), y)
            l1["bayes"].append(float(np.abs(post.mean() - theta).sum()))
            l1["click_share"].append(float(np.abs(click_share(cat, y) - theta).sum()))
            l1["prior"].append(float(np.abs(1.0 / K - theta).sum()))
            se.append(float(np.sum((post.mean() - theta) ** 2)))
            pv.append(float(np.sum(post.var())))
        out.append(
            {
                "impressions": n,
                "users": users,
                **{f"mean_l1_{k}": round(float(np.mean(v)), 4) for k, v in l1.items()},
                "mean_sq_error_bayes": round(float(np.mean(se)), 5),
                "mean_posterior_var": round(float(np.mean(pv)), 5),
                "z_error_minus_var": round(_z(np.subtract(se, pv)), 2),
            }
        )
    return out


def heavy_users_check(
    lat: Lattice, world: SyntheticWorld, hist: pd.DataFrame, min_imps: int
) -> dict[str, Any]:
    """Real human users with at least ``min_imps`` impressions in the whole log: mean L1 distance of
    the posterior mean (all their history), of the click share and of the prior mean to their
    true interest."""
    l1: dict[str, list[float]] = {"bayes": [], "click_share": [], "prior": []}
    for u, h in hist.groupby("u", sort=False):
        if len(h) < min_imps or world.is_bot[u]:
            continue
        cat, a, e, y = _cut(h, np.inf)
        truth = world.interest[u]
        l1["bayes"].append(float(np.abs(posterior(lat, cat, a, np.ones(len(cat)), y).mean() - truth).sum()))
        l1["click_share"].append(float(np.abs(click_share(cat, y) - truth).sum()))
        l1["prior"].append(float(np.abs(1.0 / K - truth).sum()))
    return {
        "min_impressions": min_imps,
        "users": len(l1["bayes"]),
        **{f"mean_l1_{k}": round(float(np.mean(v)), 4) if v else None for k, v in l1.items()},
    }


def grid_check(lat: Lattice, rows: pd.DataFrame, hist: pd.DataFrame, heaviest: int) -> dict[str, Any]:
    """The ``heaviest`` (user, cut-off) posteriors of humans again on a 4x finer lattice: the
    largest change of a posterior mean and of a row's predictive score."""
    fine = Lattice(4 * lat.n)
    humans = rows[~rows["bot"].to_numpy()]
    sizes = hist.groupby("u").size()
    keys = humans[["u", "cutoff_ms"]].drop_duplicates()
    keys = keys.assign(n=keys["u"].map(sizes).fillna(0)).nlargest(heaviest, "n")
    d_mean, d_pred = 0.0, 0.0
    for u, cutoff in zip(keys["u"], keys["cutoff_ms"]):
        cat, a, e, y = _cut(hist[hist["u"].to_numpy() == u], cutoff)
        r = humans[(humans["u"] == u) & (humans["cutoff_ms"] == cutoff)]
        p1, p2 = posterior(lat, cat, a, e, y), posterior(fine, cat, a, e, y)
        d_mean = max(d_mean, float(np.abs(p1.mean() - p2.mean()).max()))
        rc, ra = r["cat"].to_numpy(), r["a"].to_numpy()
        d_pred = max(d_pred, float(np.abs(p1.predictive(rc, ra) - p2.predictive(rc, ra)).max()))
    return {
        "posteriors": len(keys),
        "fine_grid": fine.n,
        "max_abs_mean_diff": d_mean,
        "max_abs_pred_diff": d_pred,
    }


# -- the benchmark ------------------------------------------------------------------------------------
def _ess_summary(diag: pd.DataFrame) -> dict[str, Any]:
    """The prior-IS cross-check: its ESS over the (user, cut-off) posteriors, and how far its
    posterior mean is from the lattice's where the ESS is large enough to trust it."""
    if diag.empty:
        return {"posteriors": 0}
    good = diag[diag["ess"] >= 1000]
    return {
        "posteriors": len(diag),
        "ess_median": round(float(diag["ess"].median()), 1),
        "ess_p05": round(float(diag["ess"].quantile(0.05)), 1),
        "share_ess_below_100": round(float((diag["ess"] < 100).mean()), 4),
        "posteriors_ess_at_least_1000": len(good),
        "their_max_abs_mean_diff_vs_lattice": round(float(good["max_abs_diff"].max()), 4)
        if len(good)
        else None,
        "their_median_impressions": float(good["impressions"].median()) if len(good) else None,
    }


# -- lists: the same ceiling for the expected clicks of a top-N list ---------------------------------
SERVE_HOURS = 12.0  # recpipe.evaluation.oracle.evaluate_lists: lists scored at run_date 00:00 + 12 h


def _run_rows(
    lake: Path, table: str, columns: list[str], run: dt.date | None = None
) -> tuple[dt.date, pd.DataFrame]:
    """``columns`` of the ``run_date`` partition ``run`` of ``table`` (default: its latest), read
    alone (the table's other days are not read)."""
    from deltalake import DeltaTable

    dt_table = DeltaTable(_table_path(lake, table))
    if run is None:
        run = max(dt.date.fromisoformat(p[C.RUN_DATE]) for p in dt_table.partitions())
    rows = dt_table.to_pyarrow_table(columns=columns, filters=[(C.RUN_DATE, "=", run)])
    return run, rows.to_pandas()


def _observed_ctr(lake: Path, run: dt.date, cands: pd.DataFrame) -> Array:
    """Per candidate, ``item_ctr_28d`` (``gold.item_features``, smoothed by the features'
    ``ctr_prior_strength``) times the user's ``category_ctr`` of the item's category
    (``gold.user_features``), both as of ``run`` (0 where a row or category is missing): a
    two-input ranking from the pipeline's own feature rows, next to the model's lists."""
    from deltalake import DeltaTable

    def rows(table: str, columns: list[str]) -> pd.DataFrame:
        t = DeltaTable(_table_path(lake, table))
        return t.to_pyarrow_table(columns=columns, filters=[(C.AS_OF_DATE, "=", run)]).to_pandas()

    items = rows(C.GOLD_ITEM_FEATURES, [C.ITEM_ID, "item_ctr_28d"]).drop_duplicates(C.ITEM_ID)
    users = rows(C.GOLD_USER_FEATURES, [C.USER_ID, "category_ctr"]).drop_duplicates(C.USER_ID)
    ctr_of_item = cands[C.ITEM_ID].map(items.set_index(C.ITEM_ID)["item_ctr_28d"]).fillna(0.0)
    by_user = {u: dict(m or []) for u, m in zip(users[C.USER_ID], users["category_ctr"], strict=True)}
    names = list(CATEGORIES)
    cat_ctr = [
        by_user.get(u, {}).get(names[c], 0.0) or 0.0
        for u, c in zip(cands[C.USER_ID], cands["cat"], strict=True)
    ]
    out: Array = ctr_of_item.to_numpy(dtype=float) * np.asarray(cat_ctr, dtype=float)
    return out


def world_columns(world: SyntheticWorld, key: str) -> Any:
    """A function adding to rows (pseudonymized ``user_id``, ``item_id``, ``position``, ``ts_ms``)
    their world columns: ``u`` (the user's world row), ``cat``, ``a`` (the scale of
    ``p = clip(a * interest[u, cat])``) and ``bot``."""
    from recpipe.events.transforms import pseudonymize_py

    u_of = {pseudonymize_py(str(u), key): i for i, u in enumerate(world.user_ids.tolist())}
    item_of = {it: i for i, it in enumerate(world.item_ids)}

    def with_model(df: pd.DataFrame) -> pd.DataFrame:
        unknown = int((~df[C.USER_ID].isin(u_of)).sum())
        if unknown:
            raise SystemExit(f"{unknown} rows have a user id that is no pseudonym of this world's users")
        item = df[C.ITEM_ID].map(item_of).to_numpy(dtype=np.int64)
        u = df[C.USER_ID].map(u_of).to_numpy(dtype=np.int64)
        a = scale(world, item, df[C.POSITION].to_numpy(), df["ts_ms"].to_numpy())
        return df.assign(u=u, cat=world.item_cat[item], a=a, bot=world.is_bot[u])

    return with_model


def list_value(world: SyntheticWorld, lists: pd.DataFrame, ts_ms: float) -> float:
    """Mean over users (``u``, world rows) of the sum of the true click probabilities of their
    lists' items at positions ``rank - 1``, at ``ts_ms``."""
    from recpipe.datasets.synthetic.world import true_click_probability

    raw_ids = [str(x) for x in world.user_ids.tolist()]
    p = true_click_probability(
        world,
        [raw_ids[i] for i in lists["u"].to_numpy()],
        lists[C.ITEM_ID].tolist(),
        lists[C.RANK].to_numpy() - 1,
        np.full(len(lists), ts_ms, dtype=np.int64),
    )
    return round(float(pd.Series(p).groupby(lists["u"].to_numpy()).sum().mean()), 4)


def lists_ceiling(
    lat: Lattice,
    world: SyntheticWorld,
    lake: Path,
    top_n: int,
    max_per_category: int,
    attribution_minutes: int,
    with_model: Any,
) -> dict[str, Any]:
    """Mean expected clicks per top-N list under the true model, for the (human) users of the
    latest ``gold.candidates`` run: the published list (``gold.recommendations``), and the same
    candidates ranked by the true probability (the oracle), by the history posterior (the
    ceiling) and by the click share. History cut at the run date 00:00 UTC; lists served at
    +12 h (as ``recpipe evaluate``'s expected clicks). Ranking by the score at position 0 and
    filling positions in that order maximizes the true expected clicks when the score is the
    true one (the position factor is the same for every item). Each ranking is also cut to the
    re-rank's diversity cap (``recommend.max_per_category``) to show what the cap costs."""

    t0 = time.perf_counter()
    run, cands = _run_rows(lake, C.GOLD_CANDIDATES, [C.USER_ID, C.ITEM_ID])
    # gold.candidates holds one row per (user, item, source): an item that two sources found
    # must count once, or a ranking fills its list with copies of its best items.
    n_rows = len(cands)
    cands = cands.drop_duplicates([C.USER_ID, C.ITEM_ID], ignore_index=True)
    _, recs = _run_rows(lake, C.GOLD_RECOMMENDATIONS, [C.USER_ID, C.ITEM_ID, C.RANK], run)
    cutoff = float(np.datetime64(run, "ms").astype(np.int64))
    ts = cutoff + SERVE_HOURS * MS_HOUR
    cands = with_model(cands.assign(**{C.POSITION: 0, "ts_ms": ts}))
    cands = cands[~cands["bot"].to_numpy()].reset_index(drop=True)
    hist, _ = history(lake, set(cands[C.USER_ID]), attribution_minutes)
    hist = with_model(hist)
    h_by_user = {u: g for u, g in hist.groupby("u", sort=False)}
    empty = hist.iloc[:0]
    a, cat, u = cands["a"].to_numpy(), cands["cat"].to_numpy(), cands["u"].to_numpy()
    scores = {
        "oracle_ranked": np.minimum(a * world.interest[u, cat], P_MAX),
        "ceiling_ranked": np.zeros(len(cands)),
        "click_share_ranked": np.zeros(len(cands)),
        # what the pipeline observes, no generator knowledge: the item's stored CTR times the
        # user's CTR on its category, both from the feature rows as of the run date
        "observed_ctr_ranked": _observed_ctr(lake, run, cands),
    }
    for uu, idx in cands.groupby("u", sort=False).indices.items():
        hc, ha, he, hy = _cut(h_by_user.get(uu, empty), cutoff)
        scores["ceiling_ranked"][idx] = posterior(lat, hc, ha, he, hy).predictive(cat[idx], a[idx])
        scores["click_share_ranked"][idx] = np.minimum(a[idx] * click_share(hc, hy)[cat[idx]], P_MAX)

    def value(lists: pd.DataFrame) -> float:
        return list_value(world, lists, ts)

    out: dict[str, Any] = {"run_date": run.isoformat(), "top_n": top_n}
    users = set(cands["u"])
    pub = with_model(recs.assign(**{C.POSITION: 0, "ts_ms": ts}))
    pub = pub[pub["u"].isin(users)]
    out["published"] = value(pub)
    for name, sc in scores.items():
        ranked = cands.assign(_s=sc).sort_values(["u", "_s", C.ITEM_ID], ascending=[True, False, True])
        if ranked.duplicated(["u", C.ITEM_ID]).any():
            raise AssertionError(f"{name}: a user's candidates hold an item twice")
        ranked[C.RANK] = ranked.groupby("u").cumcount() + 1
        out[name] = value(ranked[ranked[C.RANK] <= top_n])
        # under the re-rank's diversity cap (recommend.max_per_category), greedily in score order
        capped = ranked[ranked.groupby(["u", "cat"]).cumcount() < max_per_category].copy()
        capped[C.RANK] = capped.groupby("u").cumcount() + 1
        out[f"{name}_max_{max_per_category}_per_category"] = value(capped[capped[C.RANK] <= top_n])
    out.update(
        users=len(users),
        candidates=len(cands),
        candidate_rows=n_rows,
        users_with_a_published_list=int(pub["u"].nunique()),
        seconds=round(time.perf_counter() - t0, 2),
    )
    return out


def bench(
    lake: Path,
    raw_dir: Path,
    config: Path,
    grid: int = 2048,
    is_draws: int = 4000,
    seed: int = 0,
    version: int | None = None,
    realtime: bool = True,
    lists: bool = True,
) -> dict[str, Any]:
    from recpipe.config import load_config
    from recpipe.datasets.synthetic.world import true_click_probability

    t0 = time.perf_counter()
    gen = np.random.default_rng(seed)
    lat = Lattice(grid)
    cfg = load_config(config)
    if not (Path(raw_dir) / "manifest.json").exists():
        raise SystemExit(
            f"{raw_dir}: no manifest.json; the ceiling needs a data set made by recpipe generate"
        )
    world = load_world(raw_dir)
    if world.drift_z is not None and world.drift_per_day:
        raise SystemExit(
            f"{raw_dir} holds a simulated (drifting) world: the fixed-interest posterior does not apply"
        )
    raw_ids = [str(u) for u in world.user_ids.tolist()]
    with_model = world_columns(world, cfg.pseudonym_key())

    rows = with_model(load_test_rows(lake, version))
    y = rows[C.LABEL].to_numpy().astype(np.int64)
    bot, u_idx = rows["bot"].to_numpy(), rows["u"].to_numpy()
    hist, hist_counts = history(lake, set(rows[C.USER_ID]), cfg.examples.attribution_window_minutes)
    hist = with_model(hist)

    # 1. the oracle: the generator's function, ground_truth.parquet as the train summary joins it,
    # and the factored form clip(a * interest) the posterior uses (on the test rows and the history)
    oracle = true_click_probability(
        world, [raw_ids[i] for i in u_idx], rows[C.ITEM_ID].tolist(), rows[C.POSITION], rows["ts_ms"]
    )
    gt = pd.read_parquet(raw_dir / "ground_truth.parquet", columns=["request_id", "item_id", "p_click"])
    gt = gt.drop_duplicates(["request_id", "item_id"])
    on = [C.REQUEST_ID, C.ITEM_ID]
    rows_gt = rows[on].merge(gt, on=on, how="left")["p_click"].to_numpy()
    hist_gt = hist[on].merge(gt, on=on, how="left")["p_click"].to_numpy()

    def factored(df: pd.DataFrame) -> Array:
        interest = world.interest[df["u"].to_numpy(), df["cat"].to_numpy()]
        out: Array = np.where(df["bot"], BOT_P, np.minimum(df["a"].to_numpy() * interest, P_MAX))
        return out

    # 2-4. posteriors at the examples' cut-off, the click share, the groups
    t_score = time.perf_counter()
    s, diag = score(lat, rows, hist, "cutoff_ms", is_draws, gen)
    score_s = time.perf_counter() - t_score
    s["oracle"] = oracle
    s["prior_only"] = np.where(bot, BOT_P, np.minimum(rows["a"].to_numpy() / K, P_MAX))
    as_of = pd.to_datetime(rows[C.AS_OF_DATE]).dt.date
    result: dict[str, Any] = {
        "name": "history_ceiling",
        "lake": str(lake),
        "raw_dir": str(raw_dir),
        "test_rows": len(rows),
        "test_users": int(np.unique(u_idx).size),
        "test_positives": int(y.sum()),
        "test_bot_rows": int(bot.sum()),
        "test_as_of_dates": sorted({d.isoformat() for d in as_of}),
        **aucs(y, s, np.ones(len(y), dtype=bool)),
        "oracle_auc_ground_truth": _auc(y, rows_gt),
        "without_bots": aucs(y, s, ~bot),
        "groups": groups(y, s, u_idx, bot),
        "cutoff": {
            "rule": "history = the user's silver.events impressions (clicks matched as the labels "
            "are) with event_ts < as_of_date 00:00 UTC, as_of_date the example's own column",
            "as_of_date_is_event_date": bool(
                (pd.to_datetime(rows[C.EVENT_TS]).dt.tz_convert("UTC").dt.date == as_of).all()
            ),
            "mean_prior_impressions_humans": round(float(s["prior_imps"][~bot].mean()), 2),
            "mean_prior_clicks_humans": round(float(s["prior_clicks"][~bot].mean()), 2),
        },
        "bots": "scored 0.9 in every variant (is_bot known, as the true model); groups are humans only",
        "history": hist_counts,
        "posterior": {
            "method": "exact on a lattice: Dirichlet(0.3) prior x Bernoulli likelihood of every "
            "prior impression, the simplex integral as FFT convolutions of per-category factors",
            "grid": grid,
            "scoring_s": round(score_s, 2),
            "prior_importance_sampling_check": {"draws": is_draws, "seed": seed, **_ess_summary(diag)},
        },
    }
    result["bootstrap"] = bootstrap(gen, y, s, u_idx, 200)
    result["train_reports"] = train_reports(lake)
    if realtime:
        t_rt = time.perf_counter()
        rt, _ = score(lat, rows, hist, "ts_ms")
        rt["oracle"], rt["prior_only"] = s["oracle"], s["prior_only"]
        keep = ("history_bayes_auc", "history_bayes_predictive_auc", "click_share_auc")
        result["realtime"] = {
            "rule": "history cut at the example's own event_ts (impressions before the request; a "
            "click counts when it happened before it, a pending one by its 1-60 s delay)",
            **{k: v for k, v in aucs(y, rt, np.ones(len(y), dtype=bool)).items() if k in keep},
            "without_bots": {k: v for k, v in aucs(y, rt, ~bot).items() if k in keep},
            "groups_by_daily_cutoff_clicks": [
                {"prior_clicks": label, **{k: v for k, v in aucs(y, rt, m).items() if k in keep}}
                for label, m in group_masks(s["prior_clicks"], bot)
            ],
            "mean_prior_impressions_humans": round(float(rt["prior_imps"][~bot].mean()), 2),
            "scoring_s": round(time.perf_counter() - t_rt, 2),
        }
    humans = hist[~hist["bot"].to_numpy()]
    result["checks"] = {
        "oracle_vs_ground_truth_max_abs": float(np.nanmax(np.abs(oracle - rows_gt))),
        "test_rows_without_ground_truth": int(np.isnan(rows_gt).sum()),
        "factored_vs_oracle_max_abs": float(np.max(np.abs(factored(rows) - oracle))),
        "history_factored_vs_ground_truth_max_abs": float(np.nanmax(np.abs(factored(hist) - hist_gt))),
        "history_rows_without_ground_truth": int(np.isnan(hist_gt).sum()),
        "prior_marginal_var_lattice": round(float(posterior(lat, *_cut(hist.iloc[:0], 0.0)).var()[0]), 6),
        "prior_marginal_var_exact": PRIOR * (K - 1) * PRIOR / ((K * PRIOR) ** 2 * (K * PRIOR + 1)),
        "grid": grid_check(lat, rows, hist, 30),
        "recovery": recovery_check(gen, lat, humans[["cat", "a"]], (0, 10, 30, 100, 300, 1000), 200),
        "heavy_real_users": heavy_users_check(lat, world, hist, 300),
    }
    if lists:
        result["lists"] = lists_ceiling(
            lat,
            world,
            lake,
            cfg.recommend.top_n,
            cfg.recommend.max_per_category,
            cfg.examples.attribution_window_minutes,
            with_model,
        )
    result["elapsed_s"] = round(time.perf_counter() - t0, 2)
    result["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--lake", type=Path, default=REPO / "lakehouse")
    ap.add_argument("--raw-dir", type=Path, default=REPO / "data" / "raw")
    ap.add_argument("--config", type=Path, default=REPO / "conf" / "local.yaml", help="for the pseudonym key")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "ceiling.json")
    ap.add_argument("--grid", type=int, default=2048, help="lattice points per unit of interest")
    ap.add_argument(
        "--draws", type=int, default=4000, help="prior draws of the importance-sampling check (0: none)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version", type=int, default=None, help="gold.training_examples version (latest)")
    ap.add_argument("--no-realtime", action="store_true", help="skip the cut-off at the example's own time")
    ap.add_argument("--no-lists", action="store_true", help="skip the expected clicks of top-N lists")
    args = ap.parse_args(argv)
    result = bench(
        args.lake,
        args.raw_dir,
        args.config,
        args.grid,
        args.draws,
        args.seed,
        args.version,
        not args.no_realtime,
        not args.no_lists,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
