"""What a simulated day is worth: online CTR and clicks per list by arm with confidence intervals,
the lift of one arm over another, and the off-policy estimate of the next day's lists.

All intervals are two-sided normal intervals at level ``1 - alpha``. A list (one request) is the
unit of randomization, so variances are taken over lists: clicks per list is a mean over lists;
CTR = clicks / impressions is a ratio of two list sums, its variance by linearization
``sum((c_l - ctr * m_l)^2) / (L (L - 1)) / mean(m)^2``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recpipe.evaluation import ope
from recpipe.model.position import fit_power_curve


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2)


def _per_list(imp: pd.DataFrame) -> pd.DataFrame:
    """Clicks and impressions per served list (one request: ``request_id``)."""
    return imp.groupby("request_id", sort=False).agg(c=("clicked", "sum"), m=("clicked", "size"))


def _ratio(c: npt.NDArray[Any], m: npt.NDArray[Any]) -> tuple[float, float]:
    """CTR and its linearized variance over lists."""
    n = len(c)
    ctr = float(c.sum() / m.sum()) if m.sum() else 0.0
    if n < 2:
        return ctr, math.nan
    var = float(((c - ctr * m) ** 2).sum() / (n * (n - 1)) / m.mean() ** 2)
    return ctr, var


def arm_metrics(imp: pd.DataFrame, alpha: float = 0.05) -> dict[str, dict[str, Any]]:
    """Per arm of the served impressions (columns request_id, arm, clicked): impressions, lists, clicks,
    ``ctr`` with ``ci_low``/``ci_high``, ``clicks_per_list`` with its interval."""
    z = _z(alpha)
    out: dict[str, dict[str, Any]] = {}
    for arm, part in imp.groupby("arm", sort=True):
        pl = _per_list(part)
        c, m = pl["c"].to_numpy(float), pl["m"].to_numpy(float)
        ctr, var = _ratio(c, m)
        half = z * math.sqrt(var) if not math.isnan(var) else math.nan
        cpl = float(c.mean())
        cpl_half = z * float(c.std(ddof=1)) / math.sqrt(len(c)) if len(c) > 1 else math.nan
        expected = (
            round(float(part.groupby("request_id", sort=False)["p_click"].sum().mean()), 5)
            if "p_click" in part
            else None
        )
        out[str(arm)] = {
            "impressions": int(m.sum()),
            "lists": len(c),
            "clicks": int(c.sum()),
            "ctr": round(ctr, 6),
            "ci_low": round(ctr - half, 6),
            "ci_high": round(ctr + half, 6),
            "clicks_per_list": round(cpl, 5),
            "clicks_per_list_ci_low": round(cpl - cpl_half, 5),
            "clicks_per_list_ci_high": round(cpl + cpl_half, 5),
            # the true click model's expected clicks per list (no click-draw noise)
            "expected_clicks_per_list": expected,
        }
    return out


def ctr_lift(imp: pd.DataFrame, arm: str, baseline: str, alpha: float = 0.05) -> dict[str, Any] | None:
    """``ctr(arm) / ctr(baseline) - 1`` with the delta-method interval on the log ratio (the two
    arms' users are disjoint, so their variances add). None when an arm served nothing."""
    parts = {}
    for name in (arm, baseline):
        pl = _per_list(imp[imp["arm"] == name])
        if pl.empty:
            return None
        parts[name] = _ratio(pl["c"].to_numpy(float), pl["m"].to_numpy(float))
    (a, va), (b, vb) = parts[arm], parts[baseline]
    if a <= 0 or b <= 0:
        return None
    log_ratio = math.log(a / b)
    half = _z(alpha) * math.sqrt(va / a**2 + vb / b**2)
    return {
        "arm": arm,
        "baseline": baseline,
        "lift": round(a / b - 1, 5),
        "ci_low": round(math.exp(log_ratio - half) - 1, 5),
        "ci_high": round(math.exp(log_ratio + half) - 1, 5),
    }


def next_day_ope(logged: pd.DataFrame, target: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Off-policy estimate of the target lists' clicks per list from one day's logged lists.

    ``logged``: the served slots of one policy (user, position, item_id, propensity, clicked);
    ``target``: the next day's lists of the same users (user, position, item_id, propensity).
    Slot by slot, a logged slot's weight is the target's propensity of showing the same item in the
    same slot over the logged propensity (0 when the target shows another item there). Per slot,
    SNIPS estimates the slot's click rate (delta-method interval); the list value is the sum over
    slots, its variance the sum of the slots' variances. Slots whose logged items the target never
    keeps have no estimate: ``slots_without_overlap`` counts them, and the value is then a lower
    bound. IPS over whole lists (``ips``) is reported beside it.
    """
    users = sorted(set(logged["user"]) & set(target["user"]))
    if not users:
        return {"skipped": "no user has both a logged list and a next-day list"}
    lg = logged[logged["user"].isin(users)]
    m = lg.merge(
        target[["user", "position", "item_id", "propensity"]].rename(
            columns={"item_id": "target_item", "propensity": "target_propensity"}
        ),
        on=["user", "position"],
        how="left",
    )
    same = (m["target_item"] == m["item_id"]).to_numpy()
    pi_e = np.where(same, m["target_propensity"].fillna(0.0).to_numpy(float), 0.0)
    p0 = m["propensity"].to_numpy(float)
    r = m["clicked"].to_numpy(float)
    value, var, empty = 0.0, 0.0, 0
    for pos in sorted(m["position"].unique()):
        s = (m["position"] == pos).to_numpy()
        if pi_e[s].sum() <= 0:
            empty += 1
            continue
        est = ope.snips(r[s], p0[s], pi_e[s], alpha=alpha)
        value += est.value
        half = (est.ci_high - est.ci_low) / 2 if not math.isnan(est.ci_high) else 0.0
        var += (half / _z(alpha)) ** 2
    half = _z(alpha) * math.sqrt(var)
    per_list = pd.DataFrame({"user": m["user"], "wr": pi_e / p0 * r}).groupby("user")["wr"].sum()
    ips_terms = per_list.reindex(users, fill_value=0.0).to_numpy(float)
    ips_half = _z(alpha) * float(ips_terms.std(ddof=1)) / math.sqrt(len(ips_terms)) if len(users) > 1 else 0.0
    return {
        "estimator": "snips_per_slot",
        "value": round(value, 5),
        "ci_low": round(value - half, 5),
        "ci_high": round(value + half, 5),
        "users": len(users),
        "matched_slot_share": round(float(same.mean()), 4),
        "slots_without_overlap": empty,
        "ips": {
            "value": round(float(ips_terms.mean()), 5),
            "ci_low": round(float(ips_terms.mean()) - ips_half, 5),
            "ci_high": round(float(ips_terms.mean()) + ips_half, 5),
        },
    }


def position_curve(imp: pd.DataFrame, arm: str = "random", max_positions: int = 50) -> dict[str, Any]:
    """The examination curve ``theta_k = (1 + k) ** -beta`` (``theta_0 = 1``) fitted to the click
    rate by position of a randomized arm, whose items are exchangeable across positions, so its
    click rate at k is proportional to theta_k (:func:`recpipe.model.position.fit_power_curve`:
    Poisson likelihood of the clicks per position).
    """
    part = imp[imp["arm"] == arm]
    by = part.groupby("position")["clicked"].agg(["sum", "size"])
    if by.empty or by["sum"].sum() == 0:
        return {"beta": None, "theta": [1.0] * max_positions, "impressions": len(part), "clicks": 0}
    c, n = by["sum"].to_numpy(float), by["size"].to_numpy(float)
    curve = fit_power_curve(by.index.to_numpy(float), c, n, max_positions)
    return {**curve, "impressions": int(n.sum()), "clicks": int(c.sum())}


def next_day_dr(
    logged: pd.DataFrame, target: pd.DataFrame, theta: list[float], alpha: float = 0.05
) -> dict[str, Any]:
    """Doubly robust estimate of the target lists' clicks per list from one day's logged lists.

    ``target`` holds one row per slot (user, position, item_id, propensity, ``score``: the ranker's
    click probability at the serving position, 0); ``logged`` the served slots (user, position,
    item_id, propensity, clicked). Under the position-based click model ``P(click | u, i, k) =
    theta_k q(u, i)``, with ``q`` the target's scores as the reward model:

    ``V_u = sum_k theta_k q(u, target_k) + w_uk (r_uk - theta_k q(u, target_k))``, with ``w_uk``
    the target's propensity of the logged item in slot k over the logged one (0 when the target
    shows another item there, where the correction term vanishes). The estimate is the mean of
    ``V_u`` over the users with both lists, its interval the normal one over users. The direct part
    covers what the logs cannot (items published after them are in no log of that day); the
    correction removes the scores' error where the logs overlap the target.
    """
    users = sorted(set(logged["user"]) & set(target["user"]))
    if not users:
        return {"skipped": "no user has both a logged list and a next-day list"}
    th = np.asarray(theta, dtype=float)
    tg = target[target["user"].isin(users)]
    q = th[tg["position"].to_numpy(int)] * tg["score"].to_numpy(float)
    dm = pd.Series(q, index=tg["user"].to_numpy()).groupby(level=0).sum().reindex(users, fill_value=0.0)
    lg = logged[logged["user"].isin(users)].merge(
        tg.assign(q=q)[["user", "position", "item_id", "propensity", "q"]].rename(
            columns={"item_id": "target_item", "propensity": "target_propensity"}
        ),
        on=["user", "position"],
        how="left",
    )
    same = (lg["target_item"] == lg["item_id"]).to_numpy()
    w = np.where(same, lg["target_propensity"].fillna(0.0).to_numpy(float), 0.0) / lg["propensity"].to_numpy(
        float
    )
    resid = np.where(same, lg["clicked"].to_numpy(float) - lg["q"].fillna(0.0).to_numpy(float), 0.0)
    corr = (
        pd.Series(w * resid, index=lg["user"].to_numpy())
        .groupby(level=0)
        .sum()
        .reindex(users, fill_value=0.0)
    )
    terms = (dm + corr).to_numpy(float)
    value = float(terms.mean())
    half = _z(alpha) * float(terms.std(ddof=1)) / math.sqrt(len(terms)) if len(terms) > 1 else math.nan
    return {
        "estimator": "dr_position_based",
        "value": round(value, 5),
        "ci_low": round(value - half, 5),
        "ci_high": round(value + half, 5),
        "direct_method": round(float(dm.mean()), 5),
        "users": len(users),
        "matched_slot_share": round(float(same.mean()), 4),
    }
