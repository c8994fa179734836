"""HTML reports: each page renders from a small hand-made report dict, self-contained, with valid
PNG figures and its tables; `recpipe report` lists and re-renders; a rendering error never raises."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recpipe.reports import html, store

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def calibration() -> dict:
    """Ten deciles of a model whose observed rate is 4/5 of its prediction (ECE = mean gap 0.011)."""
    deciles = [
        {
            "bin": b,
            "n": 90,
            "p_min": 0.01 * b - 0.004,
            "p_max": 0.01 * b + 0.004,
            "mean_predicted": 0.01 * b,
            "observed_ctr": 0.008 * b,
        }
        for b in range(1, 11)
    ]
    return {
        "binning": "10 equal-count (quantile) bins",
        "n": 900,
        "ece": 0.011,
        "brier": 0.0512,
        "deciles": deciles,
    }


def evaluation_report() -> dict:
    k = 10
    rows = []
    for p, base in (("published", 0.30), ("popularity", 0.20), ("als", 0.25)):
        for s, f in (("all", 1.0), ("cold", 0.5), ("warm", 1.2)):
            rows.append(
                {
                    "policy": p,
                    "segment": s,
                    "k": k,
                    f"ndcg@{k}": base * f,
                    f"recall@{k}": base * f * 1.1,
                    f"hit_rate@{k}": min(1.0, base * f * 2),
                    "mrr": base * f * 0.8,
                    "catalog_coverage": base,
                    "intra_list_diversity": 0.5 + base,
                    "novelty_bits": 8 + base,
                    "users_evaluated": 120,
                }
            )
    return {
        "job": "evaluate",
        "run_id": "evaluate-2026-10-12-abcd1234",
        "run_date": "2026-10-12",
        "truth_window": ["2026-10-12", "2026-10-19"],
        "k": k,
        "users_with_lists": 500,
        "users_with_clicks": 120,
        "ranker": {
            "test_examples": 900,
            "popularity_auc": 0.62,
            "auc": 0.71,
            "logloss": 0.41,
            "calibration": calibration(),
        },
        "top_n": rows,
        "item_segments": {
            "cold_items": {"clicked_pairs": 10, f"recall@{k}": 0.1},
            "warm_items": {"clicked_pairs": 90, f"recall@{k}": 0.3},
        },
        "off_policy": {
            "impressions": 1000,
            "observed_ctr": 0.05,
            "ips": {
                "estimator": "ips",
                "value": 0.05,
                "ci_low": 0.04,
                "ci_high": 0.06,
                "n": 1000,
                "effective_sample_size": 1000.0,
            },
            "snips": {
                "estimator": "snips",
                "value": 0.05,
                "ci_low": 0.04,
                "ci_high": 0.06,
                "n": 1000,
                "effective_sample_size": 1000.0,
            },
            "ips_ci_contains_observed": True,
        },
        "true_click_model": {
            "users": 480,
            "published_expected_clicks_per_list": 0.9,
            "popularity_expected_clicks_per_list": 0.6,
            "als_only_expected_clicks_per_list": 0.7,
        },
        "reasons": {"als": 3000, "popular": 1500, "cold_start": 400},
    }


def train_report() -> dict:
    hist = [
        {
            "epoch": e,
            "steps": 40 * e,
            "train_loss": 0.6 - 0.05 * e,
            "val_auc": 0.6 + 0.02 * e,
            "val_logloss": 0.5 - 0.01 * e,
            "samples_per_s": 9000.0 + 500 * e,
            "epoch_s": 3.0,
        }
        for e in (1, 2, 3)
    ]
    return {
        "job": "train",
        "run_id": "2026-10-12-v7",
        "model": "dcn",
        "workers": 2,
        "examples_version": 7,
        "val_auc": 0.66,
        "val_logloss": 0.47,
        "test_auc": 0.65,
        "test_logloss": 0.48,
        "popularity_auc": 0.6,
        "oracle_auc": 0.8,
        "oracle_source": "p_click_true",
        "calibration": calibration(),
        "steps": 120,
        "epochs_run": 3,
        "samples_per_s": 9800.0,
        "history": hist,
        "samples_per_s_by_rank": [4900.0, 4850.0],
    }


def ingest_report() -> dict:
    return {
        "job": "ingest",
        "batch_id": "raw-0123456789ab",
        "run_id": "ingest-raw-0123456789ab-1",
        "input_records": 1100,
        "accepted": 1000,
        "duplicates": 40,
        "quarantined": 60,
        "quarantined_by_reason": {"bad_json": 20, "missing_user_id": 30, "unknown_event_type": 10},
        "late_events": 12,
        "files": 2,
        "files_not_read": {},
        "quality": {"success": True},
        "timings_s": {"read_parse_s": 1.2},
        "day": "2026-10-01",
        "records_by_file": [
            {
                "file": "events/2026-10-01/00.jsonl",
                "records": 600,
                "accepted": 560,
                "quarantined": 30,
                "late_events": 5,
            },
            {
                "file": "events/2026-10-01/01.jsonl",
                "records": 500,
                "accepted": 440,
                "quarantined": 30,
                "late_events": 7,
            },
        ],
    }


SIM_USERS, SIM_ITEMS, SIM_SLOTS = 48, 30, 6


def _sim_quality(item: int) -> float:
    return 0.08 + 0.3 * (item % 7) / 6


def _recpipe_lists(t: int) -> pd.DataFrame:
    """The recpipe lists of day ``t`` (all users of that arm): the first three slots keep their
    items from day to day, the others move on, so a next-day estimate has slots that match."""
    rows = []
    for u in range(0, SIM_USERS, 2):
        for k in range(SIM_SLOTS):
            item = (3 * u + k + (t if k >= 3 else 0)) % SIM_ITEMS
            rows.append(
                {
                    "user": f"u{u:02d}",
                    "position": k,
                    "item_id": f"I{item:02d}",
                    "propensity": 0.9,
                    "score": _sim_quality(item) * 0.9,  # the ranker's probability: a bit low
                }
            )
    return pd.DataFrame(rows)


def served_slots(t: int, rng: np.random.Generator) -> pd.DataFrame:
    """Day ``t``'s served slots as `Simulation.serve_day` leaves them: users of even index in the
    recpipe arm, 1 mod 4 popularity, 3 mod 4 random; clicks drawn from a position-based model."""
    rec = _recpipe_lists(t).drop(columns="score").assign(arm="recpipe")
    popular = sorted(range(SIM_ITEMS), key=lambda i: -_sim_quality(i))[:SIM_SLOTS]
    rows = [rec]
    for u in range(1, SIM_USERS, 2):
        if u % 4 == 1:
            items, prop, arm = popular, [1.0] * SIM_SLOTS, "popularity"
        else:
            items = rng.choice(SIM_ITEMS, SIM_SLOTS, replace=False).tolist()
            prop, arm = [1 / (SIM_ITEMS - k) for k in range(SIM_SLOTS)], "random"
        rows.append(
            pd.DataFrame(
                {
                    "user": f"u{u:02d}",
                    "position": range(SIM_SLOTS),
                    "item_id": [f"I{i:02d}" for i in items],
                    "propensity": prop,
                    "arm": arm,
                }
            )
        )
    out = pd.concat(rows, ignore_index=True)
    quality = out["item_id"].str[1:].astype(int).map(_sim_quality)
    out["p_click"] = quality * (1.0 + out["position"]) ** -0.6
    out["clicked"] = rng.random(len(out)) < out["p_click"]
    out["request_id"] = f"d{t}-" + out["user"]
    cols = ["request_id", "user", "arm", "position", "item_id", "propensity", "clicked", "p_click"]
    return out[cols]


def simulation_report(days: int = 3) -> dict:
    """A `recpipe simulate` summary of ``days`` hand-made days, assembled as `run_simulation` does
    from the functions of `recpipe.simulation.measure` (so the shape is the real one)."""
    from recpipe.simulation import measure

    rng = np.random.default_rng(11)
    start, alpha = dt.date(2026, 10, 15), 0.05
    served: dict[int, pd.DataFrame] = {}
    ope_by_day: dict[int, dict] = {}
    rows = []
    for t in range(days):
        served[t] = day = served_slots(t, rng)
        logged = day[day["arm"] == "recpipe"]
        target = _recpipe_lists(t + 1)
        curve = measure.position_curve(pd.concat(served.values(), ignore_index=True), max_positions=SIM_SLOTS)
        est = measure.next_day_dr(logged, target, curve["theta"], alpha)
        est["position_curve"] = {k: curve[k] for k in ("beta", "impressions", "clicks")}
        est["snips_per_slot"] = measure.next_day_ope(logged, target, alpha)
        ope_by_day[t] = est
        rows.append(
            {
                "date": (start + dt.timedelta(days=t)).isoformat(),
                "arms": measure.arm_metrics(day, alpha),
                "lift_over_popularity": measure.ctr_lift(day, "recpipe", "popularity", alpha),
                "fallback_lists": 0,
                "model_version": "m00001",
                "pipeline_next_day": {
                    "ingest": "ok",
                    "features": "ok",
                    "examples": "ok",
                    "train": "skipped",
                    "recommend": "ok",
                },
                "ope": est,
                "duration_s": 60.0,
            }
        )
        if t - 1 in ope_by_day:  # yesterday's estimate meets today's online value
            value = float(logged.groupby("user")["clicked"].sum().mean())
            prev = ope_by_day[t - 1]
            prev["observed"] = round(value, 5)
            prev["ci_contains_observed"] = bool(prev["ci_low"] <= value <= prev["ci_high"])
            prev["abs_error"] = round(abs(prev["value"] - value), 5)
    everything = pd.concat(served.values(), ignore_index=True)
    checked = [o for o in ope_by_day.values() if "observed" in o]
    return {
        "job": "simulate",
        "start": start.isoformat(),
        "days_simulated": days,
        "arm_shares": {"recpipe": 0.5, "popularity": 0.25, "random": 0.25},
        "arms": measure.arm_metrics(everything, alpha),
        "lift_over_popularity": measure.ctr_lift(everything, "recpipe", "popularity", alpha),
        "days": rows,
        "ope_summary": {
            "days_checked": len(checked),
            "mean_abs_error": round(float(np.mean([o["abs_error"] for o in checked])), 5),
            "ci_contains_share": round(sum(o["ci_contains_observed"] for o in checked) / len(checked), 3),
        },
        "seconds_per_day": 60.0,
        "duration_s": 180.0,
    }


def pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMG.findall(page)]


def assert_self_contained(page: str, min_images: int) -> None:
    assert page.startswith("<!DOCTYPE html>")
    # no external reference of any kind: no http(s) URL, no script, no link/stylesheet
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "<script" not in page and "<link" not in page and "http" not in page
    images = pngs(page)
    assert len(images) >= min_images
    assert len(images) == page.count("<img ")
    for png in images:
        assert png.startswith(PNG_MAGIC) and len(png) > 5_000
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 200 and height > 100


def assert_calibration_tables(page: str) -> None:
    """The reliability plot, ECE / Brier, and the decile table with its columns in order."""
    assert "<figcaption>Calibration</figcaption>" in page
    assert (
        '<td class="l">ece</td><td>0.0110</td>' in page and '<td class="l">brier</td><td>0.0512</td>' in page
    )
    assert (
        '<th class="l">bin</th><th>n</th><th>p_min</th><th>p_max</th><th>mean_predicted</th>'
        "<th>observed_ctr</th>" in page
    )
    assert "<td>0.0800</td>" in page  # observed rate of the top decile


def test_evaluation_page_has_the_notebook_figures_and_the_tables():
    page = html.evaluation_page(evaluation_report())
    # ranker AUC, calibration, top-N by policy/segment, coverage/diversity/novelty, slots per reason,
    # expected clicks
    assert_self_contained(page, min_images=6)
    for caption in (
        "Ranker AUC",
        "Calibration",
        "Top-N accuracy by policy and segment",
        "Coverage, diversity, novelty",
        "Slots per reason",
        "Expected clicks per list",
    ):
        assert f"<figcaption>{caption}</figcaption>" in page
    assert page.count("<table>") >= 8
    assert "<td>0.9000</td>" in page  # expected clicks per list of the published lists
    assert_calibration_tables(page)
    assert '<td class="l">snips</td>' in page and "ips_ci_contains_observed" in page
    assert "<th>ndcg@10</th>" in page


def test_evaluation_page_says_why_a_part_was_skipped():
    rep = evaluation_report()
    rep["true_click_model"] = {"skipped": "data.source is 'raw': no true click model"}
    rep["off_policy"] = {"skipped": "no logged impressions with propensities in the window"}
    rep["ranker"] = {"skipped": "gold.training_examples does not exist"}
    page = html.evaluation_page(rep)
    assert_self_contained(page, min_images=3)
    assert "<figcaption>Calibration</figcaption>" not in page
    assert "no model scores on the test split in this report" in page
    assert "data.source is &#x27;raw&#x27;: no true click model" in page
    assert "no logged impressions with propensities" in page


def test_train_page_has_curves_throughput_and_baselines():
    page = html.train_page(train_report())
    assert_self_contained(page, min_images=4)
    assert "<figcaption>Training curves</figcaption>" in page
    assert "<th>val_auc</th>" in page and "oracle_auc" in page
    assert_calibration_tables(page)
    # an old run without history or calibration still renders (baselines only)
    rep = train_report()
    del rep["history"], rep["samples_per_s_by_rank"], rep["calibration"]
    old = html.train_page(rep)
    assert "no epoch history recorded" in old and "no model scores on the test split" in old
    assert_self_contained(old, min_images=1)


def test_ingest_page_counts_by_reason_and_file():
    page = html.ingest_page(ingest_report())
    assert_self_contained(page, min_images=3)
    assert "missing_user_id" in page and "events/2026-10-01/01.jsonl" in page
    assert "<td>440</td>" in page


def test_report_command_lists_and_rerenders_from_the_json(tmp_path):
    folder = str(tmp_path / "reports")
    store.write_report(folder, "evaluation-2026-10-12.json", evaluation_report())
    store.write_report(folder, "train-2026-10-12-v7.json", train_report())
    store.write_report(folder, "ingest-raw-0123456789ab.json", ingest_report())
    store.write_report(folder, "evaluation-2026-10-13.json", {"job": "evaluate", "top_n": "broken"})
    (tmp_path / "reports" / "notes.json").write_text("{}")  # not a report: not listed

    listed = store.list_and_render(folder)
    assert [r["kind"] for r in listed["reports"]] == ["evaluation", "evaluation", "ingest", "train"]
    assert all(r["html"] is None for r in listed["reports"])

    out = store.list_and_render(folder, render=True)
    assert (out["rendered"], out["errors"]) == (3, 1)
    broken = [r for r in out["reports"] if "error" in r]
    assert [r["name"] for r in broken] == ["evaluation-2026-10-13"]
    for r in out["reports"]:
        if "error" not in r:
            assert_self_contained((tmp_path / "reports" / f"{r['name']}.html").read_text(), 1)

    day = store.list_and_render(folder, date="2026-10-12")
    assert {r["name"] for r in day["reports"]} == {"evaluation-2026-10-12", "train-2026-10-12-v7"}
    assert store.list_and_render(folder, date="2026-10-01")["reports"][0]["kind"] == "ingest"


def test_cli_report_prints_one_json_line(tmp_path, capsys):
    from recpipe.cli import build_parser, main

    conf = Path(__file__).resolve().parents[2] / "conf" / "local.yaml"
    store.write_report(str(tmp_path / "r"), "evaluation-2026-10-12.json", evaluation_report())
    args = ["--conf", str(conf), "--set", f"evaluate.report_dir={tmp_path / 'r'}"]
    assert main(["report", *args, "--render"]) == 0
    out = capsys.readouterr()
    line = json.loads(out.out.strip().splitlines()[-1])
    assert line["job"] == "report" and line["rendered"] == 1
    assert line["reports"][0]["html"].endswith("evaluation-2026-10-12.html")
    assert "evaluation" in out.err  # the table on stderr
    helptext = build_parser()._subparsers._group_actions[0].choices["report"].format_help()
    assert "--render" in helptext and "train-<run id>" in helptext


def test_a_rendering_error_is_one_warning_not_a_failure(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="recpipe.reports.store"):
        path = store.write_json_and_html(str(tmp_path), "evaluation-x", "evaluation", {"top_n": 3})
    assert path is None
    assert (tmp_path / "evaluation-x.json").exists()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert "HTML page not written" in caplog.text


def test_many_files_are_plotted_per_day_folder_and_all_listed():
    rep = ingest_report()
    rep["records_by_file"] = [
        {"file": f"events/2026-10-{d:02d}/{h:02d}.jsonl", "records": 10, "accepted": 9, "quarantined": 1}
        for d in range(1, 4)
        for h in range(24)
    ]
    from recpipe.reports.plots import _per_file_or_folder

    rows, what = _per_file_or_folder(rep["records_by_file"])
    assert [(r["file"], r["accepted"], r["quarantined"]) for r in rows] == [
        (f"events/2026-10-0{d}/", 9 * 24, 24) for d in (1, 2, 3)
    ]
    assert what == "folder (72 files in 3 folders)"
    page = html.ingest_page(rep)
    assert_self_contained(page, min_images=3)
    assert "events/2026-10-03/23.jsonl" in page  # the table lists every file


SIMULATION_FIGURES = ("Online CTR by arm", "Next-day OPE vs. online value", "CTR lift over popularity")


def test_simulation_page_has_the_three_figures_the_arms_and_the_checked_estimates():
    rep = simulation_report()
    # the page renders from the JSON alone (NaN and all), as `recpipe report --render` reads it
    page = html.simulation_page(json.loads(json.dumps(rep)))
    assert_self_contained(page, min_images=3)
    for caption in SIMULATION_FIGURES:
        assert f"<figcaption>{caption}</figcaption>" in page
    # the arms table: one row per arm with its share, CTR and interval, and expected clicks
    assert '<th class="l">arm</th><th>share</th><th>lists</th><th>impressions</th>' in page
    assert "<th>expected_clicks_per_list</th>" in page
    for arm, m in rep["arms"].items():
        assert f'<td class="l">{arm}</td><td>{rep["arm_shares"][arm]:.4f}</td><td>{m["lists"]}</td>' in page
    # the estimate of day 1 is of the lists served on day 2, checked against their online value
    first = rep["days"][0]["ope"]
    assert (
        '<td class="l">2026-10-15</td><td class="l">2026-10-16</td><td class="l">dr_position_based</td>'
        f"<td>{first['value']:.4f}</td><td>{first['ci_low']:.4f}</td><td>{first['ci_high']:.4f}</td>"
        f"<td>{first['observed']:.4f}</td><td>true</td>" in page
    )
    assert '<td class="l">days_checked</td><td>2</td>' in page  # ope_summary
    assert "train skipped" in page  # the next day's plan, in a few words


def test_simulation_page_without_estimates_or_lift_still_renders():
    rep = simulation_report()
    for day in rep["days"]:
        day["ope"] = {"skipped": "no recpipe list served"}
        day["lift_over_popularity"] = None
    rep["lift_over_popularity"] = None
    rep["ope_summary"] = {"days_checked": 0, "mean_abs_error": float("nan"), "ci_contains_share": None}
    page = html.simulation_page(json.loads(json.dumps(rep)))
    assert_self_contained(page, min_images=1)
    assert "<figcaption>Online CTR by arm</figcaption>" in page
    assert "<figcaption>CTR lift over popularity</figcaption>" not in page
    assert "<figcaption>Next-day OPE vs. online value</figcaption>" not in page
    assert "no off-policy estimate in this summary" in page and "no lift over the whole run" in page
    assert page.count("no recpipe list served") == 3  # the reason, on each day's row


def test_simulation_reports_are_listed_and_rerendered(tmp_path):
    folder = str(tmp_path / "reports")
    store.write_report(folder, "simulation-2026-10-15.json", simulation_report())
    assert store.kind_of("simulation-2026-10-15.json") == "simulation"
    out = store.list_and_render(folder, date="2026-10-15", render=True)
    assert (out["rendered"], out["errors"]) == (1, 0)
    (entry,) = out["reports"]
    assert entry["kind"] == "simulation" and entry["html"].endswith("simulation-2026-10-15.html")
    assert_self_contained((tmp_path / "reports" / "simulation-2026-10-15.html").read_text(), 3)


def test_simulation_page_with_a_previous_arm_shows_the_retrains_lift():
    rep = simulation_report()
    rep["arm_shares"] = {"recpipe": 0.4, "previous": 0.2, "popularity": 0.2, "random": 0.2}
    rep["arms"]["previous"] = dict(rep["arms"]["popularity"])
    rep["lift_over_previous"] = {
        "arm": "recpipe",
        "baseline": "previous",
        "lift": 0.0712,
        "ci_low": -0.0213,
        "ci_high": 0.1724,
    }
    for i, day in enumerate(rep["days"]):
        day["arms"]["previous"] = dict(day["arms"]["popularity"])
        day["lift_over_previous"] = {**rep["lift_over_previous"], "lift": 0.05 + i / 100}
        day["previous_ranker"] = "popularity" if i == 0 else f"m0000{i}"
    page = html.simulation_page(json.loads(json.dumps(rep)))
    assert "CTR lift over the previous model (the retrain&#x27;s worth)" in page or (
        "CTR lift over the previous model (the retrain's worth)" in page
    )
    assert '<td class="l">baseline</td><td class="l">previous</td>' in page
    assert '<td class="l">ci_low</td><td>-0.0213</td>' in page
    assert "<th>lift over previous</th>" in page and "<th>previous ranker</th>" in page
    assert '<td class="l">previous</td><td>0.2000</td>' in page  # the arms table
    # without a previous arm there is no such section
    assert "lift over the previous model" not in html.simulation_page(
        json.loads(json.dumps(simulation_report()))
    )
