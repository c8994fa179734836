"""Training benchmark: samples/s with 1 and 2 Horovod workers on the same synthetic examples,
time to the final AUC, peak memory. Not a timed assertion; run by hand or from run_bench.py:

    .venv/bin/python tests/perf/bench_train.py --out bench-results [--rows 40000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def _peak_rss_mb() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux; children = the Spark JVM and the Horovod rank processes.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"driver_peak_rss_mb": round(own, 1), "largest_child_peak_rss_mb": round(children, 1)}


def bench(out_dir: Path, rows: int = 40_000, epochs: int = 4, batch_size: int = 512) -> dict:
    """Train the same data with 1 and 2 workers; return throughput, AUCs and timings."""
    from pyspark.sql import SparkSession

    from recpipe.config import config_from_dict
    from recpipe.lake import open_lake
    from recpipe.model.testing import synthetic_examples, synthetic_spec, write_examples
    from recpipe.model.train import run_train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "train-bench"
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench-train")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.local.dir", str(work / "spark"))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    stamp = time.strftime("%Y%m%dT%H%M%S")

    def cfg(workers: int):
        return config_from_dict(
            {
                "mode": "local",
                "lake": {"root": str(work / f"lake-{stamp}")},
                "data": {"source": "raw", "raw_dir": str(work / "raw")},
                "train": {
                    "model_dir": str(work / "models"),
                    "num_proc": workers,
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "checkpoint_every_steps": 1_000_000,
                    "early_stopping_patience": epochs,
                },
            }
        )

    lake = open_lake(cfg(1), spark)
    t0 = time.perf_counter()
    write_examples(spark, lake, synthetic_examples(rows, seed=11), synthetic_spec())
    result = {"rows": rows, "epochs": epochs, "batch_size": batch_size, "write_examples_s": 0.0}
    result["write_examples_s"] = round(time.perf_counter() - t0, 2)
    result["cpu_count"] = os.cpu_count()
    for workers in (1, 2):
        t = time.perf_counter()
        s = run_train(cfg(workers), spark, lake, run_id=f"bench-{stamp}-w{workers}", register=False)
        result[f"workers_{workers}"] = {
            "samples_per_s": s["samples_per_s"],
            "samples_per_s_last_epoch": s["samples_per_s_last_epoch"],
            "train_loop_s": s["train_s"],
            "time_to_final_auc_s": round(time.perf_counter() - t, 2),
            "val_auc": s["val_auc"],
            "test_auc": s["test_auc"],
            "test_logloss": s["test_logloss"],
            "popularity_auc": s["popularity_auc"],
            "oracle_auc": s["oracle_auc"],
            "identical_weights": len(s["weights_checksums"]) == 1,
        }
    w1, w2 = (result[f"workers_{w}"]["samples_per_s_last_epoch"] for w in (1, 2))
    result["steady_speedup_2_vs_1"] = round(w2 / w1, 2) if w1 else None
    result.update(_peak_rss_mb())
    spark.stop()
    (out_dir / "bench_train.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--epochs", type=int, default=4)
    a = ap.parse_args()
    print(json.dumps(bench(Path(a.out), rows=a.rows, epochs=a.epochs)))
