"""What every part of the synthetic generator shares: event types, time units, seeded random streams,
timestamp strings and the word lists of the package data (``words/``)."""

from __future__ import annotations

import datetime as _dt
import functools
import json
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

EVENT_TYPES = ("impression", "click", "read", "like", "share", "hide")
QUARANTINE_REASONS = ("malformed", "missing_field", "unknown_event_type", "bad_timestamp", "future_timestamp")
REQUIRED_FIELDS = ("user_id", "item_id", "event_type", "ts")

IMP, CLICK, READ, LIKE, SHARE, HIDE = range(6)

MS_HOUR = 3_600_000
MS_DAY = 86_400_000
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def rng(seed: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of ``seed``: each part of the generator draws from its own."""
    return np.random.default_rng([int(seed), int(stream)])


def day_ms(day: _dt.date) -> int:
    """Epoch milliseconds of 00:00 UTC of ``day``."""
    return int((_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC) - EPOCH).total_seconds()) * 1000


def iso(ms: Array) -> list[str]:
    """'YYYY-MM-DDTHH:MM:SS.fff' (no zone) for int64 epoch millis."""
    if len(ms) == 0:
        return []
    as_ms = np.asarray(ms, dtype="int64").astype("datetime64[ms]")
    strings: list[str] = np.datetime_as_string(as_ms, unit="ms").tolist()
    return strings


def iso_z(ms: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS.fffZ' for epoch millis."""
    return iso(np.array([ms]))[0] + "Z"


@functools.cache
def load_words(name: str) -> Any:
    """The word list ``words/<name>`` of the package data, read once: ``.json`` parsed, else one
    entry a line. Callers must not change what it returns (it is shared)."""
    text = (resources.files(__package__ or __name__) / "words" / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text.splitlines()
