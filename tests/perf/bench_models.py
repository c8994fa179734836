"""Model selection benchmark (issue #13 item 5; ``make bench``, no timed assertions).

On one lake's ``gold.training_examples``, each CTR model (DCN-v2, DeepFM, the DIN-style target
attention model) is trained once per seed with the same config and splits, and the logistic
regression baseline is fitted on the same train split. The winner is chosen on the **validation**
AUC (mean over seeds) and every model is **reported** on test, in one table: a model never wins
on the split it is reported on.

    .venv/bin/python tests/perf/bench_models.py [--lake ROOT] [--which synthetic|mind|default]
        [--models dcn deepfm din] [--seeds 7 8] [--ablation LABEL=COL,COL]
        [--out bench-results] [--json-name NAME]

``--lake`` reuses a lake that already holds the examples (e.g. the demo's ``lakehouse``);
otherwise ``--which synthetic`` / ``mind`` builds (or reuses) the features benchmark's lake under
``OUT/work-models-<which>`` and ``default`` runs the demo's stages up to examples on the embedded
default world. ``bench-results/<json-name>.json`` (default ``model_selection``) holds ``rows``:
one per model with ``model``, ``val_auc``, ``test_auc`` (means over seeds), the per-seed values,
``test_ece``, ``samples_per_s``; ``chosen`` (by validation) and its test AUC next to the oracle's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _lake_config(args: argparse.Namespace, out: Path) -> tuple[Any, dict[str, Any]]:
    from recpipe.config import load_config

    if args.lake:
        root = Path(args.lake)
        cfg = load_config(REPO / "conf" / "local.yaml", [f"lake.root={root}", *args.overrides])
        return cfg, {"lake": str(root), "reused_examples": True}
    if args.which == "default":
        return _default_world(out / "work-models-default", args.overrides)
    from tests.perf.bench_train import _examples_lake

    cfg, built = _examples_lake(out / f"work-models-{args.which}", args.which)
    return cfg, built


def _default_world(work: Path, overrides: list[str]) -> tuple[Any, dict[str, Any]]:
    """The embedded default (conf/local.yaml) run through examples (what `make demo` trains on)."""
    import subprocess

    from recpipe import constants as C
    from recpipe.config import load_config
    from recpipe.lake import open_lake
    from recpipe.spark import build_session

    sets = [f"lake.root={work / 'lake'}", f"data.raw_dir={work / 'raw'}", *overrides]
    cfg = load_config(REPO / "conf" / "local.yaml", sets)
    lake = open_lake(cfg, build_session(cfg, "bench-models"))
    if lake.exists(C.GOLD_TRAINING_EXAMPLES):
        return cfg, {"lake": str(work / "lake"), "reused_examples": True}
    cmd = [
        str(Path(sys.executable).with_name("recpipe")),
        "run",
        "--conf",
        "conf/local.yaml",
        "--until",
        "examples",
    ]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return cfg, {"lake": str(work / "lake"), "reused_examples": False}


def _train_once(
    cfg: Any, spark: Any, lake: Any, model: str, seed: int, model_dir: Path, exclude: list[str] | None = None
) -> dict[str, Any]:
    from recpipe.config import replace
    from recpipe.model.train import run_train

    sets = [f"train.exclude_inputs=[{', '.join(exclude or [])}]"]
    sets += [
        f"train.model={model}",
        f"train.seed={seed}",
        "train.num_proc=1",
        f"train.model_dir={model_dir}",
        "train.checkpoint_every_steps=1000000",
    ]
    c = replace(cfg, sets)
    t = time.perf_counter()
    s = run_train(c, spark, lake, run_id=f"models-{model}-{seed}-{time.strftime('%H%M%S')}", register=False)
    cal = s.get("calibration") or {}
    return {
        "seed": seed,
        "val_auc": s["val_auc"],
        "test_auc": s["test_auc"],
        "test_ece": cal.get("ece"),
        "samples_per_s": round(s["samples_per_s"], 1),
        "epochs_run": s["epochs_run"],
        "wall_s": round(time.perf_counter() - t, 1),
        "oracle_auc": s.get("oracle_auc"),
        "popularity_auc": s.get("popularity_auc"),
    }


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.fmean(vals), 4) if vals else None


TARGET_AWARE = "target_aware=user_category_impressions,user_category_ctr,user_hours_since_category_click"


def bench(out_dir: Path, which: str = "default") -> dict[str, Any]:
    """``make bench`` (run_bench): the three models and the target-aware ablation, 2 seeds each,
    on the embedded default's examples."""
    args = argparse.Namespace(
        lake=None,
        which=which,
        models=["dcn", "deepfm", "din"],
        seeds=[7, 8],
        overrides=[],
        ablations=[TARGET_AWARE],
    )
    return run(args, Path(out_dir))


def bench_mind(out_dir: Path) -> dict[str, Any]:
    """The same on the MIND sample's examples (the features benchmark's MIND lake when present)."""
    return bench(out_dir, "mind")


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from recpipe import constants as C
    from recpipe.evaluation.baselines import examples_to_pandas, logreg_vs_popularity
    from recpipe.lake import open_lake
    from recpipe.spark import build_session

    cfg, built = _lake_config(args, out)
    spark = build_session(cfg, "bench-models")
    lake = open_lake(cfg, spark)
    if not lake.exists(C.GOLD_TRAINING_EXAMPLES):
        raise SystemExit(
            f"no gold.training_examples under {cfg.lake.root}: run `recpipe run --until examples` first"
        )
    rows: list[dict[str, Any]] = []
    oracle = popularity = None
    variants = [(m, m, []) for m in args.models]
    for a in args.ablations:  # LABEL=col1,col2: the first model without those inputs
        label, _, cols = a.partition("=")
        variants.append((f"{args.models[0]} without {label}", args.models[0], cols.split(",")))
    for name, model, exclude in variants:
        runs = [
            _train_once(cfg, spark, lake, model, seed, out / "work-models-artifacts", exclude)
            for seed in args.seeds
        ]
        oracle = oracle or runs[0]["oracle_auc"]
        popularity = popularity or runs[0]["popularity_auc"]
        rows.append(
            {
                "model": name,
                "excluded_inputs": exclude,
                "val_auc": _mean(runs, "val_auc"),
                "test_auc": _mean(runs, "test_auc"),
                "test_ece": _mean(runs, "test_ece"),
                "samples_per_s": _mean(runs, "samples_per_s"),
                "runs": runs,
            }
        )
        print(json.dumps({"model": name, "val_auc": rows[-1]["val_auc"], "test_auc": rows[-1]["test_auc"]}))
    lr = logreg_vs_popularity(examples_to_pandas(lake.read(C.GOLD_TRAINING_EXAMPLES)))
    rows.append(
        {
            "model": "logreg",
            "val_auc": round(lr["auc_logreg_validation"], 4) if "auc_logreg_validation" in lr else None,
            "test_auc": round(lr["auc_logreg"], 4) if "auc_logreg" in lr else None,
            "excluded_inputs": [],
            "test_ece": None,
            "samples_per_s": None,
            "runs": [],
        }
    )
    ranked = [r for r in rows if r["val_auc"] is not None]
    chosen = max(ranked, key=lambda r: r["val_auc"]) if ranked else None
    best_test = max((r for r in rows if r["test_auc"] is not None), key=lambda r: r["test_auc"], default=None)
    return {
        "benchmark": "model_selection",
        "data": built,
        "seeds": list(args.seeds),
        "overrides": list(args.overrides),
        "rows": rows,
        "chosen": chosen["model"] if chosen else None,
        "chosen_test_auc": chosen["test_auc"] if chosen else None,
        "best_on_test": best_test["model"] if best_test else None,
        "oracle_auc": oracle,
        "popularity_auc": popularity,
        "logreg_test_auc": rows[-1]["test_auc"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", help="a lake root that already holds gold.training_examples")
    p.add_argument("--which", choices=["synthetic", "mind", "default"], default="default")
    p.add_argument("--models", nargs="+", default=["dcn", "deepfm", "din"])
    p.add_argument("--seeds", nargs="+", type=int, default=[7, 8])
    p.add_argument(
        "--ablation",
        dest="ablations",
        action="append",
        default=[],
        metavar="LABEL=COL,COL",
        help="also train the first model without these inputs (train.exclude_inputs)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--out", default="bench-results")
    p.add_argument("--json-name", default="model_selection")
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    result = run(args, out)
    (out / f"{args.json_name}.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
