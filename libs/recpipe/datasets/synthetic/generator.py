"""``generate``: the world, the simulated clean log, its delivery with dirt, and the files written."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .common import CLICK, HIDE, IMP, LIKE, MS_HOUR, QUARANTINE_REASONS, READ, SHARE, day_ms, rng
from .defects import Delivery, duplicate_copies, inject_dirty, plan_delivery
from .simulation import CleanEvents, simulate_log
from .world import Users, WorldSize, build_world, world_size
from .writing import (
    GenerationReport,
    Lines,
    clean_table,
    format_lines,
    write_event_files,
    write_ground_truth,
    write_items,
    write_manifest,
)


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
    start_ms = day_ms(start)
    H = days * 24
    end_ms = start_ms + H * MS_HOUR
    size = world_size(events)
    say(f"world: {size.items} items, {size.users} users ({size.bots} bots)")
    items, users = build_world(seed, size, start_ms, end_ms)
    truth, clean = simulate_log(seed, events, users, items, start_ms, H, say)
    say(f"{len(clean.ts)} clean events")
    delivery, lines, quarantined = _deliver(rng(seed, 3), clean, users, H, dirty, say)
    say(f"writing {len(lines.text)} lines")
    n_files = write_event_files(out, lines, start_ms)
    lines_total = len(lines.text)
    del lines
    say("writing items / ground truth / manifest")
    write_items(out, items)
    write_ground_truth(out, truth, users)
    rep = GenerationReport(
        out_dir=str(out),
        events_requested=int(events),
        seed=int(seed),
        start=start.isoformat(),
        days=int(days),
        dirty=bool(dirty),
    )
    _count(rep, clean, delivery, quarantined, lines_total, n_files, size, users)
    write_manifest(out, rep, start_ms, end_ms)
    rep.elapsed_s = round(time.perf_counter() - t0, 3)
    say(f"done in {rep.elapsed_s:.1f}s")
    return rep


def _deliver(
    gen: np.random.Generator,
    clean: CleanEvents,
    users: Users,
    H: int,
    dirty: bool,
    say: Callable[[str], None],
) -> tuple[Delivery, Lines, dict[str, int]]:
    """The lines delivered: late events and duplicates, then every line spelled, then (dirty) the
    bad records; with how many bad records of each kind."""
    delivery = plan_delivery(gen, clean.hour, H, dirty)
    table = clean_table(gen, clean, delivery.deliver)
    table += duplicate_copies(gen, table, clean.type, delivery.dup_src, H)
    say("formatting lines")
    lines = format_lines(table, clean, users)
    if not dirty:
        return delivery, lines, {r: 0 for r in QUARANTINE_REASONS}
    lines, quarantined = inject_dirty(gen, lines, clean, users)
    return delivery, lines, quarantined


def _count(
    rep: GenerationReport,
    clean: CleanEvents,
    delivery: Delivery,
    quarantined: dict[str, int],
    lines_total: int,
    n_files: int,
    size: WorldSize,
    users: Users,
) -> None:
    """Fill in the exact counts of ``rep``."""
    counts = np.bincount(clean.type, minlength=6)
    rep.lines_total = int(lines_total)
    rep.clean_events = int(len(clean.ts))
    rep.duplicates = int(len(delivery.dup_src))
    rep.quarantined = {k: int(v) for k, v in quarantined.items()}
    rep.late_events = int(delivery.n_late)
    rep.impressions = int(counts[IMP])
    rep.clicks = int(counts[CLICK])
    rep.reads = int(counts[READ])
    rep.likes = int(counts[LIKE])
    rep.shares = int(counts[SHARE])
    rep.hides = int(counts[HIDE])
    rep.users = int(len(np.unique(clean.user)))
    rep.catalog_users = int(size.users)
    rep.items = int(size.items)
    rep.bot_users = users["ids"][users["bots"]].tolist()
    rep.files = int(n_files)
    rep.ctr = round(float(counts[CLICK]) / max(1, int(counts[IMP])), 6)
