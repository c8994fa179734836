"""Training benchmark (``make bench``; no timed assertions): samples/s with 1 and 2 Horovod workers
on the same examples, the scaling ratio, time to the final AUC, peak memory.

``bench(out_dir)``: the examples built from 10^6 synthetic events (reuses the lake the features
benchmark left in ``out_dir/lake``, else builds it); ``bench_mind(out_dir)``: the MIND sample's
examples (same reuse). Each run reports the model's test AUC next to popularity, the oracle (when
known) and the logistic regression of the examples issue on the same split.

    .venv/bin/python tests/perf/bench_train.py [synthetic|mind|scaling] [OUT_DIR]

``scaling`` runs only the one-thread-per-rank scaling check, on the examples of the lake of
``conf/local.yaml`` (``make demo``'s).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _peak_rss_mb() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux; children = the Spark JVM and the Horovod rank processes.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"driver_peak_rss_mb": round(own, 1), "largest_child_peak_rss_mb": round(children, 1)}


def _examples_lake(out_dir: Path, which: str) -> tuple[Any, dict[str, Any]]:
    """The config of a lake holding gold.training_examples for ``which``; built when missing."""
    from recpipe import constants as C
    from recpipe.lake import open_lake
    from recpipe.spark import build_session
    from tests.perf import bench_features as BF

    raw = out_dir / "raw"
    if which == "mind":
        cfg = BF._config(
            out_dir, raw, examples={"validation_start": "2019-11-13", "test_start": "2019-11-14"}
        )
    else:
        cfg = BF._config(out_dir, raw)
    spark = build_session(cfg, "bench-train")
    lake = open_lake(cfg, spark)
    built: dict[str, Any] = {"reused_examples": lake.exists(C.GOLD_TRAINING_EXAMPLES)}
    if not built["reused_examples"]:
        built.update(BF.bench_mind(out_dir) if which == "mind" else BF.bench(out_dir))
    return cfg, built


def _logreg(lake) -> dict[str, Any]:
    from recpipe import constants as C
    from recpipe.evaluation.baselines import examples_to_pandas, logreg_vs_popularity

    r = logreg_vs_popularity(examples_to_pandas(lake.read(C.GOLD_TRAINING_EXAMPLES)))
    return {k: r.get(k) for k in ("auc_logreg", "auc_popularity", "n_train", "n_test")}


def _one_and_two_ranks(
    cfg: Any, spark: Any, lake: Any, out_dir: Path, run_prefix: str, sets: list[str], keys: tuple[str, ...]
) -> tuple[dict[str, Any], float | None]:
    """Train with 1, then 2 ranks (``sets`` added to the config): per run the summary's ``keys``,
    the training loop's and the wall time to the final AUC, and whether the ranks' weights agree;
    and the last epoch's speed-up of 2 ranks over 1."""
    from recpipe.config import replace
    from recpipe.model.train import run_train

    runs: dict[str, Any] = {}
    for workers in (1, 2):
        base = [f"train.num_proc={workers}", f"train.model_dir={out_dir / 'models'}"]
        c = replace(cfg, [*base, "train.checkpoint_every_steps=1000000", *sets])
        t = time.perf_counter()
        s = run_train(c, spark, lake, run_id=f"{run_prefix}-w{workers}", register=False)
        runs[f"workers_{workers}"] = {
            **{k: s[k] for k in keys},
            "train_loop_s": s["train_s"],
            "time_to_final_auc_s": round(time.perf_counter() - t, 2),
            "identical_weights": len(s["weights_checksums"]) == 1,
        }
    w1, w2 = (runs[f"workers_{w}"]["samples_per_s_last_epoch"] for w in (1, 2))
    return runs, (round(w2 / w1, 2) if w1 else None)


def _bench(out_dir: Path, which: str, epochs: int | None = None) -> dict[str, Any]:
    from recpipe.lake import open_lake
    from recpipe.spark import build_session

    out_dir = Path(out_dir)
    cfg, built = _examples_lake(out_dir, which)
    spark = build_session(cfg, "bench-train")
    lake = open_lake(cfg, spark)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    result: dict[str, Any] = {"name": f"train_{which}", "cpu_count": os.cpu_count(), "examples": built}
    result["logreg_same_split"] = _logreg(lake)
    keys = ("epochs_run", "steps", "samples_per_s", "samples_per_s_last_epoch", "val_auc", "test_auc")
    keys += ("test_logloss", "popularity_auc", "oracle_auc")
    sets = [f"train.epochs={epochs}"] if epochs else []
    runs, speedup = _one_and_two_ranks(cfg, spark, lake, out_dir, f"bench-{stamp}", sets, keys)
    result.update(runs, steady_speedup_2_vs_1=speedup)
    result["one_thread_per_rank"] = scaling_one_thread(cfg, spark, lake, out_dir, stamp)
    result["train_config"] = {
        k: getattr(cfg.train, k) for k in ("model", "epochs", "batch_size", "learning_rate")
    }
    result.update(_peak_rss_mb())
    return result


SCALING_TARGET = 1.8


def scaling_one_thread(
    cfg: Any, spark: Any, lake: Any, out_dir: Path, stamp: str, epochs: int = 2
) -> dict[str, Any]:
    """Data-parallel scaling made measurable on a small machine (issue #13): 1 rank against 2,
    each rank pinned to one TensorFlow thread (``train.threads_per_rank=1``, intra- and inter-op),
    so that the two ranks do not merely share the cores one rank already used. ``epochs`` >= 2:
    the last epoch's rate is the steady state (the first traces the tf.functions)."""
    sets = ["train.threads_per_rank=1", f"train.epochs={epochs}"]
    keys = ("samples_per_s_last_epoch", "samples_per_s", "tf_threads_per_rank", "epochs_run", "test_auc")
    runs, speedup = _one_and_two_ranks(cfg, spark, lake, out_dir, f"bench-{stamp}-t1", sets, keys)
    return {
        "epochs": epochs,
        "target_speedup": SCALING_TARGET,
        **runs,
        "speedup_2_vs_1": speedup,
        "meets_target": speedup is not None and speedup >= SCALING_TARGET,
    }


def bench_scaling(conf: str = "conf/local.yaml", out_dir: Path | None = None) -> dict[str, Any]:
    """:func:`scaling_one_thread` alone, on the examples of ``conf``'s lake (``make demo``'s)."""
    from recpipe.config import load_config
    from recpipe.lake import open_lake
    from recpipe.spark import build_session

    cfg = load_config(conf, ["spark.show_progress=false"])
    spark = build_session(cfg, "bench-train-scaling")
    out_dir = out_dir or Path("/tmp/recpipe-bench-train-scaling")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    result = scaling_one_thread(cfg, spark, open_lake(cfg, spark), out_dir, stamp)
    return {"name": "train_scaling_one_thread", "conf": conf, "cpu_count": os.cpu_count(), **result}


def bench(out_dir: Path, epochs: int | None = None) -> dict[str, Any]:
    """Examples from 10^6 synthetic events (the features benchmark's lake when present)."""
    return _bench(out_dir, "synthetic", epochs)


def bench_mind(out_dir: Path, epochs: int | None = None) -> dict[str, Any]:
    """The MIND sample's examples (the features benchmark's MIND lake when present)."""
    return _bench(out_dir, "mind", epochs)


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "synthetic"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else f"/tmp/recpipe-bench-train-{which}")
    if which == "scaling":  # on the lake of conf/local.yaml (make demo's)
        print(json.dumps(bench_scaling(out_dir=out), default=str))
    else:
        print(json.dumps((bench_mind if which == "mind" else bench)(out), default=str))
