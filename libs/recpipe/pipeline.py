"""`recpipe run`: every stage in order, with progress, resumable, ``--from`` / ``--until``.

Run date: ``--date D`` is the daily mode (features as of D, examples up to D-1, lists for D,
evaluation of D's lists against the clicks that came after). Without ``--date`` the run is a
backtest on the configured time split: the run date is ``examples.test_start``, examples cover
every event date (so the test split exists), and the lists for that date are evaluated against
the test period's clicks. Every stage is idempotent, so re-running skips work already committed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recpipe.config import Config, load_config

log = logging.getLogger(__name__)

STAGES = ["generate", "ingest", "features", "examples", "train", "recommend", "evaluate"]


class StageError(RuntimeError):
    pass


def run_date_of(cfg: Config, date: dt.date | None) -> dt.date:
    return date or dt.date.fromisoformat(cfg.examples.test_start)


def _state_path(cfg: Config, date: dt.date | None) -> Path:
    root = Path(cfg.lake.root) if "://" not in cfg.lake.root else Path(".recpipe")
    return root / "_runs" / f"run-{date.isoformat() if date else 'backtest'}.json"


def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d.get(k) for k in keys if k in d}


def stage_generate(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    from recpipe.datasets.synthetic import generate

    if cfg.data.source != "synthetic":
        return {"skipped": "data.source is not synthetic"}
    manifest = Path(cfg.data.raw_dir) / "manifest.json"
    syn = cfg.data.synthetic
    if manifest.exists():
        m = json.loads(manifest.read_text())
        wanted = {"seed": syn.seed, "events_requested": syn.events, "start": syn.start, "days": syn.days}
        if all(m.get(k) == v for k, v in wanted.items()):
            return {
                "skipped": f"{manifest} already holds this data set",
                "clean_events": m.get("clean_events"),
            }
    rep = generate(
        cfg.data.raw_dir,
        events=syn.events,
        seed=syn.seed,
        start=dt.date.fromisoformat(syn.start),
        days=syn.days,
        progress=lambda m: log.info("generate: %s", m),
    )
    return _pick(rep.to_dict(), ("lines_total", "clean_events", "files", "elapsed_s"))


def stage_ingest(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    from recpipe.events.ingest import run_ingest

    s = run_ingest(cfg, spark, input_dir=cfg.data.raw_dir)
    return _pick(
        s,
        (
            "batch_id",
            "input_records",
            "accepted",
            "duplicates",
            "quarantined",
            "already_ingested",
            "duration_s",
        ),
    )


def stage_features(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    from recpipe.features.build import run_features

    s = run_features(cfg, spark, run_date_of(cfg, date))
    return _pick(s, ("as_of_date", "items", "users", "skipped", "table_versions", "duration_s"))


def stage_examples(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    """Daily mode: every event date up to D-1 (D's clicks may still arrive). Backtest: all dates."""
    from recpipe.features.examples import default_range, run_examples
    from recpipe.lake import open_lake

    until = date - dt.timedelta(days=1) if date else None
    start, end = default_range(open_lake(cfg, spark), until)
    s = run_examples(cfg, spark, start, end)
    return _pick(
        s, ("start", "end", "examples", "skipped", "table_split_counts", "table_versions", "duration_s")
    )


def stage_train(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    from recpipe.model.train import run_train

    s = run_train(cfg, spark)
    return _pick(
        s,
        (
            "model_version",
            "status",
            "workers",
            "val_auc",
            "test_auc",
            "test_logloss",
            "popularity_auc",
            "oracle_auc",
            "duration_s",
        ),
    )


def stage_recommend(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    from recpipe.scoring.run import run_recommend

    s = run_recommend(cfg, spark, run_date=run_date_of(cfg, date))
    return _pick(
        s,
        ("run_date", "users", "lists", "mean_candidates_per_user", "reason_share", "model_version", "ranker"),
    )


def stage_evaluate(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    from recpipe.evaluation.run import run_evaluate

    s = run_evaluate(cfg, spark, run_date_of(cfg, date))
    k = s["k"]
    top = {
        r["policy"]: {
            m: r.get(m)
            for m in (f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}", "catalog_coverage", "intra_list_diversity")
        }
        for r in s["top_n"]
        if r["segment"] == "all"
    }
    return {
        "run_date": s["run_date"],
        "users_with_clicks": s["users_with_clicks"],
        "ranker": s["ranker"],
        "top_n": top,
        "true_click_model": s.get("true_click_model", {}),
        "report_path": s["report_path"],
    }


STAGE_FUNCS: dict[str, Callable[[Config, Any, dt.date | None], dict[str, Any]]] = {
    "generate": stage_generate,
    "ingest": stage_ingest,
    "features": stage_features,
    "examples": stage_examples,
    "train": stage_train,
    "recommend": stage_recommend,
    "evaluate": stage_evaluate,
}


def run_pipeline(
    cfg: Config,
    date: dt.date | None = None,
    start: str | None = None,
    until: str | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    from recpipe.spark import build_session

    names = list(STAGES)
    i0 = names.index(start) if start else 0
    i1 = names.index(until) + 1 if until else len(names)
    if i0 >= i1:
        raise StageError(f"--from {start} comes after --until {until}")
    selected = names[i0:i1]
    state_file = _state_path(cfg, date)
    state = json.loads(state_file.read_text()) if resume and state_file.exists() else {}
    if resume and not start and state.get("failed_stage") in selected:
        selected = selected[selected.index(state["failed_stage"]) :]
        log.info("resuming from failed stage %s (last error: %s)", selected[0], state.get("error"))
    spark = None
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for n, name in enumerate(selected, 1):
        log.info("[%d/%d] stage %s ...", n, len(selected), name)
        ts = time.perf_counter()
        if spark is None and name != "generate":
            spark = build_session(cfg, "run")
        try:
            results[name] = STAGE_FUNCS[name](cfg, spark, date)
        except Exception as exc:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            state_file.write_text(json.dumps({"failed_stage": name, "error": str(exc)}))
            raise StageError(f"stage {name} failed: {exc} (rerun `recpipe run` to resume from it)") from exc
        log.info(
            "[%d/%d] stage %s done in %.1fs: %s",
            n,
            len(selected),
            name,
            time.perf_counter() - ts,
            json.dumps(results[name], default=str),
        )
    if state_file.exists():
        state_file.unlink()
    summary: dict[str, Any] = {
        "run_date": str(run_date_of(cfg, date)),
        "stages": results,
        "duration_s": round(time.perf_counter() - t0, 2),
    }
    if spark is not None:
        from recpipe.lake import open_lake
        from recpipe.tables import describe_tables

        summary["tables"] = {
            t["table"]: {"version": t["version"], "rows": t["rows"]}
            for t in describe_tables(open_lake(cfg, spark))
        }
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """A short human summary on stderr (the JSON line goes to stdout)."""
    out = sys.stderr
    print(
        "\n=== recpipe run summary (run date {}, {:.0f} s) ===".format(
            summary["run_date"], summary["duration_s"]
        ),
        file=out,
    )
    for name, t in sorted(summary.get("tables", {}).items()):
        print(f"  {name:<24} v{t['version']:<4} {t['rows']:>10,} rows", file=out)
    st = summary["stages"]
    if "train" in st:
        tr = st["train"]
        print(
            f"  model {tr.get('model_version')} ({tr.get('status')}, {tr.get('workers')} workers): test AUC "
            f"{_f(tr.get('test_auc'))} | popularity {_f(tr.get('popularity_auc'))} | oracle "
            f"{_f(tr.get('oracle_auc'))}",
            file=out,
        )
    if "evaluate" in st:
        ev = st["evaluate"]
        for policy, m in ev["top_n"].items():
            metrics = "  ".join(f"{k}={_f(v)}" for k, v in m.items())
            print(f"  top-N {policy:<11} {metrics}", file=out)
        tc = ev.get("true_click_model") or {}
        if "published_expected_clicks_per_list" in tc:
            print(
                "  expected clicks per list (true click model): published "
                f"{_f(tc['published_expected_clicks_per_list'])} | popularity "
                f"{_f(tc['popularity_expected_clicks_per_list'])} | ALS-only "
                f"{_f(tc['als_only_expected_clicks_per_list'])}",
                file=out,
            )
        print(f"  report: {ev['report_path']}", file=out)


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def add_run_parser(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("run", help="run every stage in order (resumes from a failed stage)")
    common(p)
    p.add_argument(
        "--date",
        type=dt.date.fromisoformat,
        help="run date YYYY-MM-DD (daily mode); default: backtest at examples.test_start",
    )
    p.add_argument("--from", dest="start", choices=STAGES, help="first stage to run")
    p.add_argument("--until", choices=STAGES, help="last stage to run")
    p.add_argument("--no-resume", action="store_true", help="start from the first stage even after a failure")

    def cmd(args: argparse.Namespace) -> dict[str, Any]:
        cfg = load_config(args.conf, args.overrides)
        return run_pipeline(cfg, args.date, args.start, args.until, resume=not args.no_resume)

    p.set_defaults(func=cmd)
