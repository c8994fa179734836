"""Running stages under the contract: pinned inputs, skip-if-done, timing, one ``ops.runs`` row.

Input versions. A stage for run date D reads each input table at the version recorded by the last
stage before it in the daily order that writes that table, in its latest ``ok``/``skipped`` row
for D (the table's latest version when there is none, e.g. a single stage run on its own). So
rerunning a finished day sees the inputs that day saw, whatever later days wrote. A pin never
hides a later delete (``recpipe forget``) and never reaches past a vacuum or an expired log: then
the latest version is read.

Skip-if-done. The fingerprint hashes the stage, mode, plan, input versions and the config keys
the stage declares. An earlier ``ok`` or ``skipped`` attempt with the same fingerprint whose output
tables still exist at (at least) the recorded versions makes this attempt ``skipped``, with the
earlier attempt's output versions, so a rerun commits nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from recpipe import constants as C
from recpipe import faults
from recpipe.lake import Lake, Txn
from recpipe.stages import runs
from recpipe.stages.base import Stage, StageContext, StageError, StageResult, config_part
from recpipe.stages.pinned import PinnedLake

log = logging.getLogger(__name__)


def producers(stage: Stage, order: Sequence[Stage]) -> dict[str, str]:
    """input table -> the last stage before ``stage`` in ``order`` that writes it."""
    names = [s.name for s in order]
    before = order[: names.index(stage.name)] if stage.name in names else list(order)
    out = {}
    for table in stage.inputs:
        writers = [s.name for s in before if table in s.outputs]
        if writers:
            out[table] = writers[-1]
    return out


def resolve_pins(stage: Stage, ctx: StageContext, order: Sequence[Stage]) -> dict[str, int | None]:
    """The version of each input table this attempt reads (None: the table does not exist)."""
    lake = ctx.lake
    prod = producers(stage, order)
    rows = runs.stage_rows(lake, sorted(set(prod.values())), ctx.run_date, ctx.run_date) if prod else []
    latest_row: dict[str, dict[str, Any]] = {}
    for r in rows:  # oldest first: the last one wins
        if r["mode"] == ctx.mode and r["status"] in (runs.OK, runs.SKIPPED):
            latest_row[r["job"]] = r
    pins: dict[str, int | None] = {}
    for table in stage.inputs:
        current = lake.version(table)
        row = latest_row.get(prod.get(table, ""))
        pinned = (row["table_versions"] or {}).get(table) if row else None
        if pinned is None or current is None or pinned >= current or _unpinned(lake, table, pinned):
            pins[table] = current
        else:
            pins[table] = int(pinned)
    return pins


def _unpinned(lake: Lake, table: str, version: int) -> bool:
    """Read the latest version instead of ``version``: a delete (``recpipe forget``) or a vacuum
    came after it, or the log no longer reaches back to it (``forget --vacuum`` expires it)."""
    versions = []
    for commit in lake.history(table):
        v = commit.get("version")
        if v is None:
            continue
        versions.append(int(v))
        op = f"{commit.get('recpipe.operation') or ''} {commit.get('operation') or ''}".lower()
        if int(v) > version and ("delete" in op or "vacuum" in op):
            return True
    return bool(versions) and min(versions) > version


def fingerprint(stage: Stage, ctx: StageContext, plan: dict[str, Any], pins: dict[str, Any]) -> str:
    payload = {
        "stage": stage.name,
        "mode": ctx.mode,
        "plan": plan,
        "inputs": pins,
        "config": {k: config_part(ctx.cfg, k) for k in stage.config_keys},
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _done_by(stage: Stage, ctx: StageContext, fp: str) -> dict[str, Any] | None:
    """The latest earlier ok/skipped attempt with this fingerprint whose outputs still stand."""
    for r in runs.stage_rows(ctx.lake, [stage.name], fingerprint=fp)[::-1]:  # the latest first
        if r["status"] not in (runs.OK, runs.SKIPPED) or r["mode"] != ctx.mode:
            continue
        outputs = r["table_versions"] or {}
        now = {t: ctx.lake.version(t) for t in outputs}
        if all(now[t] is not None and now[t] >= v for t, v in outputs.items()):
            return r
    return None


def _one_line(exc: BaseException, limit: int = 600) -> str:
    """``Type: message`` on one line: the message's first lines (a JVM error's summary), capped."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()][:3]
    text = f"{type(exc).__name__}: {' '.join(lines)}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def execute(stage: Stage, ctx: StageContext, order: Sequence[Stage]) -> StageResult:
    """One attempt of ``stage`` for ``ctx.run_date``; records it in ``ops.runs``.

    Raises :class:`StageError` (after recording the failed attempt) when the body fails. Crash
    points (``RECPIPE_FAULT``) reached inside belong to ``stage``.
    """
    with faults.stage(stage.name):
        return _execute(stage, ctx, order)


def _execute(stage: Stage, ctx: StageContext, order: Sequence[Stage]) -> StageResult:
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.UTC)
    run_id = f"{stage.name}-{ctx.run_date.isoformat()}-{uuid.uuid4().hex[:8]}"
    pins: dict[str, int | None] = {}
    plan: dict[str, Any] = {}
    fp = ""
    body_rows: list[runs.RunRow] = []

    def finish(
        status: str, reason: str | None, summary: dict[str, Any], outputs: dict[str, Any]
    ) -> StageResult:
        res = StageResult(
            stage=stage.name,
            run_date=ctx.run_date,
            mode=ctx.mode,
            run_id=run_id,
            status=status,
            reason=reason,
            duration_s=round(time.perf_counter() - t0, 3),
            fingerprint=fp,
            plan=plan,
            counts={**_body_counts(body_rows), **stage.counts(summary)},
            input_versions=pins,
            output_versions=outputs,
            summary=summary,
        )
        _record(ctx.lake, res, started, body_rows)
        log.info(
            "stage %s %s (%s): %s in %.1fs%s%s",
            stage.name,
            ctx.run_date,
            ctx.mode,
            status,
            res.duration_s,
            f" ({reason})" if reason else "",
            progress_counts(res.counts, res.duration_s) if status == runs.OK else "",
        )
        return res

    try:
        pins = resolve_pins(stage, ctx, order)
        lake = PinnedLake(ctx.lake, {t: v for t, v in pins.items() if v is not None})
        plan = stage.plan(ctx, lake)
        fp = fingerprint(stage, ctx, plan, pins)
        done = None if ctx.rerun else _done_by(stage, ctx, fp)
        if done is not None:
            same = f"done: same inputs and config as {done['run_id']} ({done['status']})"
            return finish(runs.SKIPPED, same, {}, done["table_versions"] or {})
        why = None if ctx.rerun else stage.skip_reason(ctx, plan, lake)
        if why is not None:
            return finish(runs.SKIPPED, why, {}, _versions(ctx.lake, stage.outputs))
        with runs.attempt(stage.name) as att:
            try:
                summary = stage.body(ctx, plan, lake)
            finally:
                body_rows = att.body_rows
    except Exception as exc:
        reason = _one_line(exc)
        try:
            finish(runs.FAILED, reason, {}, _versions(ctx.lake, stage.outputs))
        except Exception as rec_exc:  # the lake itself may be what failed
            log.error("could not record the failed attempt %s in ops.runs: %s", run_id, rec_exc)
        raise StageError(f"stage {stage.name} for {ctx.run_date} failed: {reason}") from exc
    return finish(runs.OK, None, summary, _versions(ctx.lake, stage.outputs))


# Counts that measure a stage's work, in order of preference: the first one present gets a rate.
RATE_KEYS = ("input_records", "examples", "slots", "users_with_lists", "users", "steps")


def progress_counts(counts: dict[str, int], seconds: float) -> str:
    """``"; input_records 20444, accepted 19800 (2410 input_records/s)"``: the attempt's counts for
    its one log line, with the rate of the first :data:`RATE_KEYS` count ("" without counts)."""
    if not counts:
        return ""
    text = ", ".join(f"{k} {v}" for k, v in counts.items())
    key = next((k for k in RATE_KEYS if counts.get(k)), None)
    if key is not None and seconds > 0:
        text += f" ({counts[key] / seconds:.0f} {key}/s)"
    return f"; {text}"


def _versions(lake: Lake, tables: Sequence[str]) -> dict[str, int | None]:
    return {t: lake.version(t) for t in tables}


def _body_counts(rows: list[runs.RunRow]) -> dict[str, int]:
    """Reconciliation counts recorded by the body itself (ingest's batches), summed."""
    out: dict[str, int] = {}
    for r in rows:
        for k in ("input_records", "accepted", "duplicates"):
            v = getattr(r, k)
            if v is not None:
                out[k] = out.get(k, 0) + int(v)
        if r.quarantined is not None:
            out["quarantined"] = out.get("quarantined", 0) + sum(int(v) for v in r.quarantined.values())
    return out


def _record(lake: Lake, res: StageResult, started: dt.datetime, body_rows: list[runs.RunRow]) -> None:
    quarantined: dict[str, int] = {}
    for r in body_rows:
        for k, v in (r.quarantined or {}).items():
            quarantined[k] = quarantined.get(k, 0) + int(v)
    summary = {
        "job": res.stage,
        "plan": res.plan,
        "summary": res.summary,
        "batches": [r.summary for r in body_rows],
    }
    row = runs.RunRow(
        run_id=res.run_id,
        job=res.stage,
        status=res.status,
        started_at=started,
        finished_at=dt.datetime.now(dt.UTC),
        duration_s=res.duration_s,
        summary=summary,
        batch_id=",".join(r.batch_id for r in body_rows if r.batch_id) or None,
        input_records=res.counts.get("input_records") if body_rows else None,
        accepted=res.counts.get("accepted") if body_rows else None,
        duplicates=res.counts.get("duplicates") if body_rows else None,
        quarantined=quarantined if body_rows else None,
        table_versions=res.output_versions,
        run_date=res.run_date,
        mode=res.mode,
        reason=res.reason,
        fingerprint=res.fingerprint,
        input_versions=res.input_versions,
        counts=res.counts,
    )
    faults.point("runs", C.OPS_RUNS)  # the stage's commits are done, its row not yet (crash tests)
    runs.record(lake, row, txn=Txn(f"recpipe.runs/{res.run_id}", 1))


def run_stages(
    ctx_for: Callable[[dt.date], StageContext],
    dates: Sequence[dt.date],
    stages: Sequence[Stage],
    order: Sequence[Stage],
) -> list[StageResult]:
    """Every stage of ``stages`` for each date in order; stops at the first failure (StageError)."""
    results = []
    for day in dates:
        ctx = ctx_for(day)
        for stage in stages:
            results.append(execute(stage, ctx, order))
    return results
