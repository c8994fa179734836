"""Stream benchmark (issue #16): the events/s `recpipe stream` sustains on 2 cores with 1-minute
micro-batches, and the latency from a file landing to its users' profile rows being updated.

A synthetic world's hourly files are landed into an empty landing folder one by one, at a steady
rate (``--land-every`` seconds each, written under a hidden name then renamed, as a real delivery
should), while ``recpipe stream`` runs in continuous mode (``stream.trigger_seconds``) in its own
process. For every landed file: the micro-batch that ingested it (from that micro-batch's ingest
report) and the time its events and profile rows were stored (the micro-batch's ``finished_at``).

Output (``bench-results/stream.json``): ``events_per_s`` (records ingested per second of
micro-batch work: what the stream can sustain), ``landing_events_per_s`` (the offered load),
``sustained`` (every micro-batch finished within the trigger interval), ``latency_s``
(p50/p95/max landing -> profile updated), and the micro-batches.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _records(path: Path) -> int:
    lines = path.read_bytes().split(b"\n")
    return len(lines) - (lines[-1] == b"")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 2)


def bench(
    out_dir: Path,
    events: int = 300_000,
    days: int = 1,
    trigger_seconds: int = 60,
    land_every: float = 10.0,
    files: int = 24,
) -> dict:
    from recpipe.datasets.synthetic import generate

    work = Path(out_dir) / "stream"
    shutil.rmtree(work, ignore_errors=True)
    source, landing, lake = work / "source", work / "landing", work / "lake"
    generate(source, events=events, seed=21, start=dt.date(2026, 10, 1), days=days)
    hours = sorted((source / "events").rglob("*.jsonl"))[:files]
    (landing / "events").mkdir(parents=True)
    shutil.copy(source / "items.jsonl", landing / "items.jsonl")
    conf = work / "conf.yaml"
    conf.write_text(
        json.dumps(
            {
                "mode": "local",
                "spark": {
                    "master": "local[2]",
                    "log_level": "ERROR",
                    "show_progress": False,
                    "conf": {
                        "spark.sql.shuffle.partitions": 4,
                        "spark.ui.enabled": False,
                        "spark.driver.memory": "4g",
                        "spark.sql.session.timeZone": "UTC",
                    },
                },
                "lake": {"root": str(lake)},
                "data": {"source": "raw", "raw_dir": str(landing)},
                "privacy": {"allow_dev_key": True},
                "stream": {"trigger_seconds": trigger_seconds},
            }
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "libs"), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, str(REPO / "jobs" / "stream.py"), "--conf", str(conf), "--input", str(landing)]
    landed: dict[str, float] = {}

    def land() -> None:
        for h in hours:
            day = landing / "events" / h.parent.name
            day.mkdir(exist_ok=True)
            shutil.copy(h, day / f".{h.name}")
            os.rename(day / f".{h.name}", day / h.name)
            landed[str((day / h.name).resolve())] = time.time()
            time.sleep(land_every)

    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lander = threading.Thread(target=land, daemon=True)
    lander.start()
    lander.join()
    # let the stream take the last files, then stop it as an operator would (SIGTERM)
    time.sleep(trigger_seconds * 2 + 30)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=900)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"recpipe stream failed (rc {proc.returncode}): {stderr[-3000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    latencies: list[float] = []
    batches = []
    for b in summary["batches"]:
        finished = dt.datetime.fromisoformat(b["finished_at"]).timestamp()
        report = json.loads(Path(b["report_html"]).with_suffix(".json").read_text())
        names = [str((landing / r["file"]).resolve()) for r in report["records_by_file"]]
        lat = [finished - landed[n] for n in names if n in landed]
        latencies += lat
        batches.append(
            {
                "micro_batch": b["micro_batch"],
                "files": b["files"],
                "input_records": b["input_records"],
                "duration_s": b["duration_s"],
                "profiles_updated": (b.get("profiles") or {}).get("users_updated"),
                "max_latency_s": round(max(lat), 2) if lat else None,
            }
        )
    busy = sum(b["duration_s"] for b in summary["batches"])
    offered = sum(_records(h) for h in hours) / (len(hours) * land_every)
    return {
        "benchmark": "stream",
        "trigger_seconds": trigger_seconds,
        "files_landed": len(hours),
        "land_every_s": land_every,
        "landing_events_per_s": round(offered, 1),
        "input_records": summary["input_records"],
        "accepted": summary["accepted"],
        "events_per_s": round(summary["input_records"] / busy, 1) if busy else None,
        "micro_batch_busy_s": round(busy, 1),
        "sustained": all(b["duration_s"] < trigger_seconds for b in summary["batches"]),
        "latency_s": {
            "p50": _pct(latencies, 0.5),
            "p95": _pct(latencies, 0.95),
            "max": _pct(latencies, 1.0),
            "files": len(latencies),
        },
        "micro_batches": batches,
        "wall_s": round(wall, 1),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--trigger-seconds", type=int, default=60)
    p.add_argument("--land-every", type=float, default=10.0)
    p.add_argument("--files", type=int, default=24)
    a = p.parse_args()
    sys.path.insert(0, str(REPO))
    res = bench(
        a.out, events=a.events, trigger_seconds=a.trigger_seconds, land_every=a.land_every, files=a.files
    )
    print(json.dumps(res, indent=2))
