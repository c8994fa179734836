"""`recpipe run`: the stages in order through the stage contract (recpipe.stages).

- ``--date D``: the daily plan of run date D (see :mod:`recpipe.stages.daily`).
- ``--from-date D1 --to-date D2``: a backfill, the daily plan of each day in order; days already
  done are skipped stage by stage (skip-if-done), so a rerun commits nothing.
- neither: a backtest on the configured time split: run date ``examples.test_start``, examples
  over every event date (so the test split exists), the lists of that date evaluated against
  the test period's clicks.

On synthetic data (``data.source: synthetic``) the raw files are generated first (a data-prep
step, not a stage). A failed stage stops the run; running the same command again skips what is
done and resumes there. ``--from`` / ``--until`` select the stages.
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
from recpipe.stages.base import StageError, StageResult
from recpipe.stages.daily import STAGE_NAMES

log = logging.getLogger(__name__)

STAGES = ["generate", *STAGE_NAMES]


def stage_generate(cfg: Config) -> dict[str, Any]:
    from recpipe.datasets.synthetic import generate

    if cfg.data.source != "synthetic":
        return {"skipped": "data.source is not synthetic"}
    manifest = Path(cfg.data.raw_dir) / "manifest.json"
    syn = cfg.data.synthetic
    if manifest.exists():
        m = json.loads(manifest.read_text())
        wanted = {
            "seed": syn.seed,
            "events_requested": syn.events,
            "start": syn.start.isoformat(),
            "days": syn.days,
        }
        if all(m.get(k) == v for k, v in wanted.items()):
            return {
                "skipped": f"{manifest} already holds this data set",
                "clean_events": m.get("clean_events"),
            }
    rep = generate(
        cfg.data.raw_dir,
        events=syn.events,
        seed=syn.seed,
        start=syn.start,
        days=syn.days,
        progress=lambda m: log.info("generate: %s", m),
    )
    return {
        k: v for k, v in rep.to_dict().items() if k in ("lines_total", "clean_events", "files", "elapsed_s")
    }


# Body summary keys shown per stage in the run summary.
SHOWN = {
    "ingest": ("batch_id", "input_records", "accepted", "duplicates", "quarantined", "batches"),
    "features": ("as_of_date", "items", "users"),
    "examples": ("start", "end", "examples", "table_split_counts"),
    "train": (
        "model_version",
        "workers",
        "val_auc",
        "test_auc",
        "test_logloss",
        "popularity_auc",
        "oracle_auc",
    ),
    "recommend": ("run_date", "users", "lists", "mean_candidates_per_user", "reason_share", "model_version"),
}


def _compact(res: StageResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": res.status,
        "reason": res.reason,
        "duration_s": res.duration_s,
        "counts": res.counts,
    }
    s = res.summary
    if res.stage == "evaluate" and s:
        k = s["k"]
        out["top_n"] = {
            r["policy"]: {
                m: r.get(m)
                for m in (
                    f"ndcg@{k}",
                    f"recall@{k}",
                    f"hit_rate@{k}",
                    "catalog_coverage",
                    "intra_list_diversity",
                )
            }
            for r in s["top_n"]
            if r["segment"] == "all"
        }
        out.update(
            run_date=s["run_date"],
            users_with_clicks=s["users_with_clicks"],
            ranker=s["ranker"],
            true_click_model=s.get("true_click_model", {}),
            report_path=s["report_path"],
            report_html=s.get("report_html"),
        )
    else:
        out.update({k: s[k] for k in SHOWN.get(res.stage, ()) if k in s})
        if res.stage == "train" and "status" in s:
            # train's summary "status" is its model's registry status (current/rejected); the
            # entry's "status" stays the attempt's (ok/skipped/failed)
            out["model_status"] = s["status"]
    return out


def run_pipeline(
    cfg: Config,
    date: dt.date | None = None,
    start: str | None = None,
    until: str | None = None,
    rerun: bool = False,
    from_date: dt.date | None = None,
    to_date: dt.date | None = None,
) -> dict[str, Any]:
    from recpipe.spark import build_session
    from recpipe.stages.runner import backtest_date, date_range, run_backtest, run_days

    i0 = STAGES.index(start) if start else 0
    i1 = STAGES.index(until) + 1 if until else len(STAGES)
    if i0 >= i1:
        raise ValueError(f"--from {start} comes after --until {until}")
    if (from_date is None) != (to_date is None):
        raise ValueError("give both --from-date and --to-date (a backfill), or neither")
    if date is not None and from_date is not None:
        raise ValueError("give --date (one day) or --from-date/--to-date (a backfill), not both")
    selected = STAGES[i0:i1]
    t0 = time.perf_counter()
    prep: dict[str, Any] = {}
    if "generate" in selected:
        log.info("data prep: generate")
        prep["generate"] = stage_generate(cfg)
    names = [n for n in selected if n != "generate"]
    if from_date is not None and to_date is not None:
        dates, mode = date_range(from_date, to_date), "daily"
    elif date is not None:
        dates, mode = [date], "daily"
    else:
        dates, mode = [backtest_date(cfg)], "backtest"
    summary: dict[str, Any] = {"mode": mode, "run_dates": [d.isoformat() for d in dates], **prep}
    if names:
        spark = build_session(cfg, "run")
        try:
            if mode == "backtest":
                results = run_backtest(cfg, names, rerun, spark)
            else:
                results = run_days(cfg, dates, names, rerun, spark)
        except StageError as exc:
            raise StageError(f"{exc} (run the same command again: finished stages are skipped)") from exc
        days: dict[str, dict[str, Any]] = {}
        for res in results:
            days.setdefault(res.run_date.isoformat(), {})[res.stage] = _compact(res)
        summary["days"] = days
        # The page a person opens after a run: the last evaluation's HTML report.
        pages = [
            d["evaluate"]["report_html"] for d in days.values() if d.get("evaluate", {}).get("report_html")
        ]
        if pages:
            summary["report_html"] = pages[-1]  # print_summary names it last
        from recpipe.lake import open_lake
        from recpipe.lake.tables import describe_tables

        summary["tables"] = {
            t["table"]: {"version": t["version"], "rows": t["rows"]}
            for t in describe_tables(open_lake(cfg, spark))
        }
    summary["duration_s"] = round(time.perf_counter() - t0, 2)
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """A short human summary on stderr (the JSON line goes to stdout)."""
    out = sys.stderr
    dates = summary["run_dates"]
    when = dates[0] if len(dates) == 1 else f"{dates[0]} .. {dates[-1]}"
    print(
        f"\n=== recpipe run summary ({summary['mode']}, run date {when}, {summary['duration_s']:.0f} s) ===",
        file=out,
    )
    for day, stages in summary.get("days", {}).items():
        line = "  ".join(f"{name} {st['status']}" for name, st in stages.items())
        print(f"  {day}: {line}", file=out)
    for name, t in sorted(summary.get("tables", {}).items()):
        print(f"  {name:<24} v{t['version']:<4} {t['rows']:>10,} rows", file=out)
    last = list(summary.get("days", {}).values())[-1] if summary.get("days") else {}
    tr = last.get("train", {})
    if tr.get("status") == "ok":
        print(
            f"  model {tr.get('model_version')} ({tr.get('model_status')}, {tr.get('workers')} workers): test AUC "
            f"{_f(tr.get('test_auc'))} | popularity {_f(tr.get('popularity_auc'))} | oracle "
            f"{_f(tr.get('oracle_auc'))}",
            file=out,
        )
    ev = last.get("evaluate", {})
    if "top_n" in ev:
        for policy, m in ev["top_n"].items():
            metrics = "  ".join(f"{k}={_f(v)}" for k, v in m.items())
            print(f"  top-N {policy:<11} {metrics}", file=out)
        tc = ev.get("true_click_model") or {}
        if "published_expected_clicks_per_list" in tc:
            fallback = tc.get("fallback_ranker_expected_clicks_per_list")
            print(
                "  expected clicks per list (true click model): published "
                f"{_f(tc['published_expected_clicks_per_list'])} | popularity "
                f"{_f(tc['popularity_expected_clicks_per_list'])} | ALS-only "
                f"{_f(tc['als_only_expected_clicks_per_list'])}"
                + (f" | fallback ranker, same candidates {_f(fallback)}" if fallback is not None else ""),
                file=out,
            )
        print(f"  report: {ev['report_path']}", file=out)
    if summary.get("report_html"):
        print(f"  open in a browser: {summary['report_html']}", file=out)
    print("  `recpipe status` lists every stage attempt with its reason", file=out)


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def add_run_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
    date: Callable[[str], dt.date],
) -> None:
    p = sub.add_parser(
        "run",
        help="the stages in order: one run date (--date), a backfill (--from-date/--to-date) or a backtest",
    )
    common(p)
    p.add_argument(
        "--date",
        type=date,
        help="run date YYYY-MM-DD (daily plan); default: backtest at examples.test_start",
    )
    p.add_argument("--from-date", type=date, help="backfill: first run date (with --to-date)")
    p.add_argument("--to-date", type=date, help="backfill: last run date, inclusive")
    p.add_argument("--from", dest="start", choices=STAGES, help="first stage to run")
    p.add_argument("--until", choices=STAGES, help="last stage to run")
    p.add_argument(
        "--rerun",
        "--no-resume",
        dest="rerun",
        action="store_true",
        help="run every selected stage even when done (no skip-if-done)",
    )

    def cmd(args: argparse.Namespace) -> dict[str, Any]:
        cfg = load_config(args.conf, args.overrides)
        return run_pipeline(cfg, args.date, args.start, args.until, args.rerun, args.from_date, args.to_date)

    p.set_defaults(func=cmd)
