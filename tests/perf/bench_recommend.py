"""Recommend benchmark: end-to-end time, cost per user, scored candidates/s, peak memory and the
content-neighbour build for 10^4 and 10^5 users over 10^4 items on local[2] (no timed assertions),
with the popularity ranker and/or the model ranker.

The users are synthesized straight into silver.events / silver.items (numpy, ~``events_per_user``
events each: impressions, clicks, reads in short sessions, category-driven tastes), which skips
generation and ingest so the benchmark measures only the recommend job. For the model ranker the
real stages run first on the same lake, outside the timed recommend: examples of the last
``MODEL_DAYS`` days (with their feature partitions), the serve date's features, and one epoch of
the configured model on one rank, registered as current (its speed is measured, not its quality;
a quarter of the events are clicks that follow an impression, so the examples have labels).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Run as a script too (`python tests/perf/bench_recommend.py`): the repo root for tests.perf.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

RUN_DATE = dt.date(2026, 10, 15)
MODEL_DAYS = 3
CATS = ["news", "sports", "finance", "tech", "entertainment", "health", "travel", "food", "autos", "science"]


def _config(out_dir: Path) -> Any:
    from recpipe.config import config_from_dict

    return config_from_dict(
        {
            "mode": "local",
            "lake": {"root": str(out_dir / "lake")},
            "data": {"source": "raw", "raw_dir": str(out_dir / "raw")},
            "privacy": {"allow_dev_key": True},
            "spark": {
                "master": "local[2]",
                "show_progress": False,
                "conf": {
                    "spark.sql.shuffle.partitions": "8",
                    "spark.driver.memory": "6g",
                    "spark.ui.enabled": "false",
                    "spark.sql.execution.arrow.pyspark.enabled": "true",
                },
            },
        },
        file="<bench>",
    )


def synthesize(
    spark, lake, n_users: int, n_items: int = 3000, events_per_user: int = 20, seed: int = 0
) -> int:
    """Write silver.items and silver.events for ``n_users`` users; returns the number of events."""
    from recpipe import constants as C

    rng = np.random.default_rng(seed)
    end = pd.Timestamp(RUN_DATE, tz="UTC")
    pub = (end - pd.to_timedelta(rng.uniform(0, 20 * 24, n_items), unit="h")).floor("s")
    cat = rng.integers(0, len(CATS), n_items)
    words = np.array([f"w{c}_{j}" for c in range(len(CATS)) for j in range(30)])
    items = pd.DataFrame(
        {
            C.ITEM_ID: [f"N{i:06d}" for i in range(n_items)],
            "title": [" ".join(rng.choice(words[c * 30 : (c + 1) * 30], 6)) for c in cat],
            "text": [" ".join(rng.choice(words, 20)) for _ in range(n_items)],
            "category": [CATS[c] for c in cat],
            "subcategory": None,
            "tags": [[] for _ in range(n_items)],
            "publisher": "bench",
            "published_ts": pub,
            "expires_ts": pd.NaT,
            "language": "en",
            "status": np.where(rng.random(n_items) < 0.01, "blocked", "active"),
            C.BATCH_ID: "bench",
            "updated_at": end,
        }
    )
    lake.overwrite(C.SILVER_ITEMS, spark.createDataFrame(items, C.SILVER_ITEMS_SCHEMA))
    n = n_users * events_per_user
    n_click = n // 4
    n_imp = n - n_click
    user = rng.integers(0, n_users, n_imp)
    taste = rng.integers(0, len(CATS), n_users)
    # items of the user's favourite category 60% of the time, popular items more often
    by_cat = [np.flatnonzero(cat == c) for c in range(len(CATS))]
    fav = rng.random(n_imp) < 0.6
    item = rng.zipf(1.3, n_imp) % n_items
    fav_idx = np.flatnonzero(fav)
    for c in range(len(CATS)):
        sel = fav_idx[taste[user[fav_idx]] == c]
        item[sel] = by_cat[c][rng.integers(0, len(by_cat[c]), len(sel))]
    ts = pub[item].asi8 // 1000 + rng.uniform(0, 72 * 3.6e9, n_imp).astype(np.int64)  # after publication
    # A quarter of the events are clicks on impressed items, 5 s to 10 min after the impression,
    # three times as likely in the user's favourite category (so a model has something to learn).
    w = np.where(taste[user] == cat[item], 3.0, 1.0)
    clicked = rng.choice(n_imp, n_click, replace=False, p=w / w.sum())
    user = np.concatenate([user, user[clicked]])
    item = np.concatenate([item, item[clicked]])
    ts = np.concatenate([ts, ts[clicked] + rng.uniform(5e6, 600e6, n_click).astype(np.int64)])
    ts = np.minimum(ts, end.value // 1000 - 1)
    etype = np.array(["impression"] * n_imp + ["click"] * n_click)
    ts_idx = pd.to_datetime(ts, unit="us", utc=True)
    events = pd.DataFrame(
        {
            C.EVENT_ID: [f"e{i}" for i in range(n)],
            C.USER_ID: [f"p_u{u:07d}" for u in user],
            C.ITEM_ID: [f"N{i:06d}" for i in item],
            C.EVENT_TYPE: etype,
            C.EVENT_TS: ts_idx,
            C.SESSION_ID: [f"s{u}_{d}" for u, d in zip(user, ts // 86_400_000_000)],
            C.REQUEST_ID: None,
            C.POSITION: np.zeros(n, dtype=np.int32),
            C.DWELL_MS: np.zeros(n, dtype=np.int64),
            C.DEVICE: "mobile",
            C.COUNTRY: np.array(["US", "DE", "GB", "FR"])[user % 4],
            C.PROPENSITY: 0.5,
            C.IS_HISTORY: False,
            C.BATCH_ID: "bench",
            C.INGESTED_AT: end,
            C.EVENT_DATE: ts_idx.date,
        }
    )
    df = spark.createDataFrame(events, C.SILVER_EVENTS_SCHEMA)
    lake.overwrite(C.SILVER_EVENTS, df, partition_by=[C.EVENT_DATE])
    return n


def train_model(cfg: Any, spark, lake, out_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Examples, features and a registered model on the synthesized lake (model ranker)."""
    from recpipe.config import replace
    from recpipe.examples.build import run_examples
    from recpipe.features.build import run_features
    from recpipe.model.train import run_train

    start, end = RUN_DATE - dt.timedelta(days=MODEL_DAYS), RUN_DATE - dt.timedelta(days=1)
    cfg = replace(
        cfg,
        [
            f"examples.validation_start={end - dt.timedelta(days=1)}",
            f"examples.test_start={end}",
            "train.epochs=1",
            "train.warmup_epochs=0",
            "train.num_proc=1",
            "train.checkpoint_every_steps=1000000",
            f"train.model_dir={out_dir / 'models'}",
        ],
    )
    t = {}
    t0 = time.perf_counter()
    # the features stage: every date the examples read, and the serving date, in one pass
    run_features(cfg, spark, max(RUN_DATE, end), lake=lake, start=min(start, RUN_DATE))
    t["features_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    ex = run_examples(cfg, spark, start, end, lake=lake)
    t["examples_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    tr = run_train(cfg, spark, lake, run_id="bench-model")
    t["train_s"] = round(time.perf_counter() - t0, 1)
    info = {
        "prep_s": t,
        "examples": {k: ex.get(k) for k in ("examples", "table_split_counts", "run_label_rate")},
        "model": cfg.train.model,
        "model_version": tr.get("model_version"),
        "model_status": tr.get("status"),
        "reason": tr.get("reason"),
        "test_auc": tr.get("test_auc"),
        "samples_per_s": tr.get("samples_per_s"),
    }
    return cfg, info


def bench(
    out_dir: Path,
    sizes: tuple[int, ...] = (10_000, 100_000),
    items: tuple[int, ...] = (10_000,),
    rankers: tuple[str, ...] = ("popularity",),
) -> dict:
    """One run per (items, users, ranker) case; ``runs`` keeps the shape later runs are compared
    with: users, items, ranker, total_s, scored_candidates_per_s, per_user_ms, peak_rss_gib. Both
    rankers of a (users, items) case run on the same synthesized lake, popularity first."""
    from recpipe.lake import open_lake
    from recpipe.scoring.run import run_recommend
    from recpipe.spark import build_session
    from tests.perf.common import PeakMemory

    runs = []
    for n_items in items:
        for n_users in sizes:
            work = Path(out_dir) / f"recommend-{n_users}x{n_items}"
            shutil.rmtree(work, ignore_errors=True)
            cfg = _config(work)
            spark = build_session(cfg, "bench-recommend")
            lake = open_lake(cfg, spark)
            t0 = time.perf_counter()
            n_events = synthesize(spark, lake, n_users, n_items=n_items)
            synth_s = time.perf_counter() - t0
            for ranker in rankers:
                model_info = None
                if ranker == "model":
                    cfg, model_info = train_model(cfg, spark, lake, work)
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    s = run_recommend(cfg, spark, RUN_DATE, lake=lake, force=True)
                    total = time.perf_counter() - t0
                if s["ranker"] != ranker:
                    raise RuntimeError(
                        f"bench asked for the {ranker} ranker, recommend used {s['ranker']} (model: {model_info})"
                    )
                sources = s["candidate_sources"]
                runs.append(
                    {
                        "users": s["users"],
                        "items": n_items,
                        "ranker": s["ranker"],
                        "model_version": s["model_version"],
                        "events": n_events,
                        "total_s": round(total, 1),
                        "per_user_ms": round(1e3 * total / max(1, s["users"]), 3),
                        "scored_candidates": s["scored_candidates"],
                        "scored_candidates_per_s": round(
                            s["scored_candidates"] / max(1e-9, s["timings_s"]["score_s"]), 0
                        ),
                        "peak_rss_gib": round(mem.peak / 2**30, 2),
                        "content_neighbours_s": sources.get("similar_content", {}).get("s"),
                        "candidates_per_user": s["mean_candidates_per_user"],
                        "synthesize_s": round(synth_s, 1),
                        "timings_s": s["timings_s"],
                        "candidate_sources": sources,
                        "reason_share": s["reason_share"],
                        "model_prep": model_info,
                    }
                )
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return {"bench": "recommend", "master": "local[2]", "runs": runs}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="recommend benchmark: one JSON object with a list `runs`")
    ap.add_argument("out", nargs="?", default="/tmp/bench-recommend", help="work folder")
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--items", type=int, nargs="+", default=[10_000])
    ap.add_argument(
        "--rankers",
        nargs="+",
        choices=["popularity", "model"],
        default=["popularity"],
        help="rankers to run on each case's lake, in this order (model: trains one first)",
    )
    a = ap.parse_args()
    print(json.dumps(bench(Path(a.out), tuple(a.users), tuple(a.items), tuple(a.rankers)), indent=2))
