"""Ingest benchmark: events/s, peak memory and the time split at 10^5 and 10^6 events."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.perf.common import PeakMemory


def bench(out_dir: Path, sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict:
    from recpipe.config import load_config
    from recpipe.datasets.synthetic import generate
    from recpipe.events.ingest import run_ingest
    from recpipe.spark import build_session

    results = []
    for n in sizes:
        work = out_dir / f"ingest-{n}"
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.perf_counter()
        gen = generate(work / "raw", events=n, seed=42)
        gen_s = time.perf_counter() - t0
        cfg = load_config(
            "conf/local.yaml",
            [f"lake.root={work / 'lake'}", f"data.raw_dir={work / 'raw'}", "spark.show_progress=false"],
        )
        t0 = time.perf_counter()
        spark = build_session(cfg, "bench")
        spark.range(1).count()  # start-up excluded from the figures below
        startup_s = time.perf_counter() - t0
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            summary = run_ingest(cfg, spark, input_dir=str(work / "raw"), batch_id=f"bench-{n}")
            wall = time.perf_counter() - t0
        results.append(
            {
                "events_clean": gen.clean_events,
                "input_records": summary["input_records"],
                "accepted": summary["accepted"],
                "generate_s": round(gen_s, 2),
                "spark_startup_s": round(startup_s, 2),
                "ingest_s": round(wall, 2),
                "records_per_s": round(summary["input_records"] / wall),
                "peak_memory_mib": mem.peak_mib,
                "timings_s": summary["timings_s"],
                "target": "10^6 events < 60 s excluding Spark start-up",
                "meets_target": (wall < 60) if n >= 1_000_000 else None,
            }
        )
        shutil.rmtree(work, ignore_errors=True)
    return {"benchmark": "ingest", "runs": results}
