"""`recpipe run`: every stage in order, resumable, with ``--from`` / ``--until``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recpipe.config import Config, load_config

log = logging.getLogger(__name__)

STAGES = ["generate", "ingest"]


class StageError(RuntimeError):
    pass


def _state_path(cfg: Config, date: dt.date | None) -> Path:
    root = Path(cfg.lake.root) if "://" not in cfg.lake.root else Path(".recpipe")
    return root / "_runs" / f"run-{date.isoformat() if date else 'all'}.json"


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
    )
    return {
        k: v for k, v in rep.to_dict().items() if k in ("lines_total", "clean_events", "files", "elapsed_s")
    }


def stage_ingest(cfg: Config, spark, date: dt.date | None) -> dict[str, Any]:
    from recpipe.events.ingest import run_ingest

    s = run_ingest(cfg, spark, input_dir=cfg.data.raw_dir)
    return {
        k: s[k]
        for k in (
            "batch_id",
            "input_records",
            "accepted",
            "duplicates",
            "quarantined",
            "already_ingested",
            "duration_s",
        )
    }


STAGE_FUNCS: dict[str, Callable[[Config, Any, dt.date | None], dict[str, Any]]] = {
    "generate": stage_generate,
    "ingest": stage_ingest,
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
    selected = names[i0:i1]
    state_file = _state_path(cfg, date)
    state = json.loads(state_file.read_text()) if resume and state_file.exists() else {}
    if resume and not start and state.get("failed_stage") in selected:
        selected = selected[selected.index(state["failed_stage"]) :]
        log.info("resuming from failed stage %s", selected[0])
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
            state = {"failed_stage": name, "error": str(exc)}
            state_file.parent.mkdir(parents=True, exist_ok=True)
            state_file.write_text(json.dumps(state))
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
    return {"stages": results, "duration_s": round(time.perf_counter() - t0, 2)}


def add_run_parser(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("run", help="run every stage in order (resumes from a failed stage)")
    common(p)
    p.add_argument("--date", type=dt.date.fromisoformat, help="run date, YYYY-MM-DD")
    p.add_argument("--from", dest="start", choices=STAGES, help="first stage to run")
    p.add_argument("--until", choices=STAGES, help="last stage to run")
    p.add_argument("--no-resume", action="store_true", help="start from the first stage even after a failure")

    def cmd(args: argparse.Namespace) -> dict[str, Any]:
        cfg = load_config(args.conf, args.overrides)
        return run_pipeline(cfg, args.date, args.start, args.until, resume=not args.no_resume)

    p.set_defaults(func=cmd)
