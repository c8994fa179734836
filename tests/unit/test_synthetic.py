"""Synthetic media event-log generator: determinism, layout contract, exact dirt counts (re-counted here with an
independent line classifier), ground-truth consistency."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recpipe.datasets.synthetic import generate

pytestmark = pytest.mark.unit

N_EVENTS = 5000
VALID_TYPES = {"impression", "click", "read", "like", "share", "hide"}
REQUIRED = ("user_id", "item_id", "event_type", "ts")
_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")
_MIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_MAX = dt.datetime(2090, 1, 1, tzinfo=dt.UTC)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# ----------------------------------------------------------------------------------------------------------------
# independent reference classifier (the ingest contract)


def parse_ts(value) -> dt.datetime | None:
    """Epoch-ms JSON int, ISO-8601 with Z / offset, or naive 'YYYY-MM-DD HH:MM:SS.fff' (UTC). None if unparseable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return _EPOCH + dt.timedelta(milliseconds=value)
        except OverflowError:
            return None
    if not isinstance(value, str) or not _ISO_RE.match(value.strip()):
        return None
    try:
        d = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.astimezone(dt.UTC)


def _missing(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def classify_dir(out: Path) -> dict:
    """Classify every line of every event file; returns counts and the accepted events."""
    counts = Counter()
    seen = set()
    accepted = []
    late = 0
    lines_total = 0
    files = sorted((out / "events").glob("*/*.jsonl"))
    for f in files:
        file_hour = dt.datetime.strptime(f"{f.parent.name} {f.stem}", "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
        for raw in f.read_bytes().split(b"\n")[:-1]:
            lines_total += 1
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                rec = None
            if not isinstance(rec, dict):
                counts["malformed"] += 1
                continue
            if any(_missing(rec.get(k)) for k in REQUIRED):
                counts["missing_field"] += 1
                continue
            et = rec["event_type"].strip().lower() if isinstance(rec["event_type"], str) else None
            if et not in VALID_TYPES:
                counts["unknown_event_type"] += 1
                continue
            ts = parse_ts(rec["ts"])
            if ts is None or ts < _MIN:
                counts["bad_timestamp"] += 1
                continue
            if ts > _MAX:
                counts["future_timestamp"] += 1
                continue
            key = (rec["user_id"], rec["item_id"], et, rec.get("request_id"), rec.get("position"), ts)
            if key in seen:
                counts["duplicate"] += 1
                continue
            seen.add(key)
            counts["accepted"] += 1
            if ts.replace(minute=0, second=0, microsecond=0) < file_hour:
                late += 1
            accepted.append({**rec, "event_type": et, "_ts": ts})
    return {
        "counts": counts,
        "accepted": accepted,
        "late": late,
        "lines_total": lines_total,
        "files": len(files),
    }


def _digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    report = generate(out, events=N_EVENTS, seed=7)
    return out, report


@pytest.fixture(scope="module")
def classified(gen_dir):
    return classify_dir(gen_dir[0])


@pytest.fixture(scope="module")
def manifest(gen_dir):
    return json.loads((gen_dir[0] / "manifest.json").read_text())


# ----------------------------------------------------------------------------------------------------------------
# tests


def test_layout(gen_dir, manifest):
    out, report = gen_dir
    assert (out / "items.jsonl").is_file()
    assert (out / "ground_truth.parquet").is_file()
    files = sorted((out / "events").glob("*/*.jsonl"))
    assert files and len(files) == manifest["files"] == report.files
    for f in files:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", f.parent.name) and re.fullmatch(r"\d{2}", f.stem)
    assert report.to_dict()["clean_events"] == manifest["clean_events"]


def test_deterministic(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, events=2000, seed=3)
    generate(b, events=2000, seed=3)
    generate(c, events=2000, seed=4)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    assert da != dc
    assert da["manifest.json"] != dc["manifest.json"]


def test_event_count_near_target(manifest):
    assert abs(manifest["clean_events"] - N_EVENTS) <= 0.05 * N_EVENTS
    parts = ("impressions", "clicks", "reads", "likes", "shares", "hides")
    assert sum(manifest[k] for k in parts) == manifest["clean_events"]


def test_manifest_invariant_and_recount(manifest, classified):
    q = manifest["quarantined"]
    assert set(q) == {"malformed", "missing_field", "unknown_event_type", "bad_timestamp", "future_timestamp"}
    assert all(v > 0 for v in q.values())
    assert manifest["lines_total"] == manifest["clean_events"] + manifest["duplicates"] + sum(q.values())
    c = classified["counts"]
    assert classified["lines_total"] == manifest["lines_total"]
    assert classified["files"] == manifest["files"]
    assert c["accepted"] == manifest["clean_events"]
    assert c["duplicate"] == manifest["duplicates"]
    for reason, n in q.items():
        assert c[reason] == n, reason
    assert classified["late"] == manifest["late_events"] > 0
    types = Counter(e["event_type"] for e in classified["accepted"])
    assert types["impression"] == manifest["impressions"]
    assert types["click"] == manifest["clicks"]
    assert types["read"] == manifest["reads"]
    assert len({e["user_id"] for e in classified["accepted"]}) == manifest["users"]


def test_clean_events_shape(manifest, classified):
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=14)
    for e in classified["accepted"]:
        assert start <= e["_ts"] < end
        assert isinstance(e["session_id"], str) and isinstance(e["request_id"], str)
        assert e["device"] in {"mobile", "desktop", "tablet"} and isinstance(e["country"], str)
        if e["event_type"] in ("impression", "click"):
            assert isinstance(e["position"], int) and 0 <= e["position"] < 10
        else:
            assert e.get("position") is None
        if e["event_type"] == "impression":
            assert 0.0 < e["propensity"] <= 1.0
        else:
            assert "propensity" not in e
        if e["event_type"] == "read":
            assert isinstance(e["dwell_ms"], int) and e["dwell_ms"] > 0
        else:
            assert "dwell_ms" not in e


def test_timestamp_formats_mixed(gen_dir):
    out, _ = gen_dir
    kinds = Counter()
    odd_case = 0
    for f in sorted((out / "events").glob("*/*.jsonl")):
        for raw in f.read_bytes().split(b"\n")[:-1]:
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if not isinstance(rec, dict):
                continue
            ts = rec.get("ts")
            if isinstance(ts, int):
                kinds["epoch"] += 1
            elif isinstance(ts, str) and ts.endswith("Z"):
                kinds["z"] += 1
            elif isinstance(ts, str) and re.search(r"[+-]\d{2}:\d{2}$", ts):
                kinds["offset"] += 1
            elif isinstance(ts, str) and " " in ts:
                kinds["naive"] += 1
            et = rec.get("event_type")
            if isinstance(et, str) and et.strip().lower() in VALID_TYPES and et != et.strip().lower():
                odd_case += 1
    total = sum(kinds.values())
    assert 0.6 < kinds["z"] / total < 0.8
    for k in ("epoch", "offset", "naive"):
        assert 0.05 < kinds[k] / total < 0.15, k
    assert odd_case > 0


def test_impressions_reference_published_items(gen_dir, classified):
    out, _ = gen_dir
    items = {}
    for line in (out / "items.jsonl").read_text().splitlines():
        it = json.loads(line)
        assert {
            "item_id",
            "title",
            "text",
            "category",
            "subcategory",
            "tags",
            "publisher",
            "published_ts",
            "expires_ts",
            "language",
            "status",
        } <= set(it)
        assert isinstance(it["tags"], list) and 1 <= len(it["tags"]) <= 3
        items[it["item_id"]] = it
    for e in classified["accepted"]:
        it = items[e["item_id"]]
        if e["event_type"] == "impression":
            assert parse_ts(it["published_ts"]) <= e["_ts"]
            if it["expires_ts"] is not None:
                assert e["_ts"] < parse_ts(it["expires_ts"])


def test_ctr_and_ground_truth(gen_dir, manifest, classified):
    out, _ = gen_dir
    assert 0.02 < manifest["clicks"] / manifest["impressions"] < 0.2
    gt = pq.read_table(out / "ground_truth.parquet").to_pandas()
    assert list(gt.columns) == ["request_id", "user_id", "item_id", "position", "ts", "p_click", "clicked"]
    assert len(gt) == manifest["impressions"]
    assert not gt.duplicated(["request_id", "item_id"]).any()
    assert gt["p_click"].between(0.0, 0.95).all()
    assert int(gt["clicked"].sum()) == manifest["clicks"]
    assert gt.loc[gt["clicked"], "p_click"].mean() > gt.loc[~gt["clicked"], "p_click"].mean()
    imps = {
        (e["request_id"], e["item_id"]) for e in classified["accepted"] if e["event_type"] == "impression"
    }
    assert imps == set(zip(gt["request_id"], gt["item_id"]))
    clicks = {(e["request_id"], e["item_id"]) for e in classified["accepted"] if e["event_type"] == "click"}
    assert clicks == set(zip(gt.loc[gt["clicked"], "request_id"], gt.loc[gt["clicked"], "item_id"]))


def test_bots_present(manifest, classified):
    bots = set(manifest["bot_users"])
    assert len(bots) >= 2
    bot_events = [e for e in classified["accepted"] if e["user_id"] in bots]
    assert bot_events
    reads = [e["dwell_ms"] for e in bot_events if e["event_type"] == "read"]
    assert reads and max(reads) < 500
    imp = sum(e["event_type"] == "impression" for e in bot_events)
    clk = sum(e["event_type"] == "click" for e in bot_events)
    assert clk / imp > 0.7


def test_clean_mode_has_no_dirt(tmp_path):
    rep = generate(tmp_path, events=1500, seed=1, dirty=False)
    assert rep.duplicates == 0 and rep.late_events == 0
    assert sum(rep.quarantined.values()) == 0
    assert rep.lines_total == rep.clean_events
    res = classify_dir(tmp_path)
    assert res["counts"]["accepted"] == rep.clean_events == res["lines_total"]
