"""Matplotlib figures of the report dicts, shared by the HTML pages and the notebooks.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state, no display needed);
each function returns ``[(title, figure), ...]`` and skips what the report does not hold.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

POLICY_COLORS = {
    "published": "tab:blue",
    "popularity": "tab:orange",
    "als": "tab:green",
    "fallback_ranker": "tab:purple",
}
SPREAD_METRICS = ("catalog_coverage", "intra_list_diversity", "novelty_bits")


def accuracy_metrics(k: int) -> list[str]:
    return [f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}", "mrr"]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _grouped_bars(ax: Axes, groups: list[str], series: dict[str, list[float | None]], title: str) -> None:
    """One bar group per ``groups`` entry, one bar per series (None -> no bar)."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ys = [0.0 if v is None else v for v in values]
        ax.bar(xs, ys, width, label=name, color=POLICY_COLORS.get(name))
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def ranker_auc_figure(ranker: dict[str, Any]) -> Figure | None:
    raw = {k: _num(ranker.get(k)) for k in ("auc", "popularity_auc")}
    aucs = {("model" if k == "auc" else "popularity"): v for k, v in raw.items() if v is not None}
    if not aucs:
        return None
    fig = Figure(figsize=(6, 2))
    ax = fig.subplots()
    ax.barh(list(aucs), list(aucs.values()), color=["tab:blue", "tab:orange"][: len(aucs)])
    ax.set_xlim(0.4, 1.0)
    ax.axvline(0.5, color="grey", ls="--")
    ax.set_title("test AUC: model vs. popularity", fontsize=10)
    fig.tight_layout()
    return fig


def reliability_figure(calibration: dict[str, Any]) -> Figure | None:
    """Observed click rate against mean prediction per decile of the predictions, with the
    diagonal a calibrated model lies on; None without deciles (no model scores in the report).

    The axes stop just past the largest value, not at 1: CTR predictions sit near 0, where a
    unit square would stack every decile in one corner.
    """
    rows = calibration.get("deciles") or []
    if not rows:
        return None
    pred = [float(r["mean_predicted"]) for r in rows]
    obs = [float(r["observed_ctr"]) for r in rows]
    top = min(1.0, 1.05 * max(pred + obs)) or 1.0  # all zero: the unit square
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    ax.plot([0.0, top], [0.0, top], color="grey", ls="--", label="calibrated")
    ax.plot(pred, obs, marker="o", color="tab:blue", label="model (deciles)")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, top)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed click rate")
    scores = f"ECE {calibration['ece']:.4f}, Brier {calibration['brier']:.4f}"
    ax.set_title(f"reliability on the test split\n{scores}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def top_n_figure(rows: list[dict[str, Any]], k: int) -> Figure | None:
    """NDCG / recall / hit rate / MRR at k by segment (groups) and policy (bars)."""
    if not rows:
        return None
    segments = list(dict.fromkeys(r["segment"] for r in rows))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    by = {(r["policy"], r["segment"]): r for r in rows}
    metrics = accuracy_metrics(k)
    fig = Figure(figsize=(14, 3.4))
    axes = fig.subplots(1, len(metrics))
    for ax, m in zip(axes, metrics, strict=True):
        series = {p: [_num(by.get((p, s), {}).get(m)) for s in segments] for p in policies}
        _grouped_bars(ax, segments, series, m)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def spread_figure(rows: list[dict[str, Any]]) -> Figure | None:
    """Catalog coverage, intra-list diversity and novelty of each policy (all users)."""
    allseg = [r for r in rows if r["segment"] == "all"]
    if not allseg:
        return None
    fig = Figure(figsize=(12, 3))
    axes = fig.subplots(1, len(SPREAD_METRICS))
    for ax, m in zip(axes, SPREAD_METRICS, strict=True):
        names = [r["policy"] for r in allseg]
        ax.bar(
            names,
            [_num(r.get(m)) or 0.0 for r in allseg],
            color=[POLICY_COLORS.get(n, "tab:grey") for n in names],
        )
        ax.set_title(m, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def reasons_figure(reasons: dict[str, int]) -> Figure | None:
    """Published slots per reason (candidate source / re-ranking rule)."""
    if not reasons:
        return None
    items = sorted(reasons.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(7, 0.6 + 0.35 * len(items)))
    ax = fig.subplots()
    ax.barh([str(k) for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_title("slots per reason", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def expected_clicks_figure(tc: dict[str, Any]) -> Figure | None:
    """Expected clicks per list under the generator's true click model (synthetic data)."""
    policies = ("published", "fallback_ranker", "popularity", "als_only")
    raw = {p: _num(tc.get(f"{p}_expected_clicks_per_list")) for p in policies}
    vals = {p: v for p, v in raw.items() if v is not None}
    if not vals:
        return None
    fig = Figure(figsize=(6, 2.4))
    ax = fig.subplots()
    colors = [POLICY_COLORS.get(p.removesuffix("_only"), "tab:grey") for p in vals]
    ax.bar(list(vals), list(vals.values()), color=colors)
    ax.set_title("expected clicks per list (true click model)", fontsize=10)
    fig.tight_layout()
    return fig


def evaluation_figures(report: dict[str, Any]) -> list[tuple[str, Figure]]:
    """The figures of ``notebooks/evaluation_report.ipynb``, from an evaluation report dict."""
    rows = report.get("top_n") or []
    figs = [
        ("Ranker AUC", ranker_auc_figure(report.get("ranker") or {})),
        ("Calibration", reliability_figure((report.get("ranker") or {}).get("calibration") or {})),
        ("Top-N accuracy by policy and segment", top_n_figure(rows, int(report.get("k", 10)))),
        ("Coverage, diversity, novelty", spread_figure(rows)),
        ("Slots per reason", reasons_figure(report.get("reasons") or {})),
        ("Expected clicks per list", expected_clicks_figure(report.get("true_click_model") or {})),
    ]
    return [(t, f) for t, f in figs if f is not None]


def train_figures(report: dict[str, Any]) -> list[tuple[str, Figure]]:
    """Training curves per epoch (loss, validation AUC against the baselines, logloss, throughput)."""
    hist = report.get("history") or []
    out: list[tuple[str, Figure]] = []
    if hist:
        epochs = [h["epoch"] for h in hist]
        fig = Figure(figsize=(14, 3.2))
        ax_loss, ax_auc, ax_ll = fig.subplots(1, 3)
        ax_loss.plot(epochs, [_num(h.get("train_loss")) for h in hist], marker="o")
        ax_loss.set_title("train loss", fontsize=10)
        ax_auc.plot(epochs, [_num(h.get("val_auc")) for h in hist], marker="o", label="model (val)")
        for key, color in (("popularity_auc", "tab:orange"), ("oracle_auc", "tab:green")):
            if _num(report.get(key)) is not None:
                ax_auc.axhline(report[key], color=color, ls="--", label=f"{key} (test)")
        ax_auc.set_title("validation AUC", fontsize=10)
        ax_auc.legend(fontsize=8)
        ax_ll.plot(epochs, [_num(h.get("val_logloss")) for h in hist], marker="o", color="tab:red")
        ax_ll.set_title("validation logloss", fontsize=10)
        for ax in (ax_loss, ax_auc, ax_ll):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out.append(("Training curves", fig))
    by_rank = report.get("samples_per_s_by_rank") or []
    if hist or by_rank:
        fig = Figure(figsize=(12, 3))
        grid: Any = fig.subplots(1, 2 if by_rank and hist else 1)  # an Axes, or an array of two
        axes = list(grid) if hasattr(grid, "__len__") else [grid]
        if hist:
            axes[0].bar([h["epoch"] for h in hist], [_num(h.get("samples_per_s")) or 0.0 for h in hist])
            axes[0].set_title("samples/s per epoch (all ranks; epoch 1 includes tracing)", fontsize=10)
            axes[0].set_xlabel("epoch")
            axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
        if by_rank:
            ax = axes[-1]
            ax.bar([f"rank {i}" for i in range(len(by_rank))], by_rank, color="tab:purple")
            ax.set_title("samples/s per rank (whole run)", fontsize=10)
        fig.tight_layout()
        out.append(("Throughput", fig))
    base = {k: v for k in ("test_auc", "popularity_auc", "oracle_auc") if (v := _num(report.get(k)))}
    if base:
        fig = Figure(figsize=(6, 2.2))
        ax = fig.subplots()
        ax.barh(list(base), list(base.values()), color=["tab:blue", "tab:orange", "tab:green"][: len(base)])
        ax.set_xlim(0.4, 1.0)
        ax.axvline(0.5, color="grey", ls="--")
        ax.set_title("test AUC: model vs. baselines", fontsize=10)
        fig.tight_layout()
        out.append(("Model vs. baselines", fig))
    reliability = reliability_figure(report.get("calibration") or {})
    if reliability is not None:
        out.append(("Calibration", reliability))
    return out


MAX_FILE_BARS = 40


def _per_file_or_folder(files: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The per-file rows, or summed per folder (a day folder of hourly files) when there are too
    many files for one bar each."""
    if len(files) <= MAX_FILE_BARS:
        return files, "file"
    by: dict[str, dict[str, Any]] = {}
    for f in files:
        folder = f["file"].rsplit("/", 1)[0] if "/" in f["file"] else "."
        row = by.setdefault(folder, {"file": f"{folder}/", "accepted": 0, "quarantined": 0, "n": 0})
        row["accepted"] += f.get("accepted") or 0
        row["quarantined"] += f.get("quarantined") or 0
        row["n"] += 1
    rows = [by[k] for k in sorted(by)]
    if len(rows) > 3 * MAX_FILE_BARS:
        rows = rows[: 3 * MAX_FILE_BARS]
        return rows, f"folder (first {len(rows)} of {len(by)} folders, {len(files)} files)"
    return rows, f"folder ({len(files)} files in {len(rows)} folders)"


def ingest_figures(report: dict[str, Any]) -> list[tuple[str, Figure]]:
    """Outcome of a batch's records, quarantine reasons and records per file."""
    out: list[tuple[str, Figure]] = []
    raw = {k: _num(report.get(k)) for k in ("accepted", "duplicates", "quarantined", "late_events")}
    outcome = {k: v for k, v in raw.items() if v is not None}
    if outcome:
        fig = Figure(figsize=(7, 2.4))
        ax = fig.subplots()
        ax.barh(list(outcome), list(outcome.values()), color="tab:blue")
        ax.set_title(f"records of the batch ({report.get('input_records', '?')} read)", fontsize=10)
        fig.tight_layout()
        out.append(("Records", fig))
    reasons = report.get("quarantined_by_reason") or {}
    if reasons:
        items = sorted(reasons.items(), key=lambda kv: kv[1])
        fig = Figure(figsize=(7, 0.6 + 0.35 * len(items)))
        ax = fig.subplots()
        ax.barh([k for k, _ in items], [v for _, v in items], color="tab:red")
        ax.set_title("quarantined records by reason", fontsize=10)
        fig.tight_layout()
        out.append(("Quarantine reasons", fig))
    files = report.get("records_by_file") or []
    if files:
        rows, what = _per_file_or_folder(files)
        fig = Figure(figsize=(12, max(2.0, 0.9 + 0.22 * len(rows))))
        ax = fig.subplots()
        names = [r["file"] for r in rows][::-1]
        acc = [r.get("accepted") or 0 for r in rows][::-1]
        quar = [r.get("quarantined") or 0 for r in rows][::-1]
        ax.barh(names, acc, color="tab:blue", label="accepted")
        ax.barh(names, quar, left=acc, color="tab:red", label="quarantined")
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"records per {what}", fontsize=10)
        fig.tight_layout()
        out.append(("Records per file", fig))
    return out


# -- recpipe simulate ------------------------------------------------------------------------------

ARM_COLORS = {"recpipe": "tab:blue", "popularity": "tab:orange", "random": "tab:grey"}
MAX_DAY_LABELS = 15


def _finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite number (the summary's intervals can be NaN or null)."""
    x = _num(v)
    return x if x is not None and math.isfinite(x) else None


def _ci_points(
    ax: Axes, xs: list[float], rows: list[dict[str, Any] | None], key: str, lo: str, hi: str, **style: Any
) -> int:
    """Points ``row[key]`` at ``xs`` with error bars down to ``row[lo]`` and up to ``row[hi]``;
    rows without a finite value are left out, a missing bound draws no bar on that side."""
    x, y, down, up = [], [], [], []
    for xi, row in zip(xs, rows, strict=True):
        v = _finite((row or {}).get(key))
        if v is None or row is None:
            continue
        low, high = _finite(row.get(lo)), _finite(row.get(hi))
        x.append(xi)
        y.append(v)
        down.append(max(0.0, v - low) if low is not None else 0.0)
        up.append(max(0.0, high - v) if high is not None else 0.0)
    if x:
        ax.errorbar(x, y, yerr=[down, up], marker="o", markersize=4, capsize=3, **style)
    return len(x)


def _day_axis(ax: Axes, labels: list[str], xlabel: str) -> None:
    """One tick per day, at most ``MAX_DAY_LABELS`` of them labelled."""
    step = max(1, math.ceil(len(labels) / MAX_DAY_LABELS))
    shown = [lab if i % step == 0 else "" for i, lab in enumerate(labels)]
    ax.set_xticks(range(len(labels)), shown, rotation=30 if len(labels) > 5 else 0, fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def _legend_outside(ax: Axes) -> None:
    """The legend right of the plot, where it hides no point of a day."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def next_day(date: str) -> str:
    """The day after ``date`` (YYYY-MM-DD): the day the lists estimated on ``date`` were served."""
    try:
        return (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()
    except ValueError:
        return f"{date} + 1"


def online_ctr_figure(days: list[dict[str, Any]]) -> Figure | None:
    """Online CTR of each arm per simulated day with its interval over lists, one line per arm."""
    arms = list(dict.fromkeys(a for d in days for a in (d.get("arms") or {})))
    if not arms:
        return None
    fig = Figure(figsize=(11.5, 3.6))
    ax = fig.subplots()
    for i, arm in enumerate(arms):
        dodge = (i - (len(arms) - 1) / 2) * 0.08  # side by side, so the bars do not hide each other
        _ci_points(
            ax,
            [j + dodge for j in range(len(days))],
            [(d.get("arms") or {}).get(arm) for d in days],
            "ctr",
            "ci_low",
            "ci_high",
            label=arm,
            color=ARM_COLORS.get(arm),
        )
    _day_axis(ax, [str(d.get("date", "?")) for d in days], "simulated day")
    ax.set_ylabel("CTR (clicks / impressions)")
    ax.set_title("online CTR by arm (bars: confidence interval over lists)", fontsize=10)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def ope_figure(days: list[dict[str, Any]]) -> Figure | None:
    """The off-policy estimate made on day D for the lists of D + 1, with its interval, against
    their online clicks per list on D + 1 (x: the day the lists were served)."""
    pairs = [
        (next_day(str(d.get("date", "?"))), d["ope"])
        for d in days
        if isinstance(d.get("ope"), dict) and _finite(d["ope"].get("value")) is not None
    ]
    if not pairs:
        return None
    served = [day for day, _ in pairs]
    est: list[dict[str, Any] | None] = [o for _, o in pairs]
    xs = [float(i) for i in range(len(est))]
    fig = Figure(figsize=(11.5, 3.6))
    ax = fig.subplots()
    name = pairs[0][1].get("estimator", "estimate")
    _ci_points(
        ax, xs, est, "value", "ci_low", "ci_high", color="tab:blue", label=f"{name} (made the day before)"
    )
    direct = [
        (x, v)
        for x, (_, o) in zip(xs, pairs, strict=True)
        if (v := _finite(o.get("direct_method"))) is not None
    ]
    if direct:
        ax.plot(
            *zip(*direct, strict=True),
            ls="none",
            marker="_",
            markersize=12,
            color="tab:purple",
            label="direct method alone",
        )
    seen = [
        (x, v) for x, (_, o) in zip(xs, pairs, strict=True) if (v := _finite(o.get("observed"))) is not None
    ]
    if seen:
        ax.plot(
            *zip(*seen, strict=True),
            ls="none",
            marker="D",
            markersize=6,
            color="black",
            zorder=3,
            label="online value",
        )
    _day_axis(ax, served, "day the lists were served (estimated the day before)")
    ax.set_ylabel("clicks per list (recpipe arm)")
    ax.set_title("next-day off-policy estimate vs. online value", fontsize=10)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def lift_figure(days: list[dict[str, Any]], overall: dict[str, Any] | None) -> Figure | None:
    """CTR lift of one arm over another per day with its interval, and the whole run's lift as a
    dashed line in its interval's band."""
    rows: list[dict[str, Any] | None] = [d.get("lift_over_popularity") for d in days]
    run_lift = _finite((overall or {}).get("lift"))
    if run_lift is None and all(_finite((r or {}).get("lift")) is None for r in rows):
        return None
    named = next((r for r in [overall, *rows] if r), {})
    arm, baseline = named.get("arm", "recpipe"), named.get("baseline", "popularity")
    fig = Figure(figsize=(11.5, 3.6))
    ax = fig.subplots()
    ax.axhline(0.0, color="grey", lw=1)
    if overall and run_lift is not None:
        lo, hi = _finite(overall.get("ci_low")), _finite(overall.get("ci_high"))
        label = f"whole run {run_lift:+.1%}"
        if lo is not None and hi is not None:
            ax.axhspan(lo, hi, color="tab:green", alpha=0.15, lw=0)
            label += f" [{lo:+.1%}, {hi:+.1%}]"
        ax.axhline(run_lift, color="tab:green", ls="--", label=label)
    _ci_points(
        ax,
        [float(i) for i in range(len(days))],
        rows,
        "lift",
        "ci_low",
        "ci_high",
        color="tab:blue",
        label="per day",
    )
    _day_axis(ax, [str(d.get("date", "?")) for d in days], "simulated day")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel(f"CTR({arm}) / CTR({baseline}) - 1")
    ax.set_title(f"CTR lift of {arm} over {baseline}", fontsize=10)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def simulation_figures(report: dict[str, Any]) -> list[tuple[str, Figure]]:
    """The figures of a ``recpipe simulate`` summary (``simulation-<start>.json``)."""
    days = report.get("days") or []
    figs = [
        ("Online CTR by arm", online_ctr_figure(days)),
        ("Next-day OPE vs. online value", ope_figure(days)),
        ("CTR lift over popularity", lift_figure(days, report.get("lift_over_popularity"))),
    ]
    return [(t, f) for t, f in figs if f is not None]
