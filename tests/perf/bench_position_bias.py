"""Position-bias benchmark (issue #14 item 3): ``train.position_bias`` feature vs none vs ipw on the
embedded default world, measured against the generator's TRUE click model (no timed assertions).

The lake: ``recpipe run --until examples`` of ``conf/local.yaml`` (200k events, backtest split)
under ``OUT_DIR/position_bias/lake`` (reused when present). Each mode trains the same DCN on the same examples
(2 Horovod ranks, not registered), then:

- ``test_auc``, ``test_logloss``, ``ece``: on the logged test impressions (what the train summary
  reports; position-biased labels, so not the target itself);
- ``slate_expected_clicks``: every logged test slate (request) reordered by the model's score with
  each item scored as served (position input 0 where the model has one), and the slate's
  expected clicks under the true click model at the request time with the reordered positions.
  Beside it the same for the logged order, the true-relevance order (oracle: items sorted by
  their true click probability in the top slot) and the mean over random orders (closed form:
  every item's mean over slots), and ``share_of_oracle_gain`` = (model - random) / (oracle -
  random);
- for ipw: the fitted examination exponent next to the generator's true one (0.8).

    .venv/bin/python tests/perf/bench_position_bias.py [OUT_DIR] [--existing DIR --json-name NAME]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MODES = ("feature", "none", "ipw")
SEEDS = (7, 8)  # train.seed: the spread between two seeds is the noise the modes are read against
TRUE_BETA = 0.8  # datasets.synthetic.true_click_probability: 1 / (1 + position) ** 0.8


def _sets(out_dir: Path) -> list[str]:
    return [
        f"lake.root={out_dir / 'lake'}",
        f"data.raw_dir={out_dir / 'raw'}",
        f"train.model_dir={out_dir / 'models'}",
    ]


def _lake(out_dir: Path) -> dict[str, Any]:
    if (out_dir / "lake" / "gold" / "training_examples" / "_delta_log").exists():
        return {"reused": True}
    cmd = [str(Path(sys.executable).with_name("recpipe")), "run", "--until", "examples", "-q"]
    for s in _sets(out_dir):
        cmd += ["--set", s]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "reused": False,
        "build_s": round(time.perf_counter() - t0, 1),
        "run_dates": summary.get("run_dates"),
    }


def _test_rows(lake: Any, cfg: Any) -> Any:
    """The logged (non-sampled) test impressions with a request and a position, every column a
    model may read (the ``feature`` spec is the superset)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from recpipe import constants as C
    from recpipe.model.artifact import read_spec
    from recpipe.model.data import read_split

    path = lake.path(C.GOLD_TRAINING_EXAMPLES)
    spec = read_spec(path)
    keys = [C.REQUEST_ID, C.USER_ID, C.ITEM_ID, C.POSITION, C.EVENT_TS, C.LABEL, C.SAMPLED]
    t = read_split(
        path, lake.version(C.GOLD_TRAINING_EXAMPLES), "test", list(dict.fromkeys(keys + spec.columns))
    )
    keep = pc.and_(
        pc.and_(pc.is_valid(t.column(C.REQUEST_ID)), pc.is_valid(t.column(C.POSITION))),
        pc.invert(pc.fill_null(t.column(C.SAMPLED).cast(pa.bool_()), False)),
    )
    return t.filter(keep)


def _true_p(world: Any, raw_users: list[str], items: list[str], positions: Any, ts_ms: Any) -> Any:
    from recpipe.datasets.synthetic import true_click_probability

    return true_click_probability(world, raw_users, items, positions, ts_ms)


def _slate_values(df: Any, score: Any, world: Any, slots: int) -> dict[str, float]:
    """Mean expected clicks per slate with the slate ordered by ``score`` (desc)."""
    import numpy as np

    d = df.assign(_s=score).sort_values(["request_id", "_s", "item_id"], ascending=[True, False, True])
    pos = d.groupby("request_id").cumcount().to_numpy()
    p = _true_p(world, d["raw_user"].tolist(), d["item_id"].tolist(), pos, d["ts_ms"].to_numpy())
    return float(np.sum(p) / d["request_id"].nunique())


def bench(out_dir: Path, existing: Path | None = None) -> dict[str, Any]:
    """``existing``: a folder holding ``lake/`` and ``raw/`` of an earlier run to measure on as
    is, e.g. a ``recpipe simulate`` run's (its test split is served lists: the recpipe arm's
    put the model's best items on top, so position and relevance are confounded there)."""
    import numpy as np

    from recpipe import constants as C
    from recpipe.config import load_config, replace
    from recpipe.datasets.synthetic import load_world
    from recpipe.events.transforms import pseudonymize_py
    from recpipe.lake import open_lake
    from recpipe.model.artifact import load_export
    from recpipe.model.inputs import to_model_inputs
    from recpipe.model.train import run_train
    from recpipe.scoring.rank import SERVE_POSITION
    from recpipe.spark import build_session

    if existing is not None:
        out_dir = Path(existing).resolve()
        result: dict[str, Any] = {"name": "position_bias", "lake": {"existing": str(out_dir)}}
    else:
        out_dir = Path(out_dir).resolve() / "position_bias"  # not the other benches' work/lake
        out_dir.mkdir(parents=True, exist_ok=True)
        result = {"name": "position_bias", "lake": _lake(out_dir)}
    cfg = load_config(REPO / "conf/local.yaml", _sets(out_dir))
    spark = build_session(cfg, "bench-position-bias")
    lake = open_lake(cfg, spark)

    world = load_world(cfg.data.raw_dir)
    key = cfg.pseudonym_key()
    raw_user_of = {pseudonymize_py(u, key): u for u in world.user_ids.tolist()}
    bots = {pseudonymize_py(u, key) for u in world.user_ids[world.is_bot].tolist()}
    rows = _test_rows(lake, cfg)
    df = rows.select([C.REQUEST_ID, C.USER_ID, C.ITEM_ID, C.POSITION, C.EVENT_TS, C.LABEL]).to_pandas()
    df["raw_user"] = df[C.USER_ID].map(raw_user_of)
    human = df["raw_user"].notna() & ~df[C.USER_ID].isin(bots)
    df, rows = df[human.to_numpy()].reset_index(drop=True), rows.filter(human.to_numpy())
    df["ts_ms"] = df[C.EVENT_TS].astype("datetime64[ms, UTC]").astype("int64")
    slots = int(df[C.POSITION].max()) + 1
    n = len(df)
    # Reference orders: logged, oracle (true click probability in the top slot), random (each
    # item's mean over the slots of its slate).
    top = _true_p(world, df["raw_user"].tolist(), df[C.ITEM_ID].tolist(), np.zeros(n), df["ts_ms"].to_numpy())
    size = df.groupby(C.REQUEST_ID)[C.ITEM_ID].transform("size").to_numpy()
    by_slot = [
        _true_p(world, df["raw_user"].tolist(), df[C.ITEM_ID].tolist(), np.full(n, k), df["ts_ms"].to_numpy())
        for k in range(slots)
    ]
    rand = sum(np.where(k < size, p, 0.0) for k, p in enumerate(by_slot)) / size
    reference = {
        "logged": _slate_values(df, -df[C.POSITION].to_numpy(), world, slots),
        "oracle": _slate_values(df, top, world, slots),
        "random": float(rand.sum() / df[C.REQUEST_ID].nunique()),
    }
    result["test_slates"] = {
        "requests": int(df[C.REQUEST_ID].nunique()),
        "impressions": n,
        "max_slots": slots,
        "expected_clicks_per_slate": {k: round(v, 4) for k, v in reference.items()},
    }
    runs = []
    for mode in MODES:
        for seed in SEEDS:
            t0 = time.perf_counter()
            mcfg = replace(cfg, [f"train.position_bias={mode}", f"train.seed={seed}"])
            run_id = f"pb-{mode}-{seed}-{time.strftime('%Y%m%dT%H%M%S')}"
            s = run_train(mcfg, spark, lake, run_id=run_id, register=False)
            model, spec = load_export(str(Path(s["path"])))
            served = rows.to_pandas()
            served[C.POSITION] = SERVE_POSITION
            score = model.predict(to_model_inputs(served, spec), batch_size=8192, verbose=0).reshape(-1)
            value = _slate_values(df, score, world, slots)
            gain = reference["oracle"] - reference["random"]
            cal = s.get("calibration") or {}
            pb = s["position_bias"]
            runs.append(
                {
                    "position_bias": mode,
                    "seed": seed,
                    "test_auc": s["test_auc"],
                    "test_logloss": s["test_logloss"],
                    "ece": cal.get("ece"),
                    "slate_expected_clicks": round(value, 4),
                    "share_of_oracle_gain": round((value - reference["random"]) / gain, 4)
                    if gain > 0
                    else None,
                    "lift_over_logged_order": round(value / reference["logged"] - 1.0, 4),
                    "fitted_beta": pb.get("beta"),
                    "bot_rows_left_out": pb.get("bot_rows_left_out"),
                    "true_beta": TRUE_BETA,
                    "train_s": s["train_s"],
                    "wall_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr)
    result["runs"] = runs

    def mean(mode: str, key: str) -> float:
        return float(np.mean([r[key] for r in runs if r["position_bias"] == mode]))

    result["by_mode"] = {
        m: {
            k: round(mean(m, k), 4)
            for k in ("slate_expected_clicks", "share_of_oracle_gain", "test_auc", "ece")
        }
        | {
            "seed_spread": round(
                float(np.ptp([r["slate_expected_clicks"] for r in runs if r["position_bias"] == m])), 4
            )
        }
        for m in MODES
    }
    base = result["by_mode"]["none"]["slate_expected_clicks"]
    result["vs_none"] = {
        m: round(result["by_mode"][m]["slate_expected_clicks"] / base - 1.0, 4) for m in MODES if m != "none"
    }
    result["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return result


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", nargs="?", default=str(REPO / "bench-results" / "work"))
    p.add_argument("--existing", help="measure on DIR/lake and DIR/raw as they are (e.g. a simulate run)")
    p.add_argument("--json-name", default="position_bias.json", help="file name under bench-results/")
    args = p.parse_args()
    res = bench(Path(args.out_dir), Path(args.existing) if args.existing else None)
    dest = REPO / "bench-results" / args.json_name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res, default=str))
