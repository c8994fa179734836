"""The rankers' own lists of the same candidates under the true click model (issue #13; no timed
assertions): how much of a published list's value is the ranker's.

On the latest ``gold.candidates`` run of a lake made from ``recpipe generate`` data (the demo's),
every candidate of every user is scored (``recpipe.scoring.rank.score_candidates``, the job's
ranking frame and model inputs) by

- ``popularity``: the fallback ranker (``scoring.scorers.PopularityScorer``);
- ``model``: the current registered model, or the export given with ``--model``;

and each ranker's top-N of the human users is valued as ``recpipe evaluate`` values the published
lists: the sum of the true click probabilities at positions 0..N-1 at run date + 12 h, averaged
over users. No exploration and no freshness boost: the ranker's order alone, uncapped and under
the re-rank's diversity cap (``recommend.max_per_category``, greedily in score order).

Per ranker it also reports what the lists are made of: the share of slots per candidate source,
the mean true item scale ``a`` (quality x freshness) and the mean true interest of the user in the
item's category, and the "cold" items: candidates without impressions in the feature windows at
the cut-off (``item_impressions_<max>d == 0``), their share of the slots, and their mean score
against their mean true probability (each next to the warm candidates').

    .venv/bin/python tests/perf/bench_list_rankers.py [--lake lakehouse] [--raw-dir data/raw]
        [--model EXPORT_DIR] [--out bench-results/list_rankers.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ceiling import MS_HOUR, SERVE_HOURS, list_value, world_columns  # noqa: E402

from recpipe import constants as C  # noqa: E402

KEEP = [C.USER_ID, C.ITEM_ID, "category", C.REASON]


def score_all(cfg: Any, spark: Any, lake: Any, run_date: dt.date, model_uri: str | None) -> dict[str, Any]:
    """Per ranker, every (user, candidate) of ``run_date`` with its score (pandas), and the model
    version scored."""
    from recpipe.candidates.run import stored_candidate_set
    from recpipe.model.artifact import read_export_spec
    from recpipe.scoring.rank import score_candidates
    from recpipe.scoring.run import scoring_frame
    from recpipe.scoring.scorers import POPULARITY, ScorerRef, resolve_scorer

    if model_uri:
        model = ScorerRef(
            "model", version=model_uri, uri=model_uri, inputs=tuple(read_export_spec(model_uri).columns)
        )
    else:
        model, why = resolve_scorer(cfg, lake)
        if model.kind != "model":
            raise SystemExit(f"no model to compare: {why}; pass --model EXPORT_DIR")
    cold_col = f"item_impressions_{max(cfg.features.windows_days)}d"
    # The run's stored candidates and the frames the job ranks them with (no source recomputed,
    # the day's stored ALS model not refitted or overwritten).
    cs = stored_candidate_set(cfg, lake, run_date)
    try:
        featured, items = scoring_frame(cfg, lake, cs, cs.candidates, model_inputs=True)
        out = {
            "popularity": score_candidates(featured, POPULARITY, keep=[*KEEP, cold_col]).toPandas(),
            "model": score_candidates(featured, model, keep=[*KEEP, cold_col], items=items).toPandas(),
        }
    finally:
        cs.unpersist()
    for pdf in out.values():
        pdf["cold"] = pdf.pop(cold_col).fillna(0).to_numpy() == 0
    return {"scored": out, "model_version": model.version}


def top_lists(scored: pd.DataFrame, top_n: int, cap: int | None) -> pd.DataFrame:
    """Each user's top ``top_n`` by score (ties by item id), at most ``cap`` per category."""
    d = scored.sort_values([C.USER_ID, C.SCORE, C.ITEM_ID], ascending=[True, False, True])
    if cap:
        d = d[d.groupby([C.USER_ID, "category"]).cumcount() < cap]
    d = d.assign(**{C.RANK: d.groupby(C.USER_ID).cumcount() + 1})
    return d[d[C.RANK] <= top_n].reset_index(drop=True)


def measure(
    scored: pd.DataFrame, world: Any, with_world: Any, ts_ms: int, top_n: int, cap: int
) -> dict[str, Any]:
    """One ranker's list values and what its lists hold (human users only)."""
    rows = with_world(scored.assign(**{C.POSITION: 0, "ts_ms": ts_ms}))
    rows = rows[~rows["bot"].to_numpy()].reset_index(drop=True)
    rows["interest"] = world.interest[rows["u"].to_numpy(), rows["cat"].to_numpy()]
    rows["p_top"] = np.minimum(rows["a"] * rows["interest"], 0.95)

    def value(lists: pd.DataFrame) -> float:
        return list_value(world, lists, ts_ms)

    capped = top_lists(rows, top_n, cap)
    cold = rows["cold"].to_numpy()
    return {
        "expected_clicks": value(top_lists(rows, top_n, None)),
        f"expected_clicks_max_{cap}_per_category": value(capped),
        "slots_by_source": {k: round(v, 4) for k, v in capped[C.REASON].value_counts(normalize=True).items()},
        "slots_mean_item_scale": round(float(capped["a"].mean()), 4),
        "slots_mean_interest": round(float(capped["interest"].mean()), 4),
        "slots_cold_share": round(float(capped["cold"].mean()), 4),
        "candidates_cold_share": round(float(cold.mean()), 4),
        "cold_mean_score": round(float(rows.loc[cold, C.SCORE].mean()), 4) if cold.any() else None,
        "cold_mean_true_p": round(float(rows.loc[cold, "p_top"].mean()), 4) if cold.any() else None,
        "warm_mean_score": round(float(rows.loc[~cold, C.SCORE].mean()), 4),
        "warm_mean_true_p": round(float(rows.loc[~cold, "p_top"].mean()), 4),
    }


def bench(lake_root: Path, raw_dir: Path, config: Path, model_uri: str | None) -> dict[str, Any]:
    from deltalake import DeltaTable

    from recpipe.config import load_config
    from recpipe.datasets.synthetic.world import load_world
    from recpipe.lake import open_lake
    from recpipe.spark import build_session

    t0 = time.perf_counter()
    if not (raw_dir / "manifest.json").exists():
        raise SystemExit(
            f"{raw_dir}: no manifest.json; the true click model needs data made by recpipe generate"
        )
    cfg = load_config(config, [f"lake.root={lake_root}"])
    world = load_world(raw_dir)
    parts = DeltaTable(str(lake_root / "gold" / "candidates")).partitions()
    run_date = max(dt.date.fromisoformat(p[C.RUN_DATE]) for p in parts)
    spark = build_session(cfg, "bench-list-rankers")
    try:
        got = score_all(cfg, spark, open_lake(cfg, spark), run_date, model_uri)
    finally:
        spark.stop()
    cutoff_ms = int(np.datetime64(run_date, "ms").astype(np.int64))
    ts_ms = cutoff_ms + int(SERVE_HOURS * MS_HOUR)
    with_world = world_columns(world, cfg.pseudonym_key())
    rc = cfg.recommend
    rankers = {
        name: measure(pdf, world, with_world, ts_ms, rc.top_n, rc.max_per_category)
        for name, pdf in got["scored"].items()
    }
    return {
        "name": "list_rankers",
        "lake": str(lake_root),
        "run_date": run_date.isoformat(),
        "model_version": got["model_version"],
        "top_n": rc.top_n,
        "candidates": int(len(got["scored"]["model"])),
        "rankers": rankers,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--lake", type=Path, default=REPO / "lakehouse")
    ap.add_argument("--raw-dir", type=Path, default=REPO / "data" / "raw")
    ap.add_argument("--config", type=Path, default=REPO / "conf" / "local.yaml")
    ap.add_argument(
        "--model", default=None, help="a model export folder (default: the current registered model)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "list_rankers.json")
    args = ap.parse_args(argv)
    result = bench(args.lake.resolve(), args.raw_dir, args.config, args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
