"""The dirt of the landing zone (``dirty=True``): late deliveries, duplicate lines and bad records.

Every injected record has exactly one defect; ingest is expected to classify lines in the order
malformed -> missing_field -> unknown_event_type -> bad_timestamp -> future_timestamp -> duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import EVENT_TYPES, MS_DAY, QUARANTINE_REASONS, REQUIRED_FIELDS, Array, iso, iso_z, load_words
from .simulation import CleanEvents
from .world import Users
from .writing import Lines, LineTable, choose_formats, spell_event_types

_WORDS = load_words("defects.json")
UNKNOWN_TYPES: list[str] = _WORDS["unknown_event_types"]
BAD_TS_STRINGS: list[str] = _WORDS["bad_timestamps"]
GARBAGE_LINES: list[str] = _WORDS["garbage_lines"]  # NUL bytes, lone surrogates (written surrogateescaped)

# share of the clean events copied into a bad record of each kind (at least one of each from 1,000 events)
DIRTY_RATES = {
    "malformed": 0.002,
    "missing_field": 0.002,
    "unknown_event_type": 0.001,
    "bad_timestamp": 0.001,
    "future_timestamp": 0.0005,
}


@dataclass(frozen=True)
class Delivery:
    """The delivery hour of each clean event (late ones later), how many are late, and the clean
    events delivered again (each index once per copy, sorted)."""

    deliver: Array
    n_late: int
    dup_src: Array


def plan_delivery(gen: np.random.Generator, e_hour: Array, H: int, dirty: bool) -> Delivery:
    """Every event in the hour it happened; dirty: 1% up to 30 hours late, 1.5% delivered twice
    (5% of those three times)."""
    deliver = e_hour.copy()
    if not dirty:
        return Delivery(deliver=deliver, n_late=0, dup_src=np.zeros(0, dtype=np.int64))
    n_clean = len(e_hour)
    cand = np.flatnonzero((gen.random(n_clean) < 0.01) & (e_hour < H - 1))
    deliver[cand] = np.minimum(e_hour[cand] + gen.integers(1, 31, size=len(cand)), H - 1)
    n_late = int(np.count_nonzero(deliver != e_hour))
    d1 = np.flatnonzero(gen.random(n_clean) < 0.015)
    d2 = d1[gen.random(len(d1)) < 0.05]
    return Delivery(deliver=deliver, n_late=n_late, dup_src=np.sort(np.r_[d1, d2]))


def duplicate_copies(
    gen: np.random.Generator, clean: LineTable, e_type: Array, dup_src: Array, H: int
) -> LineTable:
    """The lines of the duplicates: half exact re-deliveries of the original line, half spelled
    anew; delivered with the original or up to 30 hours after it (never before)."""
    n_dup = len(dup_src)
    if not n_dup:
        empty = np.zeros(0, dtype=np.int64)
        return LineTable(src=dup_src, fmt=empty, off=empty, etype=[], deliver=empty)
    d_fmt, d_off = choose_formats(gen, n_dup)
    same = gen.random(n_dup) < 0.5  # exact re-delivery vs re-formatted
    d_fmt = np.where(same, clean.fmt[dup_src], d_fmt)
    d_off = np.where(same, clean.off[dup_src], d_off)
    d_etype = spell_event_types(gen, e_type[dup_src], odd_share=0.1)
    d_etype = [clean.etype[s] if sm else d for s, sm, d in zip(dup_src.tolist(), same.tolist(), d_etype)]
    later = np.where(gen.random(n_dup) < 0.7, 0, gen.integers(1, 31, size=n_dup))
    d_deliver = np.minimum(clean.deliver[dup_src] + later, H - 1)
    return LineTable(src=dup_src, fmt=d_fmt, off=d_off, etype=d_etype, deliver=d_deliver)


# ----------------------------------------------------------------------------------------------------------------
# bad records: each a clean line with exactly one defect, delivered with it


def inject_dirty(
    gen: np.random.Generator, lines: Lines, clean: CleanEvents, users: Users
) -> tuple[Lines, dict[str, int]]:
    """``lines`` (the clean events' first) plus bad records of each kind made from random clean
    lines; and how many of each kind."""
    n_clean = len(clean.ts)
    counts = {r: 0 for r in QUARANTINE_REASONS}
    dirty_lines: list[str] = []
    dirty_deliver: list[int] = []
    dirty_sort: list[int] = []
    for reason, rate in DIRTY_RATES.items():
        n = int(gen.binomial(n_clean, rate))
        if n == 0 and n_clean >= 1000:
            n = 1
        counts[reason] = n
        tmpl = gen.integers(0, n_clean, size=n)
        variant = gen.integers(0, 1 << 30, size=n)
        cut = gen.random(n)
        for t, v, cu in zip(tmpl.tolist(), variant.tolist(), cut.tolist()):
            dirty_lines.append(_bad_record(reason, lines.text[t], v, cu, int(clean.ts[t]), t, clean, users))
            dirty_deliver.append(int(lines.deliver[t]))
            dirty_sort.append(int(clean.ts[t]))
    extended = Lines(
        text=lines.text + dirty_lines,
        deliver=np.r_[lines.deliver, np.asarray(dirty_deliver, dtype=np.int64)],
        sort_ts=np.r_[lines.sort_ts, np.asarray(dirty_sort, dtype=np.int64)],
    )
    return extended, counts


def _bad_record(
    reason: str, line: str, v: int, cu: float, ts_ms: int, t: int, clean: CleanEvents, users: Users
) -> str:
    """Clean line ``line`` (of clean event ``t``, at ``ts_ms``) with a defect of kind ``reason``;
    ``v`` picks the variant, ``cu`` where a truncation cuts."""
    if reason == "malformed":
        kind = v % 3
        if kind == 0:  # truncated JSON (a strict prefix of an object is never valid JSON)
            return line[: max(1, int(len(line) * (0.1 + 0.8 * cu)))]
        if kind == 1:
            return GARBAGE_LINES[(v // 3) % len(GARBAGE_LINES)]
        # JSON array of scalars
        template = [
            users["ids"][clean.user[t]],
            f"N{int(clean.item[t]):06d}",
            EVENT_TYPES[int(clean.type[t])],
        ]
        return json.dumps([*template, ts_ms], separators=(",", ":"))
    rec = json.loads(line)
    _SPOIL[reason](rec, v, ts_ms)
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False)


def _missing_field(rec: dict[str, Any], v: int, _ts_ms: int) -> None:
    """A required field absent, null, empty or blank."""
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


def _unknown_event_type(rec: dict[str, Any], v: int, _ts_ms: int) -> None:
    """An event type that is none of ``EVENT_TYPES``."""
    rec["event_type"] = UNKNOWN_TYPES[v % len(UNKNOWN_TYPES)]


def _bad_timestamp(rec: dict[str, Any], v: int, ts_ms: int) -> None:
    """A time that is no time, or epoch seconds (January 1970 read as millis)."""
    how = v % 3
    if how == 0:
        rec["ts"] = BAD_TS_STRINGS[(v // 3) % len(BAD_TS_STRINGS)]
    elif how == 1:  # epoch SECONDS written where millis expected -> January 1970
        rec["ts"] = ts_ms // 1000
    else:  # malformed ISO: month/day/hour out of range
        rec["ts"] = f"2026-{13 + v % 7}-{32 + v % 20}T{24 + v % 70}:00:00Z"


def _future_timestamp(rec: dict[str, Any], v: int, ts_ms: int) -> None:
    """The time ~73-77 years on (2099..2103), as ISO Z, epoch millis or naive ISO."""
    fut_ms = ts_ms + (73 + v % 5) * 365 * MS_DAY  # ~2099..2103
    how = v % 3
    if how == 0:
        rec["ts"] = iso_z(fut_ms)
    elif how == 1:
        rec["ts"] = fut_ms
    else:
        rec["ts"] = iso(np.array([fut_ms]))[0].replace("T", " ")


_SPOIL: dict[str, Callable[[dict[str, Any], int, int], None]] = {
    "missing_field": _missing_field,
    "unknown_event_type": _unknown_event_type,
    "bad_timestamp": _bad_timestamp,
    "future_timestamp": _future_timestamp,
}
