"""The synthetic world: the item catalog, the users (interests, activity, bots) and the true click
model; rebuilt deterministically from the generator's parameters by :func:`load_world`."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from .common import MS_DAY, MS_HOUR, Array, day_ms, iso_z, load_words, rng

# category -> (subcategories, vocabulary); the order of the categories is their index
CATEGORIES: dict[str, tuple[list[str], list[str]]] = {
    name: (spec["subcategories"], spec["words"]) for name, spec in load_words("categories.json").items()
}
SHARED_WORDS: list[str] = load_words("shared.txt")
PUBLISHERS: list[str] = load_words("publishers.txt")
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "CA", "ES", "NL", "JP"]
COUNTRY_P = np.array([0.38, 0.14, 0.11, 0.08, 0.08, 0.06, 0.05, 0.04, 0.03, 0.03])
DEVICES = ["mobile", "desktop", "tablet"]
DEVICE_P = np.array([0.62, 0.30, 0.08])
_SHARED = np.array(SHARED_WORDS, dtype=object)

# beside manifest.json; a leading "_" keeps ingest from reading it as input
SIMULATION_FILE = "_simulation.json"


class Items(TypedDict):
    """The catalog: per item its category index, publication and expiry (epoch ms), quality, record."""

    cat: Array
    pub: Array
    exp: Array
    quality: Array
    records: list[dict[str, Any]]


class Users(TypedDict):
    """The users: interests per category, activity, country/device indices, bots, ids."""

    interest: Array
    activity: Array
    country: Array
    device: Array
    is_bot: Array
    bots: Array
    ids: Array


@dataclass(frozen=True)
class WorldSize:
    """How many items, users and bot users a world of ``events`` events has."""

    items: int
    users: int
    bots: int


def world_size(events: int) -> WorldSize:
    """The world size of a data set of ``events`` events."""
    n_users = max(100, events // 60)
    return WorldSize(items=max(200, events // 150), users=n_users, bots=max(3, int(round(0.001 * n_users))))


def build_world(seed: int, size: WorldSize, start_ms: int, end_ms: int) -> tuple[Items, Users]:
    """Items published in [start - 7 days, end) and the users, each from its own stream of ``seed``."""
    items = make_items(rng(seed, 1), size.items, start_ms, end_ms)
    users = make_users(rng(seed, 2), size.users, size.bots)
    return items, users


# ----------------------------------------------------------------------------------------------------------------
# items and users


def make_items(gen: np.random.Generator, n_items: int, start_ms: int, end_ms: int) -> Items:
    """``n_items`` items published in [start_ms - 7 days, end_ms), ids in publication order."""
    cats = list(CATEGORIES)
    cat_p = gen.dirichlet(np.full(len(cats), 8.0))
    cat = gen.choice(len(cats), size=n_items, p=cat_p)
    pub = gen.integers(start_ms - 7 * MS_DAY, end_ms, size=n_items)
    pub = np.sort(pub)  # item ids in publication order
    gen.shuffle(cat)
    life_days = gen.integers(1, 31, size=n_items)
    exp = pub + life_days * MS_DAY - gen.integers(0, MS_DAY, size=n_items)
    evergreen = gen.random(n_items) < 0.10
    exp = np.where(evergreen, np.iinfo(np.int64).max, exp)
    quality = gen.lognormal(0.0, 0.6, size=n_items)
    quality = quality / quality.mean()
    blocked = gen.random(n_items) < 0.01
    publisher = gen.choice(len(PUBLISHERS), size=n_items, p=gen.dirichlet(np.full(len(PUBLISHERS), 3.0)))
    n_title = gen.integers(5, 11, size=n_items)
    n_text = gen.integers(30, 61, size=n_items)
    n_tags = gen.integers(1, 4, size=n_items)
    subcat = gen.integers(0, 1 << 30, size=n_items)
    records: list[dict[str, Any]] = []
    for i in range(n_items):
        cname = cats[cat[i]]
        subs, words = CATEGORIES[cname]
        vocab = np.array(words, dtype=object)
        title, text = _title_and_text(gen, vocab, int(n_title[i]), int(n_text[i]))
        tags = list(dict.fromkeys(vocab[gen.integers(0, len(vocab), size=int(n_tags[i]))].tolist()))
        records.append(
            {
                "item_id": f"N{i:06d}",
                "title": title,
                "text": text,
                "category": cname,
                "subcategory": subs[int(subcat[i]) % len(subs)],
                "tags": tags,
                "publisher": PUBLISHERS[publisher[i]],
                "published_ts": iso_z(int(pub[i])),
                "expires_ts": None if evergreen[i] else iso_z(int(exp[i])),
                "language": "en",
                "status": "blocked" if blocked[i] else "active",
            }
        )
    return Items(cat=cat, pub=pub, exp=exp, quality=quality, records=records)


def _title_and_text(gen: np.random.Generator, vocab: Array, nt: int, nx: int) -> tuple[str, str]:
    """A title of ``nt`` and a text of ``nx`` words, mostly of the category's vocabulary."""
    from_cat = gen.random(nt + nx) < np.r_[np.full(nt, 0.75), np.full(nx, 0.55)]
    cw = vocab[gen.integers(0, len(vocab), size=nt + nx)]
    sw = _SHARED[gen.integers(0, len(_SHARED), size=nt + nx)]
    words = np.where(from_cat, cw, sw).tolist()
    title = " ".join(words[:nt])
    title = title[0].upper() + title[1:]
    text = " ".join(words[nt:]) + "."
    text = text[0].upper() + text[1:]
    return title, text


def make_users(gen: np.random.Generator, n_users: int, n_bots: int) -> Users:
    """``n_users`` users, ``n_bots`` of them bots (desktop scrapers)."""
    interest = gen.dirichlet(np.full(len(CATEGORIES), 0.3), size=n_users)
    activity = gen.lognormal(0.0, 1.1, size=n_users)
    country = gen.choice(len(COUNTRIES), size=n_users, p=COUNTRY_P)
    device = gen.choice(len(DEVICES), size=n_users, p=DEVICE_P)
    is_bot = np.zeros(n_users, dtype=bool)
    bots = np.sort(gen.choice(n_users, size=n_bots, replace=False))
    is_bot[bots] = True
    device[bots] = 1  # desktop scrapers
    ids = np.array([f"U{i:07d}" for i in range(n_users)], dtype=object)
    return Users(
        interest=interest,
        activity=activity,
        country=country,
        device=device,
        is_bot=is_bot,
        bots=bots,
        ids=ids,
    )


# ----------------------------------------------------------------------------------------------------------------
# the click model


def affinity(interest: Array, quality: Array) -> Array:
    """A user's affinity to an item: interest in its category times its quality (1 on average)."""
    aff: Array = len(CATEGORIES) * interest * quality
    return aff


def click_probability(aff: Array, position: Array, age_hours: Array, is_bot: Array) -> Array:
    """The true click probability (manifest ``click_model``): affinity, 0-based position bias,
    freshness by the item's age; bots click 0.9 of what they are shown."""
    fresh = 0.3 + 0.7 * np.power(0.5, age_hours / 36.0)
    pos_bias = 1.0 / np.power(1.0 + position, 0.8)
    p = np.clip(0.16 * aff * pos_bias * fresh, 0.0, 0.95)
    return np.where(is_bot, 0.9, p)


# ----------------------------------------------------------------------------------------------------------------
# ground truth for arbitrary (user, item, position, time): evaluation of any list against the true click model


@dataclass(frozen=True)
class SyntheticWorld:
    """The generator's world (items and users) rebuilt from its parameters, for the true click model.

    A world extended by ``recpipe simulate`` (``OUT/_simulation.json``) also holds the items published
    on the simulated days, and its users' interests drift from ``drift_start_ms`` on (see
    :meth:`interest_at`)."""

    user_ids: Array
    item_ids: list[str]
    item_cat: Array
    item_pub_ms: Array
    item_quality: Array
    interest: Array
    is_bot: Array
    user_activity: Array | None = None
    user_country: Array | None = None
    user_device: Array | None = None
    drift_start_ms: int | None = None
    drift_per_day: float = 0.0
    drift_z: Array | None = None

    def user_index(self, user_ids: Iterable[str]) -> Array:
        """Row of each user id; a ``KeyError`` for one not of this world."""
        idx = {u: i for i, u in enumerate(self.user_ids.tolist())}
        try:
            return np.array([idx[u] for u in user_ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"user {exc.args[0]!r} is not a user of this synthetic world") from None

    def item_index(self, item_ids: Iterable[str]) -> Array:
        """Row of each item id; a ``KeyError`` for one not of this world."""
        idx = {it: i for i, it in enumerate(self.item_ids)}
        try:
            return np.array([idx[i] for i in item_ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"item {exc.args[0]!r} is not an item of this synthetic world") from None

    def interest_at(self, u: Array, cat: Array, t_ms: Array) -> Array:
        """User ``u``'s interest in category ``cat`` at ``t_ms``: the generator's interest, which
        from ``drift_start_ms`` on drifts log-linearly, ``interest * exp(drift_per_day * days *
        z)`` renormalized, with a fixed standard-normal direction ``z`` per (user, category)."""
        if self.drift_z is None or self.drift_start_ms is None or not self.drift_per_day:
            interest: Array = self.interest[u, cat]
            return interest
        days = np.clip((np.asarray(t_ms, dtype=np.float64) - self.drift_start_ms) / MS_DAY, 0.0, None)
        w = self.interest[u] * np.exp(self.drift_per_day * days[:, None] * self.drift_z[u])
        w /= w.sum(axis=1, keepdims=True)
        drifted: Array = w[np.arange(len(u)), cat]
        return drifted


def simulated_items(seed: int, sim_start: _dt.date, day: int, per_day: int, first_index: int) -> Items:
    """The items published on simulated day ``day`` (0 = ``sim_start``): ``per_day`` items drawn
    like the generator's, published within that UTC day, ids ``N<first_index>``... onwards."""
    day_start = day_ms(sim_start) + day * MS_DAY
    # make_items publishes in [start - 7 days, end): shift start so that range is the one day
    items = make_items(rng(seed, 10_000 + day), per_day, day_start + 7 * MS_DAY, day_start + MS_DAY)
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
    start_ms = day_ms(start)
    size = world_size(events)
    items, users = build_world(seed, size, start_ms, start_ms + days * 24 * MS_HOUR)
    catalog = [items]
    drift: dict[str, Any] = {}
    sim_file = Path(out_dir) / SIMULATION_FILE if out_dir is not None else None
    if sim_file is not None and sim_file.exists():
        spec = json.loads(sim_file.read_text())
        sim_start, per_day = _dt.date.fromisoformat(spec["start"]), int(spec["new_items_per_day"])
        for day in range(int(spec["days"])):
            catalog.append(simulated_items(seed, sim_start, day, per_day, size.items + day * per_day))
        drift = dict(
            drift_start_ms=day_ms(sim_start),
            drift_per_day=float(spec["drift_per_day"]),
            drift_z=rng(seed, 20_000).standard_normal(users["interest"].shape),
        )
    return SyntheticWorld(
        user_ids=users["ids"],
        item_ids=[f"N{i:06d}" for i in range(size.items)]
        + [r["item_id"] for extra in catalog[1:] for r in extra["records"]],
        item_cat=np.concatenate([c["cat"] for c in catalog]),
        item_pub_ms=np.concatenate([c["pub"] for c in catalog]),
        item_quality=np.concatenate([c["quality"] for c in catalog]),
        interest=users["interest"],
        is_bot=users["is_bot"],
        user_activity=users["activity"],
        user_country=np.array(COUNTRIES, dtype=object)[users["country"]],
        user_device=np.array(DEVICES, dtype=object)[users["device"]],
        **drift,
    )


def true_click_probability(
    world: SyntheticWorld | str | Path,
    user_ids: Iterable[str],
    item_ids: Iterable[str],
    positions: npt.ArrayLike,
    ts: npt.ArrayLike,
) -> Array:
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
    age_hours = (t - world.item_pub_ms[i]) / MS_HOUR
    aff = affinity(world.interest_at(u, world.item_cat[i], t), world.item_quality[i])
    p = click_probability(aff, pos, np.clip(age_hours, 0.0, None), world.is_bot[u])
    return np.where(age_hours < 0, 0.0, p)
