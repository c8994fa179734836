"""Benchmark of the features + examples stages (called by ``make bench``; no timed assertions).

``bench(out_dir)``: 10^6 synthetic events -> ingest -> examples over the whole range (all feature
dates in one pass) -> features as of the day after; ``bench_mind(out_dir)``: the same on the MIND
sample. Both return timings and sizes, plus the logistic-regression vs popularity test AUCs.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _config(out_dir: Path, raw: Path, **sections: dict) -> Any:
    from recpipe.config import config_from_dict

    data: dict[str, Any] = {
        "mode": "local",
        "lake": {"root": str(out_dir / "lake")},
        "data": {"source": "raw", "raw_dir": str(raw)},
        "privacy": {"allow_dev_key": True},
        "spark": {
            "master": "local[2]",
            "show_progress": False,
            "conf": {
                "spark.sql.shuffle.partitions": "4",
                "spark.driver.memory": "6g",
                "spark.ui.enabled": "false",
                "spark.sql.execution.arrow.pyspark.enabled": "true",
            },
        },
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return config_from_dict(data, file="<bench>")


def _run(cfg: Any, raw: Path, timings: dict[str, float]) -> dict[str, Any]:
    from recpipe import constants as C
    from recpipe.evaluation.baselines import examples_to_pandas, logreg_vs_popularity
    from recpipe.events.ingest import run_ingest
    from recpipe.examples.build import default_range, run_examples
    from recpipe.features.build import run_features
    from recpipe.lake import open_lake
    from recpipe.spark import build_session

    spark = build_session(cfg, "bench-features")
    lake = open_lake(cfg, spark)
    t0 = time.perf_counter()
    ing = run_ingest(cfg, spark, input_dir=str(raw), batch_id="bench", lake=lake)
    timings["ingest_s"] = time.perf_counter() - t0
    start, end = default_range(lake, None)
    t0 = time.perf_counter()
    run_features(cfg, spark, end, lake=lake, start=start)  # the dates the examples read
    timings["features_range_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex = run_examples(cfg, spark, start, end, lake=lake)
    timings["examples_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feat = run_features(cfg, spark, end + dt.timedelta(days=1), lake=lake)
    timings["features_one_date_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    auc = logreg_vs_popularity(examples_to_pandas(lake.read(C.GOLD_TRAINING_EXAMPLES)))
    timings["baseline_s"] = time.perf_counter() - t0
    return {
        "events": ing["accepted"],
        "examples": ex["examples"],
        "feature_dates": len(ex["as_of_dates"]),
        "examples_stage_timings_s": ex["timings_s"],
        "items": feat.get("items"),
        "users": feat.get("users"),
        "auc": {k: auc.get(k) for k in ("auc_logreg", "auc_popularity", "n_train", "n_test")},
    }


def bench(out_dir: Path, events: int = 1_000_000) -> dict[str, Any]:
    """10^6 synthetic events: ingest, examples (all dates), features for one date."""
    from recpipe.datasets.synthetic import generate

    out_dir = Path(out_dir)
    raw = out_dir / "raw"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    generate(raw, events=events, seed=42)
    timings["generate_s"] = time.perf_counter() - t0
    result = _run(_config(out_dir, raw), raw, timings)
    return {"name": "features_synthetic", **result, "timings_s": {k: round(v, 2) for k, v in timings.items()}}


def bench_mind(out_dir: Path, source: Path | None = None) -> dict[str, Any]:
    """The MIND sample (../shared/data/mind_small_subset): import, ingest, examples, features."""
    from recpipe.datasets.mind import import_mind

    out_dir = Path(out_dir)
    source = source or REPO.parent / "shared" / "data" / "mind_small_subset"
    raw = out_dir / "raw"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    import_mind(str(source), str(raw), overwrite=True)
    timings["import_s"] = time.perf_counter() - t0
    cfg = _config(out_dir, raw, examples={"validation_start": "2019-11-13", "test_start": "2019-11-14"})
    result = _run(cfg, raw, timings)
    return {"name": "features_mind", **result, "timings_s": {k: round(v, 2) for k, v in timings.items()}}


if __name__ == "__main__":
    import json

    which = sys.argv[1] if len(sys.argv) > 1 else "synthetic"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/recpipe-bench-features")
    fn = bench_mind if which == "mind" else bench
    print(json.dumps(fn(out), default=str))
