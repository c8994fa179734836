"""Writing the landing zone: each log line spelled (timestamp formats, event-type spellings), the
hourly event files, items.jsonl, ground_truth.parquet and manifest.json with the exact counts."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import EVENT_TYPES, MS_HOUR, Array, iso, iso_z, load_words
from .simulation import CleanEvents, GroundTruth
from .world import COUNTRIES, DEVICES, Items, Users

TS_OFFSETS_MIN = [60, 120, 330, -240, -420, 540, -180, 600]
# odd but valid spellings of each event type (ingest trims and lower-cases)
ODD_CASE: dict[str, list[str]] = load_words("spellings.json")
CLICK_MODEL = "p=clip(0.16*10*interest[u,cat]*quality*(1+pos)^-0.8*(0.3+0.7*0.5^(age_h/36)),0,0.95); bots 0.9"


@dataclass
class GenerationReport:
    """What :func:`~recpipe.datasets.synthetic.generate` wrote: its arguments and the exact counts."""

    out_dir: str
    events_requested: int
    seed: int
    start: str
    days: int
    dirty: bool
    lines_total: int = 0
    clean_events: int = 0
    duplicates: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
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
    bot_users: list[str] = field(default_factory=list)
    files: int = 0
    ctr: float = 0.0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LineTable:
    """How each line of a clean event is spelled and delivered: its event (index of the clean
    events), timestamp format and offset, event-type spelling, delivery hour (of the window)."""

    src: Array
    fmt: Array
    off: Array
    etype: list[str]
    deliver: Array

    def __add__(self, other: LineTable) -> LineTable:
        return LineTable(
            src=np.r_[self.src, other.src].astype(np.int64),
            fmt=np.r_[self.fmt, other.fmt].astype(np.int64),
            off=np.r_[self.off, other.off].astype(np.int64),
            etype=self.etype + list(other.etype),
            deliver=np.r_[self.deliver, other.deliver].astype(np.int64),
        )


@dataclass(frozen=True)
class Lines:
    """The log lines with their delivery hour (the file) and the time they sort by in the file."""

    text: list[str]
    deliver: Array
    sort_ts: Array


# ----------------------------------------------------------------------------------------------------------------
# spelling the lines


def choose_formats(gen: np.random.Generator, n: int) -> tuple[Array, Array]:
    """A timestamp format (see :func:`format_ts`) and a UTC offset index for ``n`` lines."""
    fmt = gen.choice(4, size=n, p=[0.7, 0.1, 0.1, 0.1])
    off = gen.integers(0, len(TS_OFFSETS_MIN), size=n)
    return fmt, off


def spell_event_types(gen: np.random.Generator, etype: Array, odd_share: float = 0.02) -> list[str]:
    """The event type of each line: its name, an odd spelling for about ``odd_share`` of them."""
    names = np.array(EVENT_TYPES, dtype=object)[etype]
    odd = np.flatnonzero(gen.random(len(etype)) < odd_share)
    pick = gen.integers(0, 1 << 30, size=len(odd))
    for i, p in zip(odd.tolist(), pick.tolist()):
        variants = ODD_CASE[names[i]]
        names[i] = variants[p % len(variants)]
    spelled: list[str] = names.tolist()
    return spelled


def format_ts(ms: Array, fmt: Array, off_idx: Array) -> list[str]:
    """JSON fragments for ts: fmt 0 ISO Z, 1 ISO +offset, 2 epoch-ms int, 3 naive (UTC)."""
    n = len(ms)
    out: list[str] = [""] * n
    for f in range(4):
        idx = np.flatnonzero(fmt == f)
        if len(idx) == 0:
            continue
        sub = ms[idx]
        if f == 0:
            vals = ['"' + s + 'Z"' for s in iso(sub)]
        elif f == 1:
            offs = np.asarray(TS_OFFSETS_MIN, dtype=np.int64)[off_idx[idx]]
            suffix_of = {
                o: ("+" if o >= 0 else "-") + f"{abs(o) // 60:02d}:{abs(o) % 60:02d}" for o in TS_OFFSETS_MIN
            }
            vals = ['"' + s + suffix_of[o] + '"' for s, o in zip(iso(sub + offs * 60_000), offs.tolist())]
        elif f == 2:
            vals = [str(v) for v in sub.tolist()]
        else:
            vals = ['"' + s.replace("T", " ") + '"' for s in iso(sub)]
        for i, v in zip(idx.tolist(), vals):
            out[i] = v
    return out


def clean_table(gen: np.random.Generator, clean: CleanEvents, deliver: Array) -> LineTable:
    """One line per clean event, delivered in hour ``deliver``."""
    n_clean = len(clean.ts)
    fmt, off = choose_formats(gen, n_clean)
    etype = spell_event_types(gen, clean.type)
    return LineTable(src=np.arange(n_clean), fmt=fmt, off=off, etype=etype, deliver=deliver)


def format_lines(table: LineTable, clean: CleanEvents, users: Users) -> Lines:
    """The JSON line of each row of ``table``; the fields an event type has not are left out."""
    src = table.src
    uid = users["ids"][clean.user[src]].tolist()
    iid = [f"N{i:06d}" for i in clean.item[src].tolist()]
    sid = [f"S{i:08d}" for i in clean.session[src].tolist()]
    rid = [f"R{i:09d}" for i in clean.request[src].tolist()]
    dev = np.array(DEVICES, dtype=object)[users["device"][clean.user[src]]].tolist()
    ctry = np.array(COUNTRIES, dtype=object)[users["country"][clean.user[src]]].tolist()
    ts_s = format_ts(clean.ts[src], table.fmt, table.off)
    pos_l = clean.pos[src].tolist()
    typ_l = clean.type[src].tolist()
    dwell_l = clean.dwell[src].tolist()
    prop_l = clean.prop[src].tolist()
    lines: list[str] = []
    append = lines.append
    for u_, i_, et, ts_, s_, r_, p_, t_, dw, pr, dv, co in zip(
        uid, iid, table.etype, ts_s, sid, rid, pos_l, typ_l, dwell_l, prop_l, dev, ctry
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
    return Lines(text=lines, deliver=table.deliver, sort_ts=clean.ts[src])


# ----------------------------------------------------------------------------------------------------------------
# files


def write_event_files(out: Path, lines: Lines, start_ms: int) -> int:
    """``out/events/YYYY-MM-DD/HH.jsonl`` per delivery hour (``out/events`` replaced), lines in
    time order within a file; returns the number of files."""
    out.mkdir(parents=True, exist_ok=True)
    ev_dir = out / "events"
    if ev_dir.exists():
        shutil.rmtree(ev_dir)
    text = lines.text
    order = np.lexsort((np.arange(len(text)), lines.sort_ts, lines.deliver))
    dl = lines.deliver[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(dl)) + 1, len(dl)]
    n_files = 0
    order_l = order.tolist()
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        h = int(dl[a])
        hs = _dt.datetime.fromtimestamp((start_ms + h * MS_HOUR) / 1000, tz=_dt.UTC)
        d = ev_dir / hs.strftime("%Y-%m-%d")
        d.mkdir(parents=True, exist_ok=True)
        payload = "\n".join([text[j] for j in order_l[a:b]]) + "\n"
        with open(d / f"{hs.hour:02d}.jsonl", "wb") as fh:
            fh.write(payload.encode("utf-8", "surrogateescape"))
        n_files += 1
    return n_files


def write_items(out: Path, items: Items) -> None:
    """``out/items.jsonl``: the catalog, one JSON object a line."""
    with open(out / "items.jsonl", "w", encoding="utf-8") as fh:
        for rec in items["records"]:
            fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")


def write_ground_truth(out: Path, truth: GroundTruth, users: Users) -> None:
    """``out/ground_truth.parquet``: one row per clean impression with its true click probability,
    by request and position."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gt = pa.table(
        {
            "request_id": pa.array([f"R{i:09d}" for i in truth.request.tolist()], pa.string()),
            "user_id": pa.array(users["ids"][truth.user].tolist(), pa.string()),
            "item_id": pa.array([f"N{i:06d}" for i in truth.item.tolist()], pa.string()),
            "position": pa.array(truth.pos.astype(np.int32)),
            "ts": pa.array(truth.ts.astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
            "p_click": pa.array(truth.p_click.astype(np.float64)),
            "clicked": pa.array(truth.clicked.astype(bool)),
        }
    )
    gt = gt.take(pa.array(np.lexsort((truth.pos, truth.request))))
    pq.write_table(gt, out / "ground_truth.parquet", compression="zstd")


def write_manifest(out: Path, rep: GenerationReport, start_ms: int, end_ms: int) -> None:
    """``out/manifest.json``: the report (but where it was written and how long it took), the
    window, the event types and the click model."""
    assert rep.lines_total == rep.clean_events + rep.duplicates + sum(rep.quarantined.values())
    manifest = {k: v for k, v in rep.to_dict().items() if k not in ("out_dir", "elapsed_s")}
    manifest["generator"] = "recpipe.datasets.synthetic"
    manifest["window"] = {"start": iso_z(start_ms), "end": iso_z(end_ms)}
    manifest["event_types"] = list(EVENT_TYPES)
    manifest["click_model"] = CLICK_MODEL
    with open(out / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
