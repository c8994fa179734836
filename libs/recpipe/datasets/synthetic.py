"""Synthetic media event-log generator: the embedded default data of recpipe.

Produces a raw "landing zone" that looks like real delivery logs of a news recommender:

    OUT/events/YYYY-MM-DD/HH.jsonl   one JSON object per line, file = UTC hour the line was DELIVERED
    OUT/items.jsonl                  item catalog
    OUT/ground_truth.parquet         one row per clean impression with the true click probability
    OUT/manifest.json                generator parameters and exact counts

Every quantity is drawn from ``numpy.random.default_rng`` streams derived from ``seed`` so the output is
byte-identical for identical arguments. The click model is known (``p_click``), the logging policy is a
Plackett-Luce (sequential softmax without replacement) sampler whose exact per-position propensities are logged.

Dirt (``dirty=True``): every injected record has exactly one defect; ingest is expected to classify lines in
the order malformed -> missing_field -> unknown_event_type -> bad_timestamp -> future_timestamp -> duplicate.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["GenerationReport", "generate", "EVENT_TYPES", "QUARANTINE_REASONS"]

EVENT_TYPES = ("impression", "click", "read", "like", "share", "hide")
QUARANTINE_REASONS = ("malformed", "missing_field", "unknown_event_type", "bad_timestamp", "future_timestamp")
REQUIRED_FIELDS = ("user_id", "item_id", "event_type", "ts")

IMP, CLICK, READ, LIKE, SHARE, HIDE = range(6)

CATEGORIES = {
    "news": (
        ["politics", "world", "local"],
        [
            "government",
            "election",
            "minister",
            "policy",
            "vote",
            "parliament",
            "crisis",
            "protest",
            "court",
            "law",
            "president",
            "senate",
            "campaign",
            "debate",
            "reform",
            "border",
            "summit",
            "treaty",
            "mayor",
            "council",
            "official",
            "report",
            "investigation",
            "scandal",
            "citizens",
            "city",
            "region",
            "nation",
            "agency",
            "statement",
            "leader",
            "party",
            "coalition",
            "budget",
            "tax",
            "rally",
            "ruling",
            "vote",
            "capital",
            "diplomat",
        ],
    ),
    "sports": (
        ["football", "tennis", "basketball", "motorsport"],
        [
            "match",
            "goal",
            "team",
            "coach",
            "league",
            "season",
            "champion",
            "final",
            "player",
            "transfer",
            "stadium",
            "score",
            "victory",
            "defeat",
            "tournament",
            "cup",
            "injury",
            "striker",
            "keeper",
            "derby",
            "title",
            "record",
            "medal",
            "race",
            "lap",
            "serve",
            "court",
            "fans",
            "referee",
            "penalty",
            "draw",
            "squad",
            "captain",
            "playoff",
            "coach",
            "win",
            "loss",
            "athlete",
            "olympic",
            "sprint",
        ],
    ),
    "finance": (
        ["markets", "economy", "personal"],
        [
            "market",
            "stocks",
            "shares",
            "investor",
            "bank",
            "interest",
            "rates",
            "inflation",
            "earnings",
            "profit",
            "revenue",
            "bond",
            "currency",
            "dollar",
            "euro",
            "trade",
            "deal",
            "merger",
            "fund",
            "index",
            "crash",
            "rally",
            "growth",
            "recession",
            "loan",
            "mortgage",
            "savings",
            "pension",
            "crypto",
            "bitcoin",
            "dividend",
            "quarter",
            "forecast",
            "analyst",
            "debt",
            "credit",
            "wall",
            "street",
            "tariff",
            "startup",
        ],
    ),
    "tech": (
        ["gadgets", "software", "ai", "security"],
        [
            "smartphone",
            "laptop",
            "software",
            "app",
            "update",
            "chip",
            "processor",
            "cloud",
            "data",
            "privacy",
            "hack",
            "breach",
            "startup",
            "robot",
            "algorithm",
            "model",
            "launch",
            "device",
            "battery",
            "screen",
            "network",
            "internet",
            "browser",
            "platform",
            "developer",
            "code",
            "open",
            "source",
            "silicon",
            "quantum",
            "server",
            "engineer",
            "feature",
            "release",
            "users",
            "gaming",
            "console",
            "camera",
            "wearable",
            "satellite",
        ],
    ),
    "entertainment": (
        ["movies", "music", "tv"],
        [
            "movie",
            "film",
            "actor",
            "actress",
            "director",
            "premiere",
            "album",
            "song",
            "concert",
            "tour",
            "band",
            "singer",
            "series",
            "episode",
            "season",
            "streaming",
            "award",
            "festival",
            "celebrity",
            "star",
            "trailer",
            "sequel",
            "box",
            "office",
            "show",
            "drama",
            "comedy",
            "documentary",
            "studio",
            "cast",
            "role",
            "hit",
            "chart",
            "fans",
            "red",
            "carpet",
            "oscar",
            "netflix",
            "stage",
            "musical",
        ],
    ),
    "health": (
        ["fitness", "medicine", "nutrition"],
        [
            "health",
            "doctor",
            "hospital",
            "patient",
            "study",
            "research",
            "vaccine",
            "virus",
            "disease",
            "treatment",
            "drug",
            "therapy",
            "cancer",
            "heart",
            "brain",
            "sleep",
            "stress",
            "diet",
            "exercise",
            "fitness",
            "workout",
            "weight",
            "mental",
            "wellbeing",
            "clinic",
            "nurse",
            "symptoms",
            "risk",
            "trial",
            "medicine",
            "protein",
            "vitamin",
            "running",
            "yoga",
            "calories",
            "immune",
            "care",
            "aging",
            "blood",
            "pressure",
        ],
    ),
    "travel": (
        ["destinations", "tips"],
        [
            "travel",
            "trip",
            "flight",
            "airline",
            "airport",
            "hotel",
            "beach",
            "island",
            "mountain",
            "city",
            "tourists",
            "vacation",
            "holiday",
            "cruise",
            "passport",
            "visa",
            "destination",
            "guide",
            "museum",
            "adventure",
            "hiking",
            "road",
            "train",
            "journey",
            "booking",
            "luggage",
            "resort",
            "camping",
            "coast",
            "lake",
            "village",
            "culture",
            "explore",
            "weekend",
            "budget",
            "luxury",
            "summer",
            "winter",
            "ski",
            "sunset",
        ],
    ),
    "food": (
        ["recipes", "restaurants", "drinks"],
        [
            "recipe",
            "cooking",
            "chef",
            "restaurant",
            "kitchen",
            "dinner",
            "lunch",
            "breakfast",
            "pasta",
            "pizza",
            "bread",
            "cake",
            "dessert",
            "chocolate",
            "coffee",
            "tea",
            "wine",
            "beer",
            "cocktail",
            "salad",
            "soup",
            "grill",
            "vegan",
            "vegetarian",
            "cheese",
            "spicy",
            "flavor",
            "ingredients",
            "baking",
            "menu",
            "taste",
            "seafood",
            "burger",
            "street",
            "market",
            "organic",
            "sauce",
            "noodles",
            "sushi",
            "brunch",
        ],
    ),
    "autos": (
        ["cars", "electric", "reviews"],
        [
            "car",
            "vehicle",
            "engine",
            "electric",
            "battery",
            "charging",
            "tesla",
            "sedan",
            "suv",
            "truck",
            "hybrid",
            "motor",
            "fuel",
            "mileage",
            "speed",
            "driver",
            "road",
            "safety",
            "crash",
            "recall",
            "model",
            "design",
            "interior",
            "price",
            "dealer",
            "sales",
            "autonomous",
            "brake",
            "tires",
            "horsepower",
            "range",
            "test",
            "drive",
            "review",
            "luxury",
            "compact",
            "racing",
            "garage",
            "highway",
            "factory",
        ],
    ),
    "science": (
        ["space", "climate", "nature"],
        [
            "science",
            "scientists",
            "space",
            "nasa",
            "planet",
            "mars",
            "moon",
            "star",
            "galaxy",
            "telescope",
            "rocket",
            "orbit",
            "climate",
            "warming",
            "carbon",
            "emissions",
            "ocean",
            "species",
            "animals",
            "fossil",
            "dinosaur",
            "evolution",
            "physics",
            "experiment",
            "discovery",
            "energy",
            "solar",
            "wind",
            "forest",
            "ice",
            "glacier",
            "storm",
            "earthquake",
            "volcano",
            "genes",
            "cells",
            "laboratory",
            "theory",
            "asteroid",
            "comet",
        ],
    ),
}
SHARED_WORDS = [
    "new",
    "first",
    "best",
    "top",
    "how",
    "why",
    "what",
    "year",
    "week",
    "today",
    "big",
    "small",
    "world",
    "people",
    "life",
    "time",
    "day",
    "future",
    "report",
    "says",
    "could",
    "will",
    "after",
    "before",
    "over",
    "under",
    "more",
    "less",
    "most",
    "major",
    "latest",
    "inside",
    "secret",
    "simple",
    "ways",
    "things",
    "know",
    "need",
    "change",
    "rise",
    "fall",
    "plan",
    "story",
    "guide",
    "look",
    "return",
    "surprise",
    "record",
    "high",
    "low",
    "free",
    "real",
    "old",
    "young",
    "long",
    "short",
    "open",
    "late",
    "early",
    "home",
]
PUBLISHERS = [
    "Daily Ledger",
    "Metro Herald",
    "The Signal",
    "Northwind Post",
    "Civic Times",
    "Open Wire",
    "Bluefield News",
    "Quarterly Review",
    "Pulse Media",
    "Harbor Gazette",
    "Summit Press",
    "Atlas Report",
]
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "CA", "ES", "NL", "JP"]
COUNTRY_P = np.array([0.38, 0.14, 0.11, 0.08, 0.08, 0.06, 0.05, 0.04, 0.03, 0.03])
DEVICES = ["mobile", "desktop", "tablet"]
DEVICE_P = np.array([0.62, 0.30, 0.08])
# share of sessions starting in each UTC hour of the day (daily cycle, evening peak)
_HOUR_OF_DAY_W = (
    0.35
    + np.clip(np.sin((np.arange(24) - 7) / 24 * 2 * np.pi), -0.2, None)
    + 0.4 * np.exp(-((np.arange(24) - 19.5) ** 2) / 8)
)
TS_OFFSETS_MIN = [60, 120, 330, -240, -420, 540, -180, 600]

ODD_CASE = {
    "impression": ["Impression", " IMPRESSION ", "impression ", " impression", "IMPRESSION"],
    "click": ["Click", " CLICK", "click ", " Click ", "CLICK"],
    "read": ["Read", "READ ", " read", " Read", "READ"],
    "like": ["Like", " LIKE", "like ", "LIKE"],
    "share": ["Share", "SHARE ", " share", "SHARE"],
    "hide": ["Hide", " HIDE", "hide ", "HIDE"],
}
UNKNOWN_TYPES = [
    "hover",
    "scroll_depth",
    "view_start",
    "dwell",
    "clicked",
    "impresion",
    "bookmark",
    "swipe",
    "video_play",
    "unknown",
]
BAD_TS_STRINGS = [
    "yesterday",
    "2026-13-45T99:00:00Z",
    "03/10/2026 xx",
    "not-a-date",
    "NaN",
    "2026-02-30T10:00:00Z",
    "T12:00:00",
    "2026/10/03 25:61",
    "0000-00-00 00:00:00",
    "1999-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00.000Z",
]
GARBAGE_LINES = [
    "\x00\x00\x00\x00",
    "#!@@@ garbage ~~~",
    "<html><body>502 Bad Gateway</body></html>",
    "\udcff\udcfe\udc80garbage\udcc3",
    "user_id=U0000001&item_id=N000001",
    "}{",
    "null",
    "42",
]

_MS_HOUR = 3_600_000
_MS_DAY = 86_400_000
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


@dataclass
class GenerationReport:
    out_dir: str
    events_requested: int
    seed: int
    start: str
    days: int
    dirty: bool
    lines_total: int = 0
    clean_events: int = 0
    duplicates: int = 0
    quarantined: dict = field(default_factory=dict)
    late_events: int = 0
    impressions: int = 0
    clicks: int = 0
    reads: int = 0
    likes: int = 0
    shares: int = 0
    hides: int = 0
    users: int = 0
    catalog_users: int = 0
    items: int = 0
    bot_users: list = field(default_factory=list)
    files: int = 0
    ctr: float = 0.0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(stream)])


def _iso(ms: np.ndarray) -> list[str]:
    """'YYYY-MM-DDTHH:MM:SS.fff' (no zone) for int64 epoch millis."""
    if len(ms) == 0:
        return []
    return np.datetime_as_string(np.asarray(ms, dtype="int64").astype("datetime64[ms]"), unit="ms").tolist()


def _iso_z(ms: int) -> str:
    return _iso(np.array([ms]))[0] + "Z"


def _format_ts(ms: np.ndarray, fmt: np.ndarray, off_idx: np.ndarray) -> list[str]:
    """JSON fragments for ts: fmt 0 ISO Z, 1 ISO +offset, 2 epoch-ms int, 3 naive (UTC)."""
    n = len(ms)
    out: list[str] = [""] * n
    for f in range(4):
        idx = np.flatnonzero(fmt == f)
        if len(idx) == 0:
            continue
        sub = ms[idx]
        if f == 0:
            vals = ['"' + s + 'Z"' for s in _iso(sub)]
        elif f == 1:
            offs = np.asarray(TS_OFFSETS_MIN, dtype=np.int64)[off_idx[idx]]
            suffix_of = {
                o: ("+" if o >= 0 else "-") + f"{abs(o) // 60:02d}:{abs(o) % 60:02d}" for o in TS_OFFSETS_MIN
            }
            vals = ['"' + s + suffix_of[o] + '"' for s, o in zip(_iso(sub + offs * 60_000), offs.tolist())]
        elif f == 2:
            vals = [str(v) for v in sub.tolist()]
        else:
            vals = ['"' + s.replace("T", " ") + '"' for s in _iso(sub)]
        for i, v in zip(idx.tolist(), vals):
            out[i] = v
    return out


def _choose_fmt(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    fmt = rng.choice(4, size=n, p=[0.7, 0.1, 0.1, 0.1])
    off = rng.integers(0, len(TS_OFFSETS_MIN), size=n)
    return fmt, off


def _etype_strings(rng: np.random.Generator, etype: np.ndarray, odd_share: float = 0.02) -> list[str]:
    names = np.array(EVENT_TYPES, dtype=object)[etype]
    odd = np.flatnonzero(rng.random(len(etype)) < odd_share)
    pick = rng.integers(0, 1 << 30, size=len(odd))
    for i, p in zip(odd.tolist(), pick.tolist()):
        variants = ODD_CASE[names[i]]
        names[i] = variants[p % len(variants)]
    return names.tolist()


# ----------------------------------------------------------------------------------------------------------------
# world


def _make_items(rng, n_items, start_ms, end_ms):
    cats = list(CATEGORIES)
    cat_p = rng.dirichlet(np.full(len(cats), 8.0))
    cat = rng.choice(len(cats), size=n_items, p=cat_p)
    pub = rng.integers(start_ms - 7 * _MS_DAY, end_ms, size=n_items)
    pub = np.sort(pub)  # item ids in publication order
    rng.shuffle(cat)
    life_days = rng.integers(1, 31, size=n_items)
    exp = pub + life_days * _MS_DAY - rng.integers(0, _MS_DAY, size=n_items)
    evergreen = rng.random(n_items) < 0.10
    exp = np.where(evergreen, np.iinfo(np.int64).max, exp)
    quality = rng.lognormal(0.0, 0.6, size=n_items)
    quality = quality / quality.mean()
    blocked = rng.random(n_items) < 0.01
    publisher = rng.choice(len(PUBLISHERS), size=n_items, p=rng.dirichlet(np.full(len(PUBLISHERS), 3.0)))
    n_title = rng.integers(5, 11, size=n_items)
    n_text = rng.integers(30, 61, size=n_items)
    n_tags = rng.integers(1, 4, size=n_items)
    subcat = rng.integers(0, 1 << 30, size=n_items)
    records = []
    shared = np.array(SHARED_WORDS, dtype=object)
    for i in range(n_items):
        cname = cats[cat[i]]
        subs, vocab = CATEGORIES[cname]
        vocab = np.array(vocab, dtype=object)
        nt, nx = int(n_title[i]), int(n_text[i])
        from_cat = rng.random(nt + nx) < np.r_[np.full(nt, 0.75), np.full(nx, 0.55)]
        cw = vocab[rng.integers(0, len(vocab), size=nt + nx)]
        sw = shared[rng.integers(0, len(shared), size=nt + nx)]
        words = np.where(from_cat, cw, sw).tolist()
        title = " ".join(words[:nt])
        title = title[0].upper() + title[1:]
        text = " ".join(words[nt:]) + "."
        text = text[0].upper() + text[1:]
        tags = list(dict.fromkeys(vocab[rng.integers(0, len(vocab), size=int(n_tags[i]))].tolist()))
        records.append(
            {
                "item_id": f"N{i:06d}",
                "title": title,
                "text": text,
                "category": cname,
                "subcategory": subs[int(subcat[i]) % len(subs)],
                "tags": tags,
                "publisher": PUBLISHERS[publisher[i]],
                "published_ts": _iso_z(int(pub[i])),
                "expires_ts": None if evergreen[i] else _iso_z(int(exp[i])),
                "language": "en",
                "status": "blocked" if blocked[i] else "active",
            }
        )
    return dict(cat=cat, pub=pub, exp=exp, quality=quality, records=records)


def _make_users(rng, n_users, n_bots):
    interest = rng.dirichlet(np.full(len(CATEGORIES), 0.3), size=n_users)
    activity = rng.lognormal(0.0, 1.1, size=n_users)
    country = rng.choice(len(COUNTRIES), size=n_users, p=COUNTRY_P)
    device = rng.choice(len(DEVICES), size=n_users, p=DEVICE_P)
    is_bot = np.zeros(n_users, dtype=bool)
    bots = np.sort(rng.choice(n_users, size=n_bots, replace=False))
    is_bot[bots] = True
    device[bots] = 1  # desktop scrapers
    ids = np.array([f"U{i:07d}" for i in range(n_users)], dtype=object)
    return dict(
        interest=interest,
        activity=activity,
        country=country,
        device=device,
        is_bot=is_bot,
        bots=bots,
        ids=ids,
    )


# ----------------------------------------------------------------------------------------------------------------
# behaviour


def _simulate(rng, n_sessions, users, items, start_ms, H):
    """Simulate n_sessions sessions in random (not time) order. Returns per-event arrays + per-session counts."""
    n_items = len(items["pub"])
    is_bot = users["is_bot"]
    bots = users["bots"]
    humans = np.flatnonzero(~is_bot)
    # --- sessions
    n_bot_sess = max(len(bots), int(round(0.004 * n_sessions)))
    n_bot_sess = min(n_bot_sess, max(1, n_sessions // 4))
    p_user = users["activity"][humans] / users["activity"][humans].sum()
    s_user = np.empty(n_sessions, dtype=np.int64)
    s_user[:n_bot_sess] = bots[np.arange(n_bot_sess) % len(bots)]
    s_user[n_bot_sess:] = humans[rng.choice(len(humans), size=n_sessions - n_bot_sess, p=p_user)]
    # session order: one session of each bot first (so bots survive truncation), rest random
    first = np.arange(min(len(bots), n_bot_sess))
    rest = rng.permutation(np.arange(len(first), n_sessions))
    order = np.r_[first, rest]
    s_user = s_user[order]
    s_bot = is_bot[s_user]
    # start hour from daily cycle (exclude the last hour so everything stays inside the window)
    hw = _HOUR_OF_DAY_W[np.arange(H - 1) % 24]
    s_hour = rng.choice(H - 1, size=n_sessions, p=hw / hw.sum())
    s_start = start_ms + s_hour * _MS_HOUR + rng.integers(0, _MS_HOUR, size=n_sessions)
    bot_hi = 16 if n_sessions >= 2000 else 6  # tiny worlds: keep bots from dominating the log
    n_req = np.where(
        s_bot,
        rng.integers(bot_hi // 3, bot_hi, size=n_sessions),
        rng.choice(np.arange(1, 6), size=n_sessions, p=[0.3, 0.25, 0.2, 0.15, 0.1]),
    )
    # --- requests
    r_sess = np.repeat(np.arange(n_sessions), n_req)
    R = len(r_sess)
    r_bot = s_bot[r_sess]
    gap = np.where(r_bot, rng.integers(1_000, 6_000, size=R), rng.integers(5_000, 240_000, size=R))
    sess_first = np.r_[0, np.cumsum(n_req)[:-1]]
    gap[sess_first] = 0
    cg = np.cumsum(gap)
    r_ts = s_start[r_sess] + cg - cg[sess_first][r_sess]
    r_hour = (r_ts - start_ms) // _MS_HOUR
    r_k = rng.integers(5, 11, size=R)
    # --- logging policy: per hour softmax weights over available items (log quality + freshness + noise)
    hour_start = start_ms + np.arange(H, dtype=np.int64) * _MS_HOUR
    avail = (items["pub"][None, :] <= hour_start[:, None]) & (
        items["exp"][None, :] >= hour_start[:, None] + _MS_HOUR
    )
    age_h = (hour_start[:, None] - items["pub"][None, :]) / _MS_HOUR
    score = (
        np.log(items["quality"])[None, :]
        - 0.02 * np.clip(age_h, 0, None)
        + 0.4 * rng.standard_normal((H, n_items))
    )
    score = np.where(avail, score, -np.inf)
    score -= np.max(score, axis=1, keepdims=True)
    w = np.exp(score)  # 0 where unavailable
    del score, age_h
    T = w.sum(axis=1)
    c = np.cumsum(w, axis=1) / T[:, None]
    c[:, -1] = 1.0
    flat = (c + np.arange(H)[:, None]).ravel()
    del c
    M = 30
    u = rng.random((R, M)) * (1 - 1e-12) + r_hour[:, None]
    draw = np.searchsorted(flat, u.ravel(), side="right").reshape(R, M)
    draw = np.minimum(draw, H * n_items - 1) - r_hour[:, None] * n_items  # item index within the hour row
    draw = np.clip(draw, 0, n_items - 1)
    valid = avail[r_hour[:, None], draw]
    o = np.argsort(draw, axis=1, kind="stable")
    sd = np.take_along_axis(draw, o, axis=1)
    firsts = np.ones_like(sd, dtype=bool)
    firsts[:, 1:] = sd[:, 1:] != sd[:, :-1]
    first_occ = np.empty_like(firsts)
    np.put_along_axis(first_occ, o, firsts, axis=1)
    first_occ &= valid
    rank = np.cumsum(first_occ, axis=1) - 1
    take = first_occ & (rank < r_k[:, None])
    rows, cols = np.nonzero(take)
    i_req = rows
    i_item = draw[rows, cols]
    i_pos = rank[rows, cols]
    wi = w[r_hour[i_req], i_item]
    cs = np.cumsum(wi)
    row_first = np.r_[0, np.flatnonzero(np.diff(i_req)) + 1]
    seg_len = np.diff(np.r_[row_first, len(i_req)])
    base_cs = np.repeat(cs[row_first] - wi[row_first], seg_len)
    prior = cs - wi - base_cs
    denom = T[r_hour[i_req]] - prior
    prop = np.minimum(wi / denom, 1.0)
    del w, flat, draw, u, o, sd, firsts, first_occ, rank, take
    # --- ground-truth click model
    i_ts = r_ts[i_req]
    i_sess = r_sess[i_req]
    i_user = s_user[i_sess]
    i_bot = is_bot[i_user]
    age_hours = (i_ts - items["pub"][i_item]) / _MS_HOUR
    fresh = 0.3 + 0.7 * np.power(0.5, age_hours / 36.0)
    aff = len(CATEGORIES) * users["interest"][i_user, items["cat"][i_item]] * items["quality"][i_item]
    pos_bias = 1.0 / np.power(1.0 + i_pos, 0.8)
    p_click = np.clip(0.16 * aff * pos_bias * fresh, 0.0, 0.95)
    p_click = np.where(i_bot, 0.9, p_click)
    clicked = rng.random(len(i_item)) < p_click
    n_imp = len(i_item)
    # --- follow-up events
    ci = np.flatnonzero(clicked)
    c_ts = i_ts[ci] + rng.integers(1_000, 60_001, size=len(ci))
    cb = i_bot[ci]
    has_read = rng.random(len(ci)) < np.where(cb, 0.9, 0.85)
    ri = ci[has_read]
    r_ts_ev = c_ts[has_read] + rng.integers(2_000, 15_001, size=len(ri))
    rb = i_bot[ri]
    dwell_h = rng.lognormal(np.log(25_000) + 0.35 * np.log(np.maximum(aff[ri], 1e-3)), 0.8)
    dwell = np.where(rb, rng.integers(50, 500, size=len(ri)), np.clip(dwell_h, 500, 1_200_000)).astype(
        np.int64
    )
    has_like = (~rb) & (rng.random(len(ri)) < 0.06)
    li = ri[has_like]
    l_ts = r_ts_ev[has_like] + rng.integers(1_000, 60_001, size=len(li))
    has_share = (~cb) & (rng.random(len(ci)) < 0.02)
    shi = ci[has_share]
    sh_ts = c_ts[has_share] + rng.integers(3_000, 120_001, size=len(shi))
    nci = np.flatnonzero(~clicked & ~i_bot)
    has_hide = rng.random(len(nci)) < 0.005
    hi = nci[has_hide]
    h_ts = i_ts[hi] + rng.integers(2_000, 30_001, size=len(hi))
    # --- assemble events: (imp index, type, ts, dwell)
    ev_imp = np.concatenate([np.arange(n_imp), ci, ri, li, shi, hi])
    ev_type = np.concatenate(
        [
            np.full(n_imp, IMP),
            np.full(len(ci), CLICK),
            np.full(len(ri), READ),
            np.full(len(li), LIKE),
            np.full(len(shi), SHARE),
            np.full(len(hi), HIDE),
        ]
    ).astype(np.int8)
    ev_ts = np.concatenate([i_ts, c_ts, r_ts_ev, l_ts, sh_ts, h_ts]).astype(np.int64)
    ev_dwell = np.concatenate(
        [np.full(n_imp, -1), np.full(len(ci), -1), dwell, np.full(len(li) + len(shi) + len(hi), -1)]
    )
    sess_events = np.bincount(i_sess[ev_imp], minlength=n_sessions)
    return dict(
        s_user=s_user,
        s_start=s_start,
        r_sess=r_sess,
        r_ts=r_ts,
        i_req=i_req,
        i_item=i_item,
        i_pos=i_pos,
        prop=prop,
        i_ts=i_ts,
        p_click=p_click,
        clicked=clicked,
        ev_imp=ev_imp,
        ev_type=ev_type,
        ev_ts=ev_ts,
        ev_dwell=ev_dwell,
        sess_events=sess_events,
    )


def _select_sessions(sess_events: np.ndarray, target: int) -> np.ndarray | None:
    cs = np.cumsum(sess_events)
    if cs[-1] < target:
        return None
    keep = cs <= target
    total = int(cs[keep][-1]) if keep.any() else 0
    for j in np.flatnonzero(~keep).tolist():  # greedy fill of the remainder (a session is atomic)
        gap = target - total
        if gap <= 3:
            break
        if sess_events[j] <= gap:
            keep[j] = True
            total += int(sess_events[j])
    return keep


# ----------------------------------------------------------------------------------------------------------------
# main entry point


def generate(
    out_dir: str | Path,
    events: int = 200_000,
    seed: int = 42,
    start: _dt.date = _dt.date(2026, 10, 1),
    days: int = 14,
    dirty: bool = True,
    progress: Callable[[str], None] | None = None,
) -> GenerationReport:
    """Generate the synthetic raw event logs into ``out_dir``; returns the exact counts (also in manifest.json).

    ``out_dir/events`` is deleted and rewritten if it exists.
    """
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    if events < 100:
        raise ValueError("events must be >= 100")
    if days < 1:
        raise ValueError("days must be >= 1")
    out = Path(out_dir)
    start_ms = (
        int((_dt.datetime(start.year, start.month, start.day, tzinfo=_dt.UTC) - _EPOCH).total_seconds())
        * 1000
    )
    H = days * 24
    end_ms = start_ms + H * _MS_HOUR

    n_items = max(200, events // 150)
    n_users = max(100, events // 60)
    n_bots = max(3, int(round(0.001 * n_users)))

    say(f"world: {n_items} items, {n_users} users ({n_bots} bots)")
    items = _make_items(_rng(seed, 1), n_items, start_ms, end_ms)
    users = _make_users(_rng(seed, 2), n_users, n_bots)

    # --- simulate with oversampling, then keep a random subset of whole sessions hitting the target
    factor = 1.4
    for attempt in range(6):
        n_sess = int(events / 20.0 * factor) + 20
        say(f"simulating {n_sess} sessions (attempt {attempt})")
        sim = _simulate(_rng(seed, 100 + attempt), n_sess, users, items, start_ms, H)
        keep_s = _select_sessions(sim["sess_events"], events)
        if keep_s is not None:
            break
        factor *= 2
    else:  # pragma: no cover
        raise RuntimeError("could not reach the requested number of events")

    # --- filter to kept sessions and renumber sessions/requests in time order
    kept_sess = np.flatnonzero(keep_s)
    sess_order = kept_sess[np.lexsort((kept_sess, sim["s_start"][kept_sess]))]
    sess_new = np.full(len(keep_s), -1, dtype=np.int64)
    sess_new[sess_order] = np.arange(len(sess_order))
    req_keep = keep_s[sim["r_sess"]]
    req_idx = np.flatnonzero(req_keep)
    req_order = req_idx[np.lexsort((req_idx, sim["r_ts"][req_idx], sess_new[sim["r_sess"][req_idx]]))]
    req_new = np.full(len(req_keep), -1, dtype=np.int64)
    req_new[req_order] = np.arange(len(req_order))

    imp_keep = req_keep[sim["i_req"]]
    imp_idx = np.flatnonzero(imp_keep)
    imp_new = np.full(len(imp_keep), -1, dtype=np.int64)
    imp_new[imp_idx] = np.arange(len(imp_idx))

    ev_sel = np.flatnonzero(imp_keep[sim["ev_imp"]])
    e_imp = imp_new[sim["ev_imp"][ev_sel]]  # index into kept impressions
    e_type = sim["ev_type"][ev_sel]
    e_ts = sim["ev_ts"][ev_sel]
    e_dwell = sim["ev_dwell"][ev_sel]

    k_req = sim["i_req"][imp_idx]
    k_item = sim["i_item"][imp_idx]
    k_pos = sim["i_pos"][imp_idx]
    k_prop = sim["prop"][imp_idx]
    k_ts = sim["i_ts"][imp_idx]
    k_pclick = sim["p_click"][imp_idx]
    k_clicked = sim["clicked"][imp_idx]
    k_reqid = req_new[k_req]
    k_sessid = sess_new[sim["r_sess"][k_req]]
    k_user = sim["s_user"][sim["r_sess"][k_req]]
    del sim

    # canonical clean-event order: ts, request, type, position
    o = np.lexsort((k_pos[e_imp], e_type, k_reqid[e_imp], e_ts))
    e_imp, e_type, e_ts, e_dwell = e_imp[o], e_type[o], e_ts[o], e_dwell[o]
    n_clean = len(e_ts)
    say(f"{n_clean} clean events")

    e_user = k_user[e_imp]
    e_item = k_item[e_imp]
    e_req = k_reqid[e_imp]
    e_sess = k_sessid[e_imp]
    e_pos = np.where((e_type == IMP) | (e_type == CLICK), k_pos[e_imp], -1)
    e_prop = k_prop[e_imp]
    e_hour = (e_ts - start_ms) // _MS_HOUR
    assert e_hour.min() >= 0 and e_hour.max() < H

    # --- delivery: late events and duplicates
    drng = _rng(seed, 3)
    deliver = e_hour.copy()
    n_late = 0
    n_dup_lines = 0
    dup_src = np.zeros(0, dtype=np.int64)
    if dirty:
        cand = np.flatnonzero((drng.random(n_clean) < 0.01) & (e_hour < H - 1))
        deliver[cand] = np.minimum(e_hour[cand] + drng.integers(1, 31, size=len(cand)), H - 1)
        n_late = int(np.count_nonzero(deliver != e_hour))
        d1 = np.flatnonzero(drng.random(n_clean) < 0.015)
        d2 = d1[drng.random(len(d1)) < 0.05]
        dup_src = np.sort(np.r_[d1, d2])
        n_dup_lines = len(dup_src)

    # --- line table: clean events first, then duplicate copies, then dirty records
    fmt, off = _choose_fmt(drng, n_clean)
    etype_str = _etype_strings(drng, e_type)
    if n_dup_lines:
        d_fmt, d_off = _choose_fmt(drng, n_dup_lines)
        same = drng.random(n_dup_lines) < 0.5  # exact re-delivery vs re-formatted
        d_fmt = np.where(same, fmt[dup_src], d_fmt)
        d_off = np.where(same, off[dup_src], d_off)
        d_etype = _etype_strings(drng, e_type[dup_src], odd_share=0.1)
        d_etype = [etype_str[s] if sm else d for s, sm, d in zip(dup_src.tolist(), same.tolist(), d_etype)]
        later = np.where(drng.random(n_dup_lines) < 0.7, 0, drng.integers(1, 31, size=n_dup_lines))
        d_deliver = np.minimum(deliver[dup_src] + later, H - 1)  # never before the original's delivery
    else:
        d_fmt = d_off = d_deliver = np.zeros(0, dtype=np.int64)
        d_etype = []

    src = np.r_[np.arange(n_clean), dup_src].astype(np.int64)
    L_fmt = np.r_[fmt, d_fmt].astype(np.int64)
    L_off = np.r_[off, d_off].astype(np.int64)
    L_etype = etype_str + list(d_etype)
    L_deliver = np.r_[deliver, d_deliver].astype(np.int64)

    say("formatting lines")
    uid = users["ids"][e_user[src]].tolist()
    iid = [f"N{i:06d}" for i in e_item[src].tolist()]
    sid = [f"S{i:08d}" for i in e_sess[src].tolist()]
    rid = [f"R{i:09d}" for i in e_req[src].tolist()]
    dev = np.array(DEVICES, dtype=object)[users["device"][e_user[src]]].tolist()
    ctry = np.array(COUNTRIES, dtype=object)[users["country"][e_user[src]]].tolist()
    ts_s = _format_ts(e_ts[src], L_fmt, L_off)
    pos_l = e_pos[src].tolist()
    typ_l = e_type[src].tolist()
    dwell_l = e_dwell[src].tolist()
    prop_l = e_prop[src].tolist()
    lines: list[str] = []
    append = lines.append
    for u_, i_, et, ts_, s_, r_, p_, t_, dw, pr, dv, co in zip(
        uid, iid, L_etype, ts_s, sid, rid, pos_l, typ_l, dwell_l, prop_l, dev, ctry
    ):
        if t_ == 0:
            tail = f',"position":{p_},"device":"{dv}","country":"{co}","propensity":{pr!r}}}'
        elif t_ == 1:
            tail = f',"position":{p_},"device":"{dv}","country":"{co}"}}'
        elif t_ == 2:
            tail = f',"position":null,"dwell_ms":{dw},"device":"{dv}","country":"{co}"}}'
        else:
            tail = f',"position":null,"device":"{dv}","country":"{co}"}}'
        append(
            f'{{"user_id":"{u_}","item_id":"{i_}","event_type":"{et}","ts":{ts_},"session_id":"{s_}","request_id":"{r_}"'
            + tail
        )
    sort_ts = e_ts[src]

    # --- dirty records (each from a clean template, exactly one defect)
    q_counts = {r: 0 for r in QUARANTINE_REASONS}
    if dirty:
        rates = {
            "malformed": 0.002,
            "missing_field": 0.002,
            "unknown_event_type": 0.001,
            "bad_timestamp": 0.001,
            "future_timestamp": 0.0005,
        }
        dirty_lines: list[str] = []
        dirty_deliver: list[int] = []
        dirty_sort: list[int] = []
        for reason, rate in rates.items():
            n = int(drng.binomial(n_clean, rate))
            if n == 0 and n_clean >= 1000:
                n = 1
            q_counts[reason] = n
            tmpl = drng.integers(0, n_clean, size=n)
            variant = drng.integers(0, 1 << 30, size=n)
            cut = drng.random(n)
            for t, v, cu in zip(tmpl.tolist(), variant.tolist(), cut.tolist()):
                line = lines[t]
                if reason == "malformed":
                    kind = v % 3
                    if kind == 0:  # truncated JSON (a strict prefix of an object is never valid JSON)
                        line = line[: max(1, int(len(line) * (0.1 + 0.8 * cu)))]
                    elif kind == 1:
                        line = GARBAGE_LINES[(v // 3) % len(GARBAGE_LINES)]
                    else:  # JSON array of scalars
                        line = json.dumps(
                            [uid[t], iid[t], EVENT_TYPES[typ_l[t]], int(e_ts[t])], separators=(",", ":")
                        )
                else:
                    rec = json.loads(line)
                    if reason == "missing_field":
                        f_ = REQUIRED_FIELDS[v % 4]
                        how = (v // 4) % 4
                        if how == 0:
                            del rec[f_]
                        elif how == 1:
                            rec[f_] = None
                        elif how == 2:
                            rec[f_] = ""
                        else:
                            rec[f_] = "   "
                    elif reason == "unknown_event_type":
                        rec["event_type"] = UNKNOWN_TYPES[v % len(UNKNOWN_TYPES)]
                    elif reason == "bad_timestamp":
                        how = v % 3
                        if how == 0:
                            rec["ts"] = BAD_TS_STRINGS[(v // 3) % len(BAD_TS_STRINGS)]
                        elif how == 1:  # epoch SECONDS written where millis expected -> January 1970
                            rec["ts"] = int(e_ts[t]) // 1000
                        else:  # malformed ISO: month/day/hour out of range
                            rec["ts"] = f"2026-{13 + v % 7}-{32 + v % 20}T{24 + v % 70}:00:00Z"
                    elif reason == "future_timestamp":
                        fut_ms = int(e_ts[t]) + (73 + v % 5) * 365 * _MS_DAY  # ~2099..2103
                        how = v % 3
                        if how == 0:
                            rec["ts"] = _iso_z(fut_ms)
                        elif how == 1:
                            rec["ts"] = fut_ms
                        else:
                            rec["ts"] = _iso(np.array([fut_ms]))[0].replace("T", " ")
                    line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
                dirty_lines.append(line)
                dirty_deliver.append(int(L_deliver[t]))
                dirty_sort.append(int(e_ts[t]))
        lines.extend(dirty_lines)
        L_deliver = np.r_[L_deliver, np.asarray(dirty_deliver, dtype=np.int64)]
        sort_ts = np.r_[sort_ts, np.asarray(dirty_sort, dtype=np.int64)]

    # --- write event files
    say(f"writing {len(lines)} lines")
    out.mkdir(parents=True, exist_ok=True)
    ev_dir = out / "events"
    if ev_dir.exists():
        shutil.rmtree(ev_dir)
    order = np.lexsort((np.arange(len(lines)), sort_ts, L_deliver))
    dl = L_deliver[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(dl)) + 1, len(dl)]
    n_files = 0
    order_l = order.tolist()
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        h = int(dl[a])
        hs = _dt.datetime.fromtimestamp((start_ms + h * _MS_HOUR) / 1000, tz=_dt.UTC)
        d = ev_dir / hs.strftime("%Y-%m-%d")
        d.mkdir(parents=True, exist_ok=True)
        payload = "\n".join([lines[j] for j in order_l[a:b]]) + "\n"
        with open(d / f"{hs.hour:02d}.jsonl", "wb") as fh:
            fh.write(payload.encode("utf-8", "surrogateescape"))
        n_files += 1
    lines_total = len(lines)
    del lines

    # --- items
    say("writing items / ground truth / manifest")
    with open(out / "items.jsonl", "w", encoding="utf-8") as fh:
        for rec in items["records"]:
            fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")

    # --- ground truth
    import pyarrow as pa
    import pyarrow.parquet as pq

    gt = pa.table(
        {
            "request_id": pa.array([f"R{i:09d}" for i in k_reqid.tolist()], pa.string()),
            "user_id": pa.array(users["ids"][k_user].tolist(), pa.string()),
            "item_id": pa.array([f"N{i:06d}" for i in k_item.tolist()], pa.string()),
            "position": pa.array(k_pos.astype(np.int32)),
            "ts": pa.array(k_ts.astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
            "p_click": pa.array(k_pclick.astype(np.float64)),
            "clicked": pa.array(k_clicked.astype(bool)),
        }
    )
    gt = gt.take(pa.array(np.lexsort((k_pos, k_reqid))))
    pq.write_table(gt, out / "ground_truth.parquet", compression="zstd")

    counts = np.bincount(e_type, minlength=6)
    rep = GenerationReport(
        out_dir=str(out),
        events_requested=int(events),
        seed=int(seed),
        start=start.isoformat(),
        days=int(days),
        dirty=bool(dirty),
        lines_total=int(lines_total),
        clean_events=int(n_clean),
        duplicates=int(n_dup_lines),
        quarantined={k: int(v) for k, v in q_counts.items()},
        late_events=int(n_late),
        impressions=int(counts[IMP]),
        clicks=int(counts[CLICK]),
        reads=int(counts[READ]),
        likes=int(counts[LIKE]),
        shares=int(counts[SHARE]),
        hides=int(counts[HIDE]),
        users=int(len(np.unique(e_user))),
        catalog_users=int(n_users),
        items=int(n_items),
        bot_users=users["ids"][users["bots"]].tolist(),
        files=int(n_files),
        ctr=round(float(counts[CLICK]) / max(1, int(counts[IMP])), 6),
    )
    assert rep.lines_total == rep.clean_events + rep.duplicates + sum(rep.quarantined.values())
    manifest = {k: v for k, v in rep.to_dict().items() if k not in ("out_dir", "elapsed_s")}
    manifest["generator"] = "recpipe.datasets.synthetic"
    manifest["window"] = {"start": _iso_z(start_ms), "end": _iso_z(end_ms)}
    manifest["event_types"] = list(EVENT_TYPES)
    manifest["click_model"] = (
        "p=clip(0.16*10*interest[u,cat]*quality*(1+pos)^-0.8*(0.3+0.7*0.5^(age_h/36)),0,0.95); bots 0.9"
    )
    with open(out / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    rep.elapsed_s = round(time.perf_counter() - t0, 3)
    say(f"done in {rep.elapsed_s:.1f}s")
    return rep


# ----------------------------------------------------------------------------------------------------------------
# ground truth for arbitrary (user, item, position, time): evaluation of any list against the true click model


@dataclass(frozen=True)
class SyntheticWorld:
    """The generator's world (items and users) rebuilt from its parameters, for the true click model.

    A world extended by ``recpipe simulate`` (``OUT/_simulation.json``) also holds the items published
    on the simulated days, and its users' interests drift from ``drift_start_ms`` on (see
    :meth:`interest_at`)."""

    user_ids: np.ndarray
    item_ids: list
    item_cat: np.ndarray
    item_pub_ms: np.ndarray
    item_quality: np.ndarray
    interest: np.ndarray
    is_bot: np.ndarray
    user_activity: np.ndarray | None = None
    user_country: np.ndarray | None = None
    user_device: np.ndarray | None = None
    drift_start_ms: int | None = None
    drift_per_day: float = 0.0
    drift_z: np.ndarray | None = None

    def user_index(self, user_ids) -> np.ndarray:
        idx = {u: i for i, u in enumerate(self.user_ids.tolist())}
        try:
            return np.array([idx[u] for u in user_ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"user {exc.args[0]!r} is not a user of this synthetic world") from None

    def item_index(self, item_ids) -> np.ndarray:
        idx = {it: i for i, it in enumerate(self.item_ids)}
        try:
            return np.array([idx[i] for i in item_ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"item {exc.args[0]!r} is not an item of this synthetic world") from None

    def interest_at(self, u: np.ndarray, cat: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """User ``u``'s interest in category ``cat`` at ``t_ms``: the generator's interest, which
        from ``drift_start_ms`` on drifts log-linearly, ``interest * exp(drift_per_day * days *
        z)`` renormalized, with a fixed standard-normal direction ``z`` per (user, category)."""
        if self.drift_z is None or self.drift_start_ms is None or not self.drift_per_day:
            return self.interest[u, cat]
        days = np.clip((np.asarray(t_ms, dtype=np.float64) - self.drift_start_ms) / _MS_DAY, 0.0, None)
        w = self.interest[u] * np.exp(self.drift_per_day * days[:, None] * self.drift_z[u])
        w /= w.sum(axis=1, keepdims=True)
        return w[np.arange(len(u)), cat]


# beside manifest.json; a leading "_" keeps ingest from reading it as input
SIMULATION_FILE = "_simulation.json"


def _day_ms(day: _dt.date) -> int:
    return int((_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC) - _EPOCH).total_seconds()) * 1000


def simulated_items(seed: int, sim_start: _dt.date, day: int, per_day: int, first_index: int) -> dict:
    """The items published on simulated day ``day`` (0 = ``sim_start``): ``per_day`` items drawn
    like the generator's, published within that UTC day, ids ``N<first_index>``... onwards."""
    day_ms = _day_ms(sim_start) + day * _MS_DAY
    # _make_items publishes in [start - 7 days, end): shift start so that range is the one day
    items = _make_items(_rng(seed, 10_000 + day), per_day, day_ms + 7 * _MS_DAY, day_ms + _MS_DAY)
    for j, rec in enumerate(items["records"]):
        rec["item_id"] = f"N{first_index + j:06d}"
    return items


def load_world(
    out_dir: str | Path | None = None,
    *,
    events: int | None = None,
    seed: int | None = None,
    start: _dt.date | None = None,
    days: int | None = None,
) -> SyntheticWorld:
    """Rebuild the world of a generated data set deterministically, from ``out_dir/manifest.json``
    or from the same arguments as :func:`generate` (events, seed, start, days). With ``out_dir``,
    a ``_simulation.json`` beside the manifest (written by ``recpipe simulate``) adds the items of
    the simulated days and the interest drift. Reads nothing else and writes nothing."""
    if out_dir is not None:
        m = json.loads((Path(out_dir) / "manifest.json").read_text())
        events, seed = int(m["events_requested"]), int(m["seed"])
        start, days = _dt.date.fromisoformat(m["start"]), int(m["days"])
    if events is None or seed is None or start is None or days is None:
        raise ValueError("load_world needs out_dir or all of events, seed, start, days")
    start_ms = (
        int((_dt.datetime(start.year, start.month, start.day, tzinfo=_dt.UTC) - _EPOCH).total_seconds())
        * 1000
    )
    end_ms = start_ms + days * 24 * _MS_HOUR
    n_items = max(200, events // 150)
    n_users = max(100, events // 60)
    n_bots = max(3, int(round(0.001 * n_users)))
    items = _make_items(_rng(seed, 1), n_items, start_ms, end_ms)
    users = _make_users(_rng(seed, 2), n_users, n_bots)
    item_ids = [f"N{i:06d}" for i in range(n_items)]
    cat, pub, quality = [items["cat"]], [items["pub"]], [items["quality"]]
    drift: dict = {}
    sim_file = Path(out_dir) / SIMULATION_FILE if out_dir is not None else None
    if sim_file is not None and sim_file.exists():
        spec = json.loads(sim_file.read_text())
        sim_start, per_day = _dt.date.fromisoformat(spec["start"]), int(spec["new_items_per_day"])
        for day in range(int(spec["days"])):
            extra = simulated_items(seed, sim_start, day, per_day, n_items + day * per_day)
            item_ids += [r["item_id"] for r in extra["records"]]
            cat.append(extra["cat"])
            pub.append(extra["pub"])
            quality.append(extra["quality"])
        drift = dict(
            drift_start_ms=_day_ms(sim_start),
            drift_per_day=float(spec["drift_per_day"]),
            drift_z=_rng(seed, 20_000).standard_normal(users["interest"].shape),
        )
    return SyntheticWorld(
        user_ids=users["ids"],
        item_ids=item_ids,
        item_cat=np.concatenate(cat),
        item_pub_ms=np.concatenate(pub),
        item_quality=np.concatenate(quality),
        interest=users["interest"],
        is_bot=users["is_bot"],
        user_activity=users["activity"],
        user_country=np.array(COUNTRIES, dtype=object)[users["country"]],
        user_device=np.array(DEVICES, dtype=object)[users["device"]],
        **drift,
    )


def true_click_probability(world, user_ids, item_ids, positions, ts) -> np.ndarray:
    """The generator's click probability for arbitrary (user, item, 0-based position, time).

    ``world``: a :class:`SyntheticWorld` or the generator's output folder (manifest.json).
    ``user_ids`` are the RAW ids (``U0000001``), not ingest's pseudonyms. ``ts``: epoch
    milliseconds or datetime64 values (array or scalar). Same formula as the simulation
    (manifest ``click_model``); an item not yet published at ``ts`` has probability 0.
    """
    if not isinstance(world, SyntheticWorld):
        world = load_world(world)
    u = world.user_index(list(user_ids))
    i = world.item_index(list(item_ids))
    pos = np.broadcast_to(np.asarray(positions, dtype=np.float64), u.shape)
    t = np.asarray(ts)
    if np.issubdtype(t.dtype, np.datetime64):
        t = t.astype("datetime64[ms]").astype(np.int64)
    t = np.broadcast_to(t.astype(np.int64), u.shape)
    age_hours = (t - world.item_pub_ms[i]) / _MS_HOUR
    fresh = 0.3 + 0.7 * np.power(0.5, np.clip(age_hours, 0.0, None) / 36.0)
    aff = len(CATEGORIES) * world.interest_at(u, world.item_cat[i], t) * world.item_quality[i]
    pos_bias = 1.0 / np.power(1.0 + pos, 0.8)
    p = np.clip(0.16 * aff * pos_bias * fresh, 0.0, 0.95)
    p = np.where(world.is_bot[u], 0.9, p)
    return np.where(age_hours < 0, 0.0, p)
