"""The stage contract's pure parts: date plans for run date D, producers of inputs, fingerprints."""

from __future__ import annotations

import datetime as dt

import pytest

from recpipe import constants as C
from recpipe.stages.base import BACKTEST, DAILY, StageContext, parse_run_date
from recpipe.stages.contract import fingerprint, producers
from recpipe.stages.daily import EXTERNAL_INPUTS, STAGE_NAMES, STAGES, daily_split, get
from tests.conftest import make_config

pytestmark = pytest.mark.unit

D = dt.date(2026, 10, 12)


def ctx(mode=DAILY, **sections):
    cfg = make_config("/tmp/lake", "/tmp/raw", **sections)
    return StageContext(cfg, spark=None, lake=None, run_date=D, mode=mode)


def test_run_dates_parse_iso_and_relative_words_in_utc():
    assert parse_run_date("2026-10-05") == dt.date(2026, 10, 5)
    assert parse_run_date("yesterday", today=D) == dt.date(2026, 10, 11)
    assert parse_run_date(" Today ", today=D) == D
    with pytest.raises(ValueError, match=r"not a date \(YYYY-MM-DD, today or yesterday\): '12/10/2026'"):
        parse_run_date("12/10/2026")


def test_the_daily_order_and_where_each_input_comes_from():
    assert STAGE_NAMES == ("ingest", "features", "examples", "train", "recommend", "evaluate")
    assert producers(get("ingest"), STAGES) == {}
    assert producers(get("features"), STAGES) == {C.SILVER_EVENTS: "ingest", C.SILVER_ITEMS: "ingest"}
    rec = producers(get("recommend"), STAGES)
    # one writer per table: the feature tables come from the features stage, which the
    # examples read (and never write)
    assert rec[C.GOLD_USER_FEATURES] == "features" and rec[C.MODEL_REGISTRY] == "train"
    ex = producers(get("examples"), STAGES)
    assert ex[C.GOLD_ITEM_FEATURES] == ex[C.GOLD_USER_FEATURES] == "features"
    writers: dict[str, list[str]] = {}
    for s in STAGES:
        for t in s.outputs:
            writers.setdefault(t, []).append(s.name)
    assert {t: w for t, w in writers.items() if len(w) > 1} == {}
    assert producers(get("evaluate"), STAGES)[C.GOLD_RECOMMENDATIONS] == "recommend"
    for stage in STAGES:  # every input of a stage after ingest has a producer earlier in the day
        assert set(producers(stage, STAGES)) == set(stage.inputs) - EXTERNAL_INPUTS, stage.name
    # ... but the stream's profiles, which recommend reads when they exist
    assert EXTERNAL_INPUTS == {C.GOLD_USER_PROFILES} and C.GOLD_USER_PROFILES in get("recommend").inputs


def test_date_plans_relative_to_the_run_date():
    c = ctx(examples={"window_days": 5}, evaluate={"horizon_days": 3})
    # features as of D and every date the day's examples read (they never write the tables)
    assert get("features").plan(c, None) == {"as_of": "2026-10-12", "start": "2026-10-07"}
    assert get("examples").plan(c, None) == {
        "start": "2026-10-07",
        "end": "2026-10-11",
        "click_only": None,
        # the split moves with D (fixed dates would leave a day weeks later nothing to train on)
        "validation_start": "2026-10-10",
        "test_start": "2026-10-11",
    }
    # a backtest keeps the configured split
    bt = StageContext(c.cfg, None, None, D, BACKTEST, {"start": D, "end": D})
    assert "test_start" not in get("examples").plan(bt, None)
    assert get("evaluate").plan(c, None) == {"lists_date": "2026-10-09"}
    assert get("recommend").plan(c, None)["run_date"] == "2026-10-12"
    # explicit options of a single-stage command replace the plan's parts
    opts = StageContext(c.cfg, None, None, D, DAILY, {"start": dt.date(2026, 10, 1)})
    assert get("examples").plan(opts, None)["start"] == "2026-10-01"
    assert get("features").plan(opts, None) == {"as_of": "2026-10-12", "start": "2026-10-01"}
    # a backtest on the configured dates: both ends given, the features span them and D
    assert get("features").plan(bt, None) == {"as_of": "2026-10-12", "start": "2026-10-12"}
    # a backtest evaluates the lists of its own run date
    assert get("evaluate").plan(ctx(BACKTEST), None) == {"lists_date": "2026-10-12"}


def test_the_daily_split_holds_out_the_last_days_once_there_is_history_to_train_on():
    d = dt.date
    # 5 days of events: train 10-07..09, validation 10-10, test 10-11
    assert daily_split(d(2026, 10, 7), d(2026, 10, 11), 1, 1) == (d(2026, 10, 10), d(2026, 10, 11))
    assert daily_split(d(2026, 10, 7), d(2026, 10, 11), 2, 1) == (d(2026, 10, 9), d(2026, 10, 11))
    # a new lake with two days of events: everything trains (split dates after the window)
    assert daily_split(d(2026, 10, 10), d(2026, 10, 11), 1, 1) == (d(2026, 10, 12), d(2026, 10, 13))
    # three days: one day left to train on
    assert daily_split(d(2026, 10, 9), d(2026, 10, 11), 1, 1) == (d(2026, 10, 10), d(2026, 10, 11))


def test_fingerprint_follows_the_stage_config_keys_inputs_and_plan():
    stage = get("features")
    base = ctx()
    pins = {C.SILVER_EVENTS: 3, C.SILVER_ITEMS: 1}
    fp = fingerprint(stage, base, stage.plan(base, None), pins)
    assert fp == fingerprint(stage, ctx(), stage.plan(base, None), dict(pins))
    assert fp != fingerprint(stage, base, stage.plan(base, None), {**pins, C.SILVER_EVENTS: 4})
    assert fp != fingerprint(stage, ctx(features={"last_k_items": 3}), stage.plan(base, None), pins)
    assert fp != fingerprint(stage, base, {"as_of": "2026-10-13"}, pins)
    # a key the stage does not declare does not change it
    assert fp == fingerprint(stage, ctx(recommend={"top_n": 3}), stage.plan(base, None), pins)


def landing(tmp_path, days):
    for day in days:
        folder = tmp_path / "raw" / "events" / day
        folder.mkdir(parents=True)
        (folder / "00.jsonl").write_text('{"event_id": "e"}\n')
    return tmp_path / "raw"


def test_ingest_plans_one_batch_per_day_folder_before_the_run_date(tmp_path):
    raw = landing(tmp_path, ["2026-10-10", "2026-10-11", "2026-10-12"])
    c = StageContext(make_config("/tmp/lake", raw), None, None, D, DAILY)
    plan = get("ingest").plan(c, None)
    assert [b["date"] for b in plan["batches"]] == ["2026-10-10", "2026-10-11"]
    ids = [b["batch_id"] for b in plan["batches"]]
    assert len(set(ids)) == 2 and ids == [b["batch_id"] for b in get("ingest").plan(c, None)["batches"]]
    # a folder whose files change is a new batch
    (raw / "events" / "2026-10-11" / "01.jsonl").write_text('{"event_id": "late"}\n')
    again = get("ingest").plan(c, None)["batches"]
    assert again[0]["batch_id"] == ids[0] and again[1]["batch_id"] != ids[1]


def test_ingest_plans_the_whole_folder_for_a_backtest_an_explicit_batch_or_no_day_folders(tmp_path):
    raw = landing(tmp_path, ["2026-10-10", "2026-10-12"])
    cfg = make_config("/tmp/lake", raw)
    whole = get("ingest").plan(StageContext(cfg, None, None, D, BACKTEST), None)["batches"]
    assert len(whole) == 1 and whole[0]["date"] is None
    explicit = StageContext(cfg, None, None, D, DAILY, {"batch_id": "b7"})
    assert get("ingest").plan(explicit, None)["batches"] == [{"date": None, "batch_id": "b7"}]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "log.jsonl").write_text('{"event_id": "e"}\n')
    plan = get("ingest").plan(StageContext(make_config("/tmp/lake", flat), None, None, D, DAILY), None)
    assert len(plan["batches"]) == 1 and plan["batches"][0]["date"] is None


def test_run_summary_keeps_the_attempt_status_of_train_apart_from_its_model_status(capsys):
    from recpipe.pipeline import _compact, print_summary
    from recpipe.stages.base import StageResult

    res = StageResult(
        "train", D, DAILY, "r1", "ok", None, 3.0, "fp", {}, {"steps": 10}, {}, {},
        {"status": "current", "model_version": "m00001", "workers": 2, "test_auc": 0.8},
    )  # fmt: skip
    entry = _compact(res)
    assert entry["status"] == "ok" and entry["model_status"] == "current"
    # the summary's model line is printed for a trained day and names the registry status
    print_summary(
        {"mode": DAILY, "duration_s": 3.0, "days": {str(D): {"train": entry}}, "run_dates": [str(D)]}
    )
    assert "model m00001 (current, 2 workers): test AUC" in capsys.readouterr().err


def test_run_summary_prints_the_fallback_rankers_lists_beside_the_published_ones(capsys):
    from recpipe.pipeline import print_summary

    tc = {
        "published_expected_clicks_per_list": 1.217,
        "popularity_expected_clicks_per_list": 0.82,
        "als_only_expected_clicks_per_list": 0.931,
        "fallback_ranker_expected_clicks_per_list": 1.475,
    }
    top_n = {"published": {"ndcg@10": 0.059}, "fallback_ranker": {"ndcg@10": 0.101}}
    ev = {"status": "ok", "top_n": top_n, "true_click_model": tc, "report_path": "r.json"}
    print_summary(
        {"mode": DAILY, "duration_s": 3.0, "days": {str(D): {"evaluate": ev}}, "run_dates": [str(D)]}
    )
    err = capsys.readouterr().err
    assert (
        "published 1.217 | popularity 0.820 | ALS-only 0.931 | fallback ranker, same candidates 1.475" in err
    )
    assert "top-N fallback_ranker ndcg@10=0.101" in err
    # without the fallback's lists (a popularity-published day) the line ends at ALS-only
    del tc["fallback_ranker_expected_clicks_per_list"]
    print_summary(
        {"mode": DAILY, "duration_s": 3.0, "days": {str(D): {"evaluate": ev}}, "run_dates": [str(D)]}
    )
    assert "ALS-only 0.931\n" in capsys.readouterr().err


def test_where_results_are_reported_is_not_part_of_a_stage_fingerprint():
    from recpipe.config import load_config, replace
    from recpipe.stages.base import config_part

    cfg = load_config("conf/local.yaml")
    moved = replace(cfg, ["train.tracking_uri=http://mlflow:5000", "train.experiment=other"])
    # the tracking settings say where a run is recorded: changing them redoes nothing ...
    assert config_part(moved, "train") == config_part(cfg, "train")
    assert "tracking_uri" not in config_part(cfg, "train") and "epochs" in config_part(cfg, "train")
    # ... while a setting of what is trained does
    assert config_part(replace(cfg, ["train.epochs=9"]), "train") != config_part(cfg, "train")
