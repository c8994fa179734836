"""One simulated day of traffic: who arrives, which arm serves them, what they see and click.

Pure numpy/pandas over the generator's world (:class:`recpipe.datasets.synthetic.SyntheticWorld`);
the lists come in as DataFrames (:mod:`recpipe.simulation.loop` reads them from the lake).

- **Arms** (:func:`assign_arms`): a user's arm is a stable hash of (``simulate.seed``, raw user id)
  cut by the configured shares, so a user stays in one arm on every day and across reruns.
- **Arrivals** (:func:`arrivals`): each human user arrives on a day with probability
  ``1 - exp(-lam * activity)``, ``lam`` set so that ``users_per_day`` arrive on average; one
  request per arriving user, at an hour drawn from the generator's daily cycle.
- **Lists**: ``recpipe`` serves the user's published list of the day (the fallback, the
  popularity list, when the user has none); ``popularity`` the most popular allowed items the user
  has not consumed; ``random`` a uniform draw without replacement from those items.
- **Clicks** (:func:`served_events`): the world's true click model at the request time, with its
  position bias; 85% of clicks are followed by a read. Every click and read names the request,
  list and arm of the impression it came from (the serving-log contract): a click exists only
  for an impression that was served.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recpipe import constants as C
from recpipe.datasets.synthetic import _HOUR_OF_DAY_W, SyntheticWorld, true_click_probability

MS_HOUR = 3_600_000
# Columns of a served list: one row per slot (position 0-based).
LIST_COLUMNS = ["user", "position", "item_id", "propensity", "reason", "list_run_id", "arm"]


def assign_arms(user_ids: Sequence[str], arms: Mapping[str, float], seed: int) -> npt.NDArray[Any]:
    """Each user's arm: ``sha256(seed, user)`` as a number in [0, 1) cut by the arms' cumulative
    shares (in the configured order). Depends on nothing but the user, the seed and the shares."""
    names = list(arms)
    cum = np.cumsum([float(arms[n]) for n in names])
    cum[-1] = 1.0
    u = np.array(
        [
            int.from_bytes(
                hashlib.sha256(f"recpipe.simulate\x1f{seed}\x1f{uid}".encode()).digest()[:8], "big"
            )
            for uid in user_ids
        ],
        dtype=np.float64,
    ) / float(2**64)
    idx = np.minimum(np.searchsorted(cum, u, side="right"), len(names) - 1)
    out: npt.NDArray[Any] = np.array(names, dtype=object)[idx]
    return out


def arrivals(world: SyntheticWorld, users_per_day: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    """Indices of the human users who arrive on one day (see the module docstring)."""
    humans = np.flatnonzero(~world.is_bot)
    act = (
        world.user_activity[humans]
        if world.user_activity is not None
        else np.ones(len(humans), dtype=np.float64)
    )
    target = min(float(users_per_day), 0.9 * len(humans))
    lo, hi = 0.0, 1.0
    while (1 - np.exp(-hi * act)).sum() < target:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 - np.exp(-mid * act)).sum() < target else (lo, mid)
    p = 1 - np.exp(-hi * act)
    came: npt.NDArray[Any] = humans[rng.random(len(humans)) < p]
    return came


def request_times(day: dt.date, n: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    """Epoch milliseconds of ``n`` requests on ``day`` (hour from the daily cycle)."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    hour = rng.choice(24, size=n, p=_HOUR_OF_DAY_W / _HOUR_OF_DAY_W.sum())
    return start + hour * MS_HOUR + rng.integers(0, MS_HOUR - 120_000, size=n)


def popularity_lists(
    users: Sequence[str],
    ranked_items: Sequence[str],
    consumed: Mapping[str, set[str]],
    top_n: int,
    run_id: str,
    arm: str,
) -> pd.DataFrame:
    """The first ``top_n`` items of ``ranked_items`` each user has not consumed (propensity 1)."""
    rows = []
    for u in users:
        done = consumed.get(u, set())
        picked = [i for i in ranked_items if i not in done][:top_n]
        rows += [(u, k, item, 1.0, "trending", run_id, arm) for k, item in enumerate(picked)]
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def random_lists(
    users: Sequence[str],
    allowed: Sequence[str],
    consumed: Mapping[str, set[str]],
    top_n: int,
    run_id: str,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """A uniform draw without replacement of ``top_n`` allowed items the user has not consumed.
    The propensity of slot k is exact given the slots before it: ``1 / (M - k)`` of M eligible."""
    pool = np.array(sorted(allowed), dtype=object)
    rows = []
    for u in users:
        done = consumed.get(u, set())
        eligible = pool[[i not in done for i in pool]] if done else pool
        m = len(eligible)
        k = min(top_n, m)
        picked = eligible[rng.choice(m, size=k, replace=False)] if k else []
        rows += [(u, j, item, 1.0 / (m - j), "random", run_id, "random") for j, item in enumerate(picked)]
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def served_events(
    world: SyntheticWorld,
    lists: pd.DataFrame,
    request_ts: Mapping[str, int],
    day: dt.date,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The day's raw events (serving-log contract) and the served impressions with their true
    click probability and drawn click (for the simulation's own measurements)."""
    imp = lists.sort_values(["user", "position"], kind="stable").reset_index(drop=True)
    users = imp["user"].to_numpy(dtype=object)
    ts = np.array([request_ts[u] for u in users], dtype=np.int64)
    p = true_click_probability(world, users, imp["item_id"].tolist(), imp["position"].to_numpy(), ts)
    imp["ts_ms"] = ts
    imp["p_click"] = p
    imp["clicked"] = rng.random(len(imp)) < p
    tag = day.strftime("%Y%m%d")
    req_of = {u: f"req-{tag}-{i:06d}" for i, u in enumerate(sorted(set(users.tolist())))}
    imp["request_id"] = [req_of[u] for u in users]
    u_idx = world.user_index(users.tolist())
    base = pd.DataFrame(
        {
            "user_id": users,
            "item_id": imp["item_id"].to_numpy(dtype=object),
            "session_id": [r.replace("req-", "s-", 1) for r in imp["request_id"]],
            "request_id": imp["request_id"],
            "position": imp["position"].astype("int64"),
            "device": world.user_device[u_idx] if world.user_device is not None else None,
            "country": world.user_country[u_idx] if world.user_country is not None else None,
            "list_run_id": imp["list_run_id"],
            "arm": imp["arm"],
            "reason": imp["reason"],
        }
    )
    impressions = base.assign(
        event_type="impression",
        ts_ms=ts,
        propensity=imp["propensity"].astype(float),
        dwell_ms=pd.array([pd.NA] * len(base), dtype="Int64"),
    )
    c = imp["clicked"].to_numpy()
    clicks = base[c].assign(
        event_type="click",
        ts_ms=ts[c] + rng.integers(1_000, 60_001, size=int(c.sum())),
        propensity=np.nan,
        dwell_ms=pd.array([pd.NA] * int(c.sum()), dtype="Int64"),
    )
    has_read = rng.random(len(clicks)) < 0.85
    reads = clicks[has_read].assign(event_type="read")
    reads["ts_ms"] = reads["ts_ms"].to_numpy() + rng.integers(2_000, 15_001, size=len(reads))
    reads["dwell_ms"] = pd.array(
        np.clip(rng.lognormal(np.log(25_000), 0.8, size=len(reads)), 500, 1_200_000).astype(np.int64),
        dtype="Int64",
    )
    events = pd.concat([impressions, clicks, reads], ignore_index=True)
    events["event_id"] = [
        f"sim-{tag}-{e[0]}-{r}-{pos}"
        for e, r, pos in zip(events["event_type"], events["request_id"], events["position"])
    ]
    events["is_history"] = False
    return events.sort_values(["ts_ms", "event_id"], kind="stable").reset_index(drop=True), imp


def write_day(events: pd.DataFrame, day_dir: str | Path) -> int:
    """``day_dir/HH.jsonl`` per UTC hour, each written under a hidden name and renamed (a reader
    never sees half a file). Returns the number of files."""
    from pathlib import Path

    out = Path(day_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev = events.copy()
    hour = (ev["ts_ms"] // MS_HOUR) % 24
    ev["ts"] = (
        pd.to_datetime(ev["ts_ms"], unit="ms", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    )
    cols = list(C.RAW_FIELDS)  # every raw field, serving-log fields included
    n = 0
    for h, part in ev.groupby(hour, sort=True):
        tmp = out / f".{int(h):02d}.jsonl.tmp"
        text = part[cols].to_json(orient="records", lines=True, force_ascii=False)
        tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        tmp.replace(out / f"{int(h):02d}.jsonl")
        n += 1
    return n
