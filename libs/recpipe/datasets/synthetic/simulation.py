"""The simulated behaviour: sessions of requests, the lists a Plackett-Luce logging policy shows
(with their exact per-position propensities), the true clicks and their follow-up events; then the
sessions kept to hit the requested number of events, renumbered in time order (the clean log)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .common import CLICK, HIDE, IMP, LIKE, MS_HOUR, READ, SHARE, Array, rng
from .world import Items, Users, affinity, click_probability

# share of sessions starting in each UTC hour of the day (daily cycle, evening peak)
_HOUR_OF_DAY_W = (
    0.35
    + np.clip(np.sin((np.arange(24) - 7) / 24 * 2 * np.pi), -0.2, None)
    + 0.4 * np.exp(-((np.arange(24) - 19.5) ** 2) / 8)
)
MAX_DRAWS = 30  # Plackett-Luce draws per request (with replacement; repeats are skipped)


@dataclass(frozen=True)
class Sessions:
    """Per session: its user, whether a bot, its start (epoch ms), its number of requests."""

    user: Array
    bot: Array
    start: Array
    n_req: Array


@dataclass(frozen=True)
class Requests:
    """Per request: its session, time (epoch ms), hour of the window, list length."""

    sess: Array
    ts: Array
    hour: Array
    k: Array


@dataclass(frozen=True)
class Policy:
    """The logging policy per hour of the window: available items, softmax weights, their sums."""

    avail: Array
    w: Array
    total: Array


@dataclass(frozen=True)
class Shown:
    """Per impression: its request, item, 0-based position, propensity."""

    req: Array
    item: Array
    pos: Array
    prop: Array


@dataclass(frozen=True)
class Events:
    """Per event: its impression, type (``IMP``...), time (epoch ms), dwell (ms, -1 if none)."""

    imp: Array
    type: Array
    ts: Array
    dwell: Array


@dataclass(frozen=True)
class Simulation:
    """What :func:`simulate` returns: sessions in random (not time) order, their requests,
    impressions and events, and the number of events of each session."""

    s_user: Array
    s_start: Array
    r_sess: Array
    r_ts: Array
    shown: Shown
    i_ts: Array
    p_click: Array
    clicked: Array
    events: Events
    sess_events: Array


@dataclass(frozen=True)
class GroundTruth:
    """The kept impressions (one row of ground_truth.parquet each), in simulation order."""

    request: Array
    session: Array
    user: Array
    item: Array
    pos: Array
    prop: Array
    ts: Array
    p_click: Array
    clicked: Array


@dataclass(frozen=True)
class CleanEvents:
    """The clean events in canonical order (ts, request, type, position), with their fields;
    ``pos`` is -1 but for impressions and clicks, ``hour`` the hour of the window."""

    type: Array
    ts: Array
    dwell: Array
    user: Array
    item: Array
    request: Array
    session: Array
    pos: Array
    prop: Array
    hour: Array


# ----------------------------------------------------------------------------------------------------------------
# one simulation


def simulate(
    gen: np.random.Generator, n_sessions: int, users: Users, items: Items, start_ms: int, H: int
) -> Simulation:
    """Simulate ``n_sessions`` sessions in random (not time) order over ``H`` hours from ``start_ms``."""
    sessions = _sessions(gen, n_sessions, users, start_ms, H)
    requests = _requests(gen, sessions, start_ms)
    policy = _logging_policy(gen, items, start_ms, H)
    shown = _shown(gen, requests, policy)
    del policy
    i_ts = requests.ts[shown.req]
    i_sess = requests.sess[shown.req]
    i_user = sessions.user[i_sess]
    i_bot = users["is_bot"][i_user]
    # the ground-truth click model
    age_hours = (i_ts - items["pub"][shown.item]) / MS_HOUR
    aff = affinity(users["interest"][i_user, items["cat"][shown.item]], items["quality"][shown.item])
    p_click = click_probability(aff, shown.pos, age_hours, i_bot)
    clicked = gen.random(len(shown.item)) < p_click
    events = _follow_ups(gen, i_ts, i_bot, aff, clicked)
    return Simulation(
        s_user=sessions.user,
        s_start=sessions.start,
        r_sess=requests.sess,
        r_ts=requests.ts,
        shown=shown,
        i_ts=i_ts,
        p_click=p_click,
        clicked=clicked,
        events=events,
        sess_events=np.bincount(i_sess[events.imp], minlength=n_sessions),
    )


def _sessions(gen: np.random.Generator, n_sessions: int, users: Users, start_ms: int, H: int) -> Sessions:
    """Who starts each session (bots first, then humans by activity) when, with how many requests."""
    is_bot = users["is_bot"]
    bots = users["bots"]
    humans = np.flatnonzero(~is_bot)
    n_bot_sess = max(len(bots), int(round(0.004 * n_sessions)))
    n_bot_sess = min(n_bot_sess, max(1, n_sessions // 4))
    p_user = users["activity"][humans] / users["activity"][humans].sum()
    s_user = np.empty(n_sessions, dtype=np.int64)
    s_user[:n_bot_sess] = bots[np.arange(n_bot_sess) % len(bots)]
    s_user[n_bot_sess:] = humans[gen.choice(len(humans), size=n_sessions - n_bot_sess, p=p_user)]
    # session order: one session of each bot first (so bots survive truncation), rest random
    first = np.arange(min(len(bots), n_bot_sess))
    rest = gen.permutation(np.arange(len(first), n_sessions))
    order = np.r_[first, rest]
    s_user = s_user[order]
    s_bot = is_bot[s_user]
    # start hour from daily cycle (exclude the last hour so everything stays inside the window)
    hw = _HOUR_OF_DAY_W[np.arange(H - 1) % 24]
    s_hour = gen.choice(H - 1, size=n_sessions, p=hw / hw.sum())
    s_start = start_ms + s_hour * MS_HOUR + gen.integers(0, MS_HOUR, size=n_sessions)
    bot_hi = 16 if n_sessions >= 2000 else 6  # tiny worlds: keep bots from dominating the log
    n_req = np.where(
        s_bot,
        gen.integers(bot_hi // 3, bot_hi, size=n_sessions),
        gen.choice(np.arange(1, 6), size=n_sessions, p=[0.3, 0.25, 0.2, 0.15, 0.1]),
    )
    return Sessions(user=s_user, bot=s_bot, start=s_start, n_req=n_req)


def _requests(gen: np.random.Generator, sessions: Sessions, start_ms: int) -> Requests:
    """The requests of each session: bots seconds apart, humans up to minutes; a list length each."""
    n_req = sessions.n_req
    r_sess = np.repeat(np.arange(len(n_req)), n_req)
    R = len(r_sess)
    r_bot = sessions.bot[r_sess]
    gap = np.where(r_bot, gen.integers(1_000, 6_000, size=R), gen.integers(5_000, 240_000, size=R))
    sess_first = np.r_[0, np.cumsum(n_req)[:-1]]
    gap[sess_first] = 0
    cg = np.cumsum(gap)
    r_ts = sessions.start[r_sess] + cg - cg[sess_first][r_sess]
    r_hour = (r_ts - start_ms) // MS_HOUR
    r_k = gen.integers(5, 11, size=R)
    return Requests(sess=r_sess, ts=r_ts, hour=r_hour, k=r_k)


# ----------------------------------------------------------------------------------------------------------------
# the logging policy: per hour softmax weights over available items (log quality + freshness + noise)


def _logging_policy(gen: np.random.Generator, items: Items, start_ms: int, H: int) -> Policy:
    """Per hour of the window: the items available all hour and their softmax weights (0 if not)."""
    n_items = len(items["pub"])
    hour_start = start_ms + np.arange(H, dtype=np.int64) * MS_HOUR
    avail = (items["pub"][None, :] <= hour_start[:, None]) & (
        items["exp"][None, :] >= hour_start[:, None] + MS_HOUR
    )
    age_h = (hour_start[:, None] - items["pub"][None, :]) / MS_HOUR
    score = (
        np.log(items["quality"])[None, :]
        - 0.02 * np.clip(age_h, 0, None)
        + 0.4 * gen.standard_normal((H, n_items))
    )
    score = np.where(avail, score, -np.inf)
    score -= np.max(score, axis=1, keepdims=True)
    w = np.exp(score)  # 0 where unavailable
    del score, age_h
    return Policy(avail=avail, w=w, total=w.sum(axis=1))


def _shown(gen: np.random.Generator, requests: Requests, policy: Policy) -> Shown:
    """The list of each request: sequential softmax draws without replacement (Plackett-Luce)."""
    i_req, i_item, i_pos = _draw_lists(gen, requests, policy)
    return Shown(req=i_req, item=i_item, pos=i_pos, prop=_propensities(i_req, i_item, requests.hour, policy))


def _draw_lists(gen: np.random.Generator, requests: Requests, policy: Policy) -> tuple[Array, Array, Array]:
    """(request, item, position) of every shown item: ``MAX_DRAWS`` draws per request from its
    hour's weights, the first ``k`` distinct available items in draw order."""
    H, n_items = policy.w.shape
    r_hour = requests.hour
    c = np.cumsum(policy.w, axis=1) / policy.total[:, None]
    c[:, -1] = 1.0
    flat = (c + np.arange(H)[:, None]).ravel()
    del c
    u = gen.random((len(r_hour), MAX_DRAWS)) * (1 - 1e-12) + r_hour[:, None]
    draw = np.searchsorted(flat, u.ravel(), side="right").reshape(len(r_hour), MAX_DRAWS)
    del flat, u
    draw = np.minimum(draw, H * n_items - 1) - r_hour[:, None] * n_items  # item index within the hour row
    draw = np.clip(draw, 0, n_items - 1)
    valid = policy.avail[r_hour[:, None], draw]
    o = np.argsort(draw, axis=1, kind="stable")
    sd = np.take_along_axis(draw, o, axis=1)
    firsts = np.ones_like(sd, dtype=bool)
    firsts[:, 1:] = sd[:, 1:] != sd[:, :-1]
    first_occ = np.empty_like(firsts)
    np.put_along_axis(first_occ, o, firsts, axis=1)
    first_occ &= valid
    rank = np.cumsum(first_occ, axis=1) - 1
    take = first_occ & (rank < requests.k[:, None])
    rows, cols = np.nonzero(take)
    return rows, draw[rows, cols], rank[rows, cols]


def _propensities(i_req: Array, i_item: Array, r_hour: Array, policy: Policy) -> Array:
    """Exact Plackett-Luce probability of each shown item at its position given the items above it."""
    wi = policy.w[r_hour[i_req], i_item]
    cs = np.cumsum(wi)
    row_first = np.r_[0, np.flatnonzero(np.diff(i_req)) + 1]
    seg_len = np.diff(np.r_[row_first, len(i_req)])
    base_cs = np.repeat(cs[row_first] - wi[row_first], seg_len)
    prior = cs - wi - base_cs
    denom = policy.total[r_hour[i_req]] - prior
    prop: Array = np.minimum(wi / denom, 1.0)
    return prop


# ----------------------------------------------------------------------------------------------------------------
# follow-up events of the clicks


def _follow_ups(gen: np.random.Generator, i_ts: Array, i_bot: Array, aff: Array, clicked: Array) -> Events:
    """All events: the impressions, their clicks, reads (with dwell) of clicks, likes of reads,
    shares of clicks and hides of unclicked impressions (bots neither like, share nor hide)."""
    n_imp = len(i_ts)
    ci = np.flatnonzero(clicked)
    c_ts = i_ts[ci] + gen.integers(1_000, 60_001, size=len(ci))
    cb = i_bot[ci]
    has_read = gen.random(len(ci)) < np.where(cb, 0.9, 0.85)
    ri = ci[has_read]
    r_ts_ev = c_ts[has_read] + gen.integers(2_000, 15_001, size=len(ri))
    rb = i_bot[ri]
    dwell_h = gen.lognormal(np.log(25_000) + 0.35 * np.log(np.maximum(aff[ri], 1e-3)), 0.8)
    dwell = np.where(rb, gen.integers(50, 500, size=len(ri)), np.clip(dwell_h, 500, 1_200_000)).astype(
        np.int64
    )
    has_like = (~rb) & (gen.random(len(ri)) < 0.06)
    li = ri[has_like]
    l_ts = r_ts_ev[has_like] + gen.integers(1_000, 60_001, size=len(li))
    has_share = (~cb) & (gen.random(len(ci)) < 0.02)
    shi = ci[has_share]
    sh_ts = c_ts[has_share] + gen.integers(3_000, 120_001, size=len(shi))
    nci = np.flatnonzero(~clicked & ~i_bot)
    has_hide = gen.random(len(nci)) < 0.005
    hi = nci[has_hide]
    h_ts = i_ts[hi] + gen.integers(2_000, 30_001, size=len(hi))
    return Events(
        imp=np.concatenate([np.arange(n_imp), ci, ri, li, shi, hi]),
        type=np.concatenate(
            [
                np.full(n_imp, IMP),
                np.full(len(ci), CLICK),
                np.full(len(ri), READ),
                np.full(len(li), LIKE),
                np.full(len(shi), SHARE),
                np.full(len(hi), HIDE),
            ]
        ).astype(np.int8),
        ts=np.concatenate([i_ts, c_ts, r_ts_ev, l_ts, sh_ts, h_ts]).astype(np.int64),
        dwell=np.concatenate(
            [np.full(n_imp, -1), np.full(len(ci), -1), dwell, np.full(len(li) + len(shi) + len(hi), -1)]
        ),
    )


# ----------------------------------------------------------------------------------------------------------------
# the clean log: whole sessions kept to hit the target, renumbered in time order


def simulate_log(
    seed: int, events: int, users: Users, items: Items, start_ms: int, H: int, say: Callable[[str], None]
) -> tuple[GroundTruth, CleanEvents]:
    """Simulate with oversampling, keep a subset of whole sessions hitting ``events`` events."""
    sim, keep_s = _simulate_enough(seed, events, users, items, start_ms, H, say)
    truth, e_imp, ev_sel = _kept(sim, keep_s)
    events_kept = Events(
        imp=e_imp, type=sim.events.type[ev_sel], ts=sim.events.ts[ev_sel], dwell=sim.events.dwell[ev_sel]
    )
    del sim
    return truth, _clean_events(truth, events_kept, start_ms, H)


def _simulate_enough(
    seed: int, events: int, users: Users, items: Items, start_ms: int, H: int, say: Callable[[str], None]
) -> tuple[Simulation, Array]:
    """A simulation with at least ``events`` events (each attempt doubles the sessions), and the
    sessions kept."""
    factor = 1.4
    for attempt in range(6):
        n_sess = int(events / 20.0 * factor) + 20
        say(f"simulating {n_sess} sessions (attempt {attempt})")
        sim = simulate(rng(seed, 100 + attempt), n_sess, users, items, start_ms, H)
        keep_s = _select_sessions(sim.sess_events, events)
        if keep_s is not None:
            return sim, keep_s
        factor *= 2
    raise RuntimeError("could not reach the requested number of events")  # pragma: no cover


def _select_sessions(sess_events: Array, target: int) -> Array | None:
    """Sessions kept: a prefix up to ``target`` events, then later ones that fit the remainder;
    None if all sessions together have fewer events."""
    cs = np.cumsum(sess_events)
    if cs[-1] < target:
        return None
    keep: Array = cs <= target
    total = int(cs[keep][-1]) if keep.any() else 0
    for j in np.flatnonzero(~keep).tolist():  # greedy fill of the remainder (a session is atomic)
        gap = target - total
        if gap <= 3:
            break
        if sess_events[j] <= gap:
            keep[j] = True
            total += int(sess_events[j])
    return keep


def _kept(sim: Simulation, keep_s: Array) -> tuple[GroundTruth, Array, Array]:
    """The impressions of the kept sessions, sessions and requests renumbered in time order; and
    the kept events (their indices in ``sim.events``) with their impression among the kept."""
    kept_sess = np.flatnonzero(keep_s)
    sess_order = kept_sess[np.lexsort((kept_sess, sim.s_start[kept_sess]))]
    sess_new = np.full(len(keep_s), -1, dtype=np.int64)
    sess_new[sess_order] = np.arange(len(sess_order))
    req_keep = keep_s[sim.r_sess]
    req_idx = np.flatnonzero(req_keep)
    req_order = req_idx[np.lexsort((req_idx, sim.r_ts[req_idx], sess_new[sim.r_sess[req_idx]]))]
    req_new = np.full(len(req_keep), -1, dtype=np.int64)
    req_new[req_order] = np.arange(len(req_order))

    imp_keep = req_keep[sim.shown.req]
    imp_idx = np.flatnonzero(imp_keep)
    imp_new = np.full(len(imp_keep), -1, dtype=np.int64)
    imp_new[imp_idx] = np.arange(len(imp_idx))
    ev_sel = np.flatnonzero(imp_keep[sim.events.imp])
    e_imp = imp_new[sim.events.imp[ev_sel]]  # index into kept impressions

    k_req = sim.shown.req[imp_idx]
    truth = GroundTruth(
        request=req_new[k_req],
        session=sess_new[sim.r_sess[k_req]],
        user=sim.s_user[sim.r_sess[k_req]],
        item=sim.shown.item[imp_idx],
        pos=sim.shown.pos[imp_idx],
        prop=sim.shown.prop[imp_idx],
        ts=sim.i_ts[imp_idx],
        p_click=sim.p_click[imp_idx],
        clicked=sim.clicked[imp_idx],
    )
    return truth, e_imp, ev_sel


def _clean_events(truth: GroundTruth, kept: Events, start_ms: int, H: int) -> CleanEvents:
    """The kept events in canonical order (ts, request, type, position), with their fields."""
    o = np.lexsort((truth.pos[kept.imp], kept.type, truth.request[kept.imp], kept.ts))
    e_imp, e_type, e_ts = kept.imp[o], kept.type[o], kept.ts[o]
    e_hour = (e_ts - start_ms) // MS_HOUR
    assert e_hour.min() >= 0 and e_hour.max() < H
    return CleanEvents(
        type=e_type,
        ts=e_ts,
        dwell=kept.dwell[o],
        user=truth.user[e_imp],
        item=truth.item[e_imp],
        request=truth.request[e_imp],
        session=truth.session[e_imp],
        pos=np.where((e_type == IMP) | (e_type == CLICK), truth.pos[e_imp], -1),
        prop=truth.prop[e_imp],
        hour=e_hour,
    )
