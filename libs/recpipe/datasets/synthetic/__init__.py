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

The parts: :mod:`.world` (items, users, the true click model, :func:`load_world`), :mod:`.simulation`
(sessions, the logging policy, clicks and follow-ups, the clean log), :mod:`.defects` (late
deliveries, duplicates, bad records), :mod:`.writing` (the lines and the files), :mod:`.generator`
(:func:`generate`, calling them in order), :mod:`.click_model` (the true click model behind
evaluation's ``ClickModel`` interface). The word lists are package data (``words/``).
"""

from __future__ import annotations

from .click_model import SyntheticClickModel
from .common import EVENT_TYPES, QUARANTINE_REASONS
from .generator import generate
from .simulation import _HOUR_OF_DAY_W as _HOUR_OF_DAY_W
from .world import SIMULATION_FILE, SyntheticWorld, load_world, simulated_items, true_click_probability
from .writing import GenerationReport

__all__ = [
    "GenerationReport",
    "generate",
    "EVENT_TYPES",
    "QUARANTINE_REASONS",
    "SIMULATION_FILE",
    "SyntheticClickModel",
    "SyntheticWorld",
    "load_world",
    "simulated_items",
    "true_click_probability",
]
