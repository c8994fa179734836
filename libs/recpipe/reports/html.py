"""Self-contained HTML pages (inline CSS, figures as ``data:image/png;base64`` images) from the
report dicts that the stages write as JSON."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from matplotlib.figure import Figure

from recpipe.reports import plots

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#555;margin:0}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}figure{margin:.8em 0}img{max-width:100%;height:auto}
figcaption{color:#555;font-size:.9em}.note{color:#666;font-style:italic}.t{overflow-x:auto}
"""


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """``fig`` as PNG bytes (the Agg renderer; no display or pyplot state involved)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def img(fig: Figure, caption: str) -> str:
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    cap = html.escape(caption)
    return (
        f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'
    )


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v, default=str))
    return html.escape(str(v))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, left: int = 1) -> str:
    """An HTML table of ``rows`` (dicts); the first ``left`` columns are left-aligned labels."""
    if not rows:
        return '<p class="note">nothing to show</p>'
    cols = list(columns or dict.fromkeys(c for r in rows for c in r))

    def cls(i: int, v: Any = None) -> str:
        # labels and text values read left-aligned, numbers right-aligned
        return ' class="l"' if i < left or isinstance(v, str) else ""

    head = "".join(f"<th{cls(i)}>{html.escape(c)}</th>" for i, c in enumerate(cols))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i, r.get(c))}>{fmt(r.get(c))}</td>" for i, c in enumerate(cols)) + "</tr>"
        for r in rows
    )
    return f'<div class="t"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def kv_table(d: dict[str, Any]) -> str:
    """Two columns: key, value (nested values as JSON)."""
    return table([{"name": k, "value": v} for k, v in d.items()], ["name", "value"])


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def skipped(d: Any) -> str | None:
    """The reason a report part was skipped, if it was."""
    return d.get("skipped") if isinstance(d, dict) and "skipped" in d else None


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def page(title: str, meta: Iterable[str], sections: Iterable[str]) -> str:
    """A complete HTML document: no script, no external reference."""
    head = "".join(f'<p class="meta">{html.escape(m)}</p>' for m in meta)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{head}{''.join(sections)}</body></html>\n"
    )


def _figures(figs: list[tuple[str, Figure]]) -> dict[str, str]:
    return {title: img(fig, title) for title, fig in figs}


CALIBRATION_COLUMNS = ("bin", "n", "p_min", "p_max", "mean_predicted", "observed_ctr")


def calibration_section(calibration: dict[str, Any] | None, figure: str) -> str:
    """ECE, Brier score, the reliability plot and the per-decile table of the model's test scores
    (``recpipe.evaluation.calibration``); a note when the report holds none."""
    if not calibration:
        return section("Calibration", note("no model scores on the test split in this report"))
    facts = {k: v for k, v in calibration.items() if k != "deciles"}
    return section(
        "Calibration", figure, kv_table(facts), table(calibration.get("deciles") or [], CALIBRATION_COLUMNS)
    )


def evaluation_page(report: dict[str, Any]) -> str:
    """The evaluation report (``evaluation-<date>.json``) as a page."""
    k = int(report.get("k", 10))
    figs = _figures(plots.evaluation_figures(report))
    ranker = report.get("ranker") or {}
    rows = report.get("top_n") or []
    cols = ["segment", "policy", *plots.accuracy_metrics(k), *plots.SPREAD_METRICS]
    rows_sorted = sorted(rows, key=lambda r: (r["segment"] != "all", r["segment"]))
    extra = [c for c in dict.fromkeys(c for r in rows for c in r) if c not in cols and c != "k"]
    tc = report.get("true_click_model") or {}
    ope = report.get("off_policy") or {}
    ope_rows = [
        {
            "estimator": name,
            **{c: ope[name].get(c) for c in ("value", "ci_low", "ci_high", "n")},
            "effective_sample_size": ope[name].get("effective_sample_size"),
        }
        for name in ("ips", "snips")
        if isinstance(ope.get(name), dict)
    ]
    ope_facts = {k_: v for k_, v in ope.items() if not isinstance(v, dict)}
    sections = [
        section(
            "Ranker",
            note(why)
            if (why := skipped(ranker))
            else kv_table({k_: v for k_, v in ranker.items() if k_ != "calibration"}),
            figs.get("Ranker AUC", ""),
        ),
        calibration_section(ranker.get("calibration"), figs.get("Calibration", "")),
        section(
            f"Top-N accuracy at k={k}: published lists vs. baselines",
            figs.get("Top-N accuracy by policy and segment", ""),
            table(rows_sorted, cols + extra, left=2),
        ),
        section("Coverage, diversity, novelty", figs.get("Coverage, diversity, novelty", "")),
        section(
            "Expected clicks per list (true click model)",
            note(why) if (why := skipped(tc)) else figs.get("Expected clicks per list", "") + kv_table(tc),
        ),
        section(
            "Off-policy estimates of the logging policy",
            note(why)
            if (why := skipped(ope))
            else kv_table(ope_facts)
            + table(ope_rows, ["estimator", "value", "ci_low", "ci_high", "n", "effective_sample_size"]),
        ),
        section(
            "Cold and warm items",
            table([{"items": s, **v} for s, v in (report.get("item_segments") or {}).items()]),
        ),
        section(
            "Slots per reason",
            figs.get("Slots per reason", ""),
            table([{"reason": r, "slots": n} for r, n in (report.get("reasons") or {}).items()]),
        ),
    ]
    window = report.get("truth_window") or ["?", "?"]
    meta = [
        f"run {report.get('run_id', '?')} | lists of {report.get('run_date', '?')} | clicks of "
        f"[{window[0]}, {window[1]}) | k = {k}",
        f"{fmt(report.get('users_with_lists'))} users with lists, "
        f"{fmt(report.get('users_with_clicks'))} with clicks in the window",
    ]
    return page(f"recpipe evaluation {report.get('run_date', '')}", meta, sections)


TRAIN_SUMMARY_KEYS = (
    "run_id",
    "model",
    "model_version",
    "status",
    "reason",
    "workers",
    "examples_version",
    "steps",
    "epochs_run",
    "resumed_from_step",
    "train_s",
    "samples_per_s",
    "samples_per_s_last_epoch",
    "test_negatives",
    "path",
)
BASELINE_KEYS = (
    "val_auc",
    "val_logloss",
    "test_auc",
    "test_logloss",
    "popularity_auc",
    "oracle_auc",
    "oracle_source",
)


def train_page(report: dict[str, Any]) -> str:
    """A training run (``train-<run id>.json``: the summary plus the per-epoch history)."""
    figs = _figures(plots.train_figures(report))
    hist = report.get("history") or []
    sections = [
        section("Training curves", figs.get("Training curves", note("no epoch history recorded"))),
        section(
            "Model vs. baselines",
            figs.get("Model vs. baselines", ""),
            kv_table({k: report.get(k) for k in BASELINE_KEYS if k in report}),
        ),
        calibration_section(report.get("calibration"), figs.get("Calibration", "")),
        section("Throughput", figs.get("Throughput", "")),
        section("Epochs", table(hist)),
        section("Run", kv_table({k: report.get(k) for k in TRAIN_SUMMARY_KEYS if k in report})),
    ]
    meta = [
        f"run {report.get('run_id', '?')} | {report.get('model', '?')} on "
        f"{fmt(report.get('workers'))} Horovod ranks"
    ]
    return page(f"recpipe training {report.get('run_id', '')}", meta, sections)


def ingest_page(report: dict[str, Any]) -> str:
    """One ingested batch (``ingest-<batch id>.json``: the reconciliation summary plus per-file counts)."""
    figs = _figures(plots.ingest_figures(report))
    counts: dict[str, Any] = {
        k: report.get(k)
        for k in (
            "input_records",
            "accepted",
            "duplicates",
            "quarantined",
            "late_events",
            "files",
            "already_ingested",
        )
        if k in report
    }
    reasons = report.get("quarantined_by_reason") or {}
    files = report.get("records_by_file") or []
    not_read = report.get("files_not_read") or {}
    sections = [
        section("Records", figs.get("Records", ""), kv_table(counts)),
        section(
            "Quarantine reasons",
            figs.get("Quarantine reasons", ""),
            table([{"reason": r, "records": n} for r, n in reasons.items()]),
        ),
        section(
            "Files",
            figs.get("Records per file", ""),
            table(files, ["file", "records", "accepted", "quarantined", "late_events"]),
            section("Files not read", kv_table(not_read)) if not_read else "",
        ),
        section("Quality gate", kv_table(report.get("quality") or {})),
        section("Timings (s)", kv_table(report.get("timings_s") or {})),
    ]
    meta = [f"batch {report.get('batch_id', '?')} | run {report.get('run_id', '?')}"]
    return page(f"recpipe ingest batch {report.get('batch_id', '')}", meta, sections)


SIMULATION_ARM_COLUMNS = (
    "arm",
    "share",
    "lists",
    "impressions",
    "clicks",
    "ctr",
    "ci_low",
    "ci_high",
    "clicks_per_list",
    "clicks_per_list_ci_low",
    "clicks_per_list_ci_high",
    "expected_clicks_per_list",
)
SIMULATION_OPE_KEYS = (
    "estimator",
    "value",
    "ci_low",
    "ci_high",
    "observed",
    "ci_contains_observed",
    "abs_error",
    "direct_method",
    "users",
    "matched_slot_share",
)
SIMULATION_OPE_COLUMNS = ("estimate made", "lists served", *SIMULATION_OPE_KEYS, "position beta")


def _stage_statuses(stages: Any) -> str:
    """The next day's plan in a few words: the stages that did not end ``ok``, or ``all ok``."""
    if not isinstance(stages, dict) or not stages:
        return "–"
    return ", ".join(f"{name} {status}" for name, status in stages.items() if status != "ok") or "all ok"


def _simulation_day_rows(days: list[Any], names: list[str]) -> list[dict[str, Any]]:
    """One row per simulated day: its model, CTR by arm, lifts and the next day's plan."""
    day_rows = []
    for d in days:
        lift = d.get("lift_over_popularity") or {}
        day_rows.append(
            {
                "date": d.get("date"),
                "model_version": d.get("model_version"),
                "fallback_lists": d.get("fallback_lists"),
                **{f"ctr {a}": ((d.get("arms") or {}).get(a) or {}).get("ctr") for a in names},
                "lift": lift.get("lift"),
                "lift_ci_low": lift.get("ci_low"),
                "lift_ci_high": lift.get("ci_high"),
                **(
                    {
                        "lift over previous": (d.get("lift_over_previous") or {}).get("lift"),
                        "previous ranker": d.get("previous_ranker"),
                    }
                    if "previous" in names
                    else {}
                ),
                "next day's plan": _stage_statuses(d.get("pipeline_next_day")),
                "duration_s": d.get("duration_s"),
            }
        )
    return day_rows


def _simulation_ope_rows(days: list[Any]) -> list[dict[str, Any]]:
    """One row per day's off-policy estimate of the next day's lists (or why it was skipped)."""
    ope_rows = []
    for d in days:
        o = d.get("ope") if isinstance(d.get("ope"), dict) else {}
        row = {
            "estimate made": d.get("date"),
            "lists served": plots.next_day(str(d.get("date", "?"))),
            **{c: o.get(c) for c in SIMULATION_OPE_KEYS},
            "position beta": (o.get("position_curve") or {}).get("beta"),
        }
        if why := skipped(o):
            row["skipped"] = why
        ope_rows.append(row)
    return ope_rows


def _previous_lift_section(report: dict[str, Any]) -> str:
    """The lift of the recpipe arm over the previous model's arm: what the last retrain is worth."""
    return section(
        "CTR lift over the previous model (the retrain's worth)",
        note(
            "The previous arm's lists come from the same candidates and re-ranking, ranked "
            "by the model promoted before the one behind the published lists (the "
            "popularity ranker before the first model)."
        ),
        kv_table(report["lift_over_previous"])
        if isinstance(report.get("lift_over_previous"), dict)
        else note("no lift over the whole run: an arm served no list or got no click"),
    )


def simulation_page(report: dict[str, Any]) -> str:
    """A ``recpipe simulate`` summary (``simulation-<start>.json``): online CTR by arm per day, the
    lift over popularity, and the next-day off-policy estimates against the online value."""
    figs = _figures(plots.simulation_figures(report))
    days = report.get("days") or []
    shares = report.get("arm_shares") or {}
    arms = report.get("arms") or {}
    names = list(dict.fromkeys([*arms, *(a for d in days for a in (d.get("arms") or {}))]))
    arm_rows = [{"arm": a, "share": shares.get(a), **(arms.get(a) or {})} for a in names]
    by_day = [
        {"date": d.get("date"), "arm": a, **m}
        for d in days
        for a, m in (d.get("arms") or {}).items()
        if isinstance(m, dict)
    ]
    day_rows = _simulation_day_rows(days, names)
    ope_rows = _simulation_ope_rows(days)
    ope_cols = [*SIMULATION_OPE_COLUMNS, *(["skipped"] if any("skipped" in r for r in ope_rows) else [])]
    run_lift = report.get("lift_over_popularity")
    sections = [
        section("Arms over the whole run", table(arm_rows, SIMULATION_ARM_COLUMNS)),
        section(
            "Online CTR by arm over days",
            figs.get("Online CTR by arm", note("no served day in this summary")),
            table(day_rows, left=1),
            table(by_day, ["date", "arm", *SIMULATION_ARM_COLUMNS[2:]], left=2),
        ),
        section(
            "CTR lift over popularity",
            figs.get("CTR lift over popularity", ""),
            kv_table(run_lift)
            if isinstance(run_lift, dict)
            else note("no lift over the whole run: an arm served no list or got no click"),
        ),
        *([_previous_lift_section(report)] if "previous" in names else []),
        section(
            "Next-day off-policy estimate vs. online value",
            note(
                "The estimate made on day D from D's recpipe-arm logs is of the lists served on D + 1; "
                "observed is their online clicks per list on D + 1 (none for the last day: its lists "
                "were not served in the run)."
            ),
            figs.get("Next-day OPE vs. online value", note("no off-policy estimate in this summary")),
            table(ope_rows, ope_cols, left=2),
            kv_table(report.get("ope_summary") or {}),
        ),
    ]
    share_text = ", ".join(f"{a} {v:.0%}" for a, v in shares.items() if isinstance(v, (int, float)))
    meta = [
        f"{fmt(report.get('days_simulated'))} simulated days from {report.get('start', '?')}"
        + (f" | arms {share_text}" if share_text else ""),
        f"{fmt(report.get('duration_s'))} s in all, {fmt(report.get('seconds_per_day'))} s per day",
    ]
    return page(f"recpipe simulate from {report.get('start', '')}", meta, sections)
