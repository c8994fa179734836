"""``recpipe status``: stages by run date from ``ops.runs`` (what ran, was skipped, failed, why)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from recpipe import constants as C
from recpipe.lake import Lake
from recpipe.stages import runs
from recpipe.stages.daily import STAGE_NAMES


def stage_status(lake: Lake, last: dt.date | None = None, days: int = 7) -> dict[str, Any]:
    """The latest attempt of each stage for each of the ``days`` run dates ending at ``last``
    (default: the latest run date in ``ops.runs``), with the number of attempts."""
    if last is None:
        every = runs.stage_rows(lake)
        if not every:
            return {"first": None, "last": None, "runs": [], "note": f"no stage attempts in {C.OPS_RUNS}"}
        last = max(r["run_date"] for r in every)
    first = last - dt.timedelta(days=days - 1)
    rows = runs.stage_rows(lake, None, first, last)
    latest: dict[tuple[dt.date, str], dict[str, Any]] = {}
    attempts: dict[tuple[dt.date, str], int] = {}
    for r in rows:  # oldest first
        key = (r["run_date"], r["job"])
        latest[key] = r
        attempts[key] = attempts.get(key, 0) + 1
    order = {name: i for i, name in enumerate(STAGE_NAMES)}
    out = []
    for (day, stage), r in sorted(latest.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        out.append(
            {
                "run_date": day.isoformat(),
                "stage": stage,
                "mode": r["mode"],
                "status": r["status"],
                "attempts": attempts[(day, stage)],
                "duration_s": r["duration_s"],
                "counts": dict(sorted((r["counts"] or {}).items())),
                "reason": r["reason"],
                "run_id": r["run_id"],
                "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
                "input_versions": r["input_versions"] or {},
                "output_versions": r["table_versions"] or {},
            }
        )
    return {"first": first.isoformat(), "last": last.isoformat(), "runs": out}


def format_status(report: dict[str, Any], reason_width: int = 90) -> str:
    """The report as a text table (one line per run date and stage)."""
    if not report["runs"]:
        note: str = report.get("note", "no stage attempts")
        return note
    head = f"{'run date':<10}  {'stage':<9}  {'status':<7}  {'tries':>5}  {'time':>7}  counts / reason"
    lines = [f"stages from {report['first']} to {report['last']}", head]
    for r in report["runs"]:
        counts = ", ".join(f"{k}={v:,}" for k, v in r["counts"].items())
        detail = (r["reason"] or counts or "-").replace("\n", " ")
        if r["status"] == runs.OK and counts:
            detail = counts
        elif counts:
            detail = f"{detail} [{counts}]"
        if len(detail) > reason_width:
            detail = detail[: reason_width - 3] + "..."
        mode = "" if r["mode"] == "daily" else f" ({r['mode']})"
        lines.append(
            f"{r['run_date']:<10}  {r['stage']:<9}  {r['status']:<7}  {r['attempts']:>5}  "
            f"{r['duration_s']:>6.1f}s  {detail}{mode}"
        )
    return "\n".join(lines)
