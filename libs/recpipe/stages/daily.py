"""The six stages and their date plans for run date D, declared here and nowhere else.

========== ====================================================================================
ingest     the landing folder's day folders ``events/YYYY-MM-DD/`` dated before D, one batch per
           folder (id from its files and sizes; a folder whose files change is a new batch), each
           batch once; a landing folder without day folders is one batch. Backtest: the whole
           folder as one batch.
features   ``gold.item_features`` / ``gold.user_features`` as of D (events before D 00:00 UTC) and
           as of every date the day's examples read (their window; backtest: every event date).
examples   impressions of ``[D - examples.window_days, D - 1]``; its last ``examples.test_days``
           are the test split, the ``examples.validation_days`` before them validation. Backtest:
           every event date, split at ``examples.validation_start`` / ``test_start``.
train      every ``train.every_days`` days: trains when no model was trained for the
           ``every_days - 1`` run dates before D; other days keep the current model (skipped).
recommend  ``gold.recommendations`` for D.
evaluate   the lists published on ``D - evaluate.horizon_days``, against the clicks of
           ``[D - horizon, D)``, now known. Backtest: the lists of D against the clicks after D.
========== ====================================================================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.config import Config
from recpipe.evaluation.run import OPS_EVALUATIONS
from recpipe.evaluation.truth import ClickModel
from recpipe.frames import one_row
from recpipe.lake import Lake
from recpipe.stages import runs
from recpipe.stages.base import BACKTEST, DAILY, Stage, StageContext

SILVER = (C.SILVER_EVENTS, C.SILVER_ITEMS)
FEATURES = (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES)


def _force(ctx: StageContext) -> dict[str, Any]:
    """``force=True`` for bodies that take it, only when the command asked (``--force``)."""
    return {"force": True} if ctx.options.get("force") else {}


class Ingest(Stage):
    name = "ingest"
    inputs = ()
    outputs = (C.BRONZE_EVENTS_RAW, C.BRONZE_QUARANTINE, *SILVER)
    config_keys = ("ingest",)
    count_keys = ("batches", "batches_done_before")

    def default_date(self, cfg: Config, lake: Lake) -> dt.date:
        """Today (UTC): every complete day folder of the landing folder."""
        return dt.datetime.now(dt.UTC).date()

    def plan(self, ctx: StageContext, lake: Lake) -> dict[str, Any]:
        from recpipe.events.ingest import (
            check_not_read,
            default_batch_id,
            no_event_files_error,
            scan_input,
        )

        opts, cfg = ctx.options, ctx.cfg
        input_dir = opts.get("input") or cfg.data.raw_dir
        # The whole landing folder is accounted for before any day is planned: a folder without
        # event files is an error (not a skip), and files ingest would not read (other formats,
        # empty, outside events/) stop the run under ingest.unknown_files=fail.
        scanned = scan_input(input_dir, cfg.ingest.format)
        if not scanned.files:
            raise no_event_files_error(input_dir, cfg.ingest.format, None, scanned)
        check_not_read(cfg.ingest, f"landing folder {input_dir}", scanned.not_read)
        files = scanned.files
        by_day: dict[str, list[str]] = {}
        for f in files:
            try:
                day = dt.date.fromisoformat(Path(f).parent.name).isoformat()
            except ValueError:
                by_day = {}
                break
            by_day.setdefault(day, []).append(f)
        whole = opts.get("batch_id") or ctx.mode == BACKTEST or not by_day
        if whole:
            bid = opts.get("batch_id") or (default_batch_id(input_dir, files) if files else None)
            batches = [{"date": None, "batch_id": bid}] if bid else []
        else:
            batches = [
                {"date": day, "batch_id": default_batch_id(input_dir, fs)}
                for day, fs in sorted(by_day.items())
                if dt.date.fromisoformat(day) < ctx.run_date
            ]
        return {"input_dir": input_dir, "batches": batches, "explicit": bool(opts.get("batch_id"))}

    def skip_reason(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> str | None:
        if not plan["batches"]:
            return f"no new files: no event files dated before {ctx.run_date} in {plan['input_dir']}"
        if plan["explicit"]:
            return None
        done = _ingested_batches(lake)
        if all(b["batch_id"] in done for b in plan["batches"]):
            return f"no new files: all {len(plan['batches'])} batches before {ctx.run_date} are ingested"
        return None

    def body(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> dict[str, Any]:
        from recpipe.events.ingest import run_ingest

        done = set() if plan["explicit"] or ctx.rerun else _ingested_batches(lake)
        summaries = []
        for b in plan["batches"]:
            if b["batch_id"] in done:
                continue
            day = dt.date.fromisoformat(b["date"]) if b["date"] else None
            summaries.append(
                run_ingest(ctx.cfg, ctx.spark, plan["input_dir"], batch_id=b["batch_id"], date=day, lake=lake)
            )
        if len(summaries) == 1:
            out = dict(summaries[0])
        else:
            out = {"job": "ingest", "batch_summaries": summaries}
        out.update(batches=len(summaries), batches_done_before=len(plan["batches"]) - len(summaries))
        return out


def _ingested_batches(lake: Lake) -> set[str]:
    """Batch ids that an ``ok`` ingest attempt of the contract ingested."""
    df = runs.read_runs(lake)
    if df is None:
        return set()
    rows = df.where((F.col("job") == "ingest") & (F.col("status") == runs.OK)).select("summary_json")
    out = set()
    for r in rows.collect():
        for b in json.loads(r[0]).get("batches", []):
            if b.get("batch_id"):
                out.add(b["batch_id"])
    return out


class Features(Stage):
    name = "features"
    inputs = SILVER
    outputs = FEATURES
    config_keys = ("features", "data")
    count_keys = ("items", "users")

    def plan(self, ctx: StageContext, lake: Lake) -> dict[str, Any]:
        """As of D, and every date the day's examples read (they never write these tables):
        ``--start`` when given, else the examples' window (daily ``[D - window_days, D - 1]``;
        backtest every event date)."""
        given = ctx.options.get("start")
        start = as_of = ctx.run_date
        if given is not None:
            start = given
        elif ctx.mode != BACKTEST:
            start = examples_window(ctx, lake)[0]
        elif lake is not None and lake.exists(C.SILVER_EVENTS):
            try:  # a backtest's examples span every event date, past the run date too
                start, end = examples_window(ctx, lake)
                as_of = max(as_of, end)
            except ValueError:  # no events yet: the body says so
                pass
        start = min(start, as_of)
        return {"as_of": as_of.isoformat(), "start": start.isoformat()}

    def body(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> dict[str, Any]:
        from recpipe.features.build import run_features

        return run_features(
            ctx.cfg,
            ctx.spark,
            dt.date.fromisoformat(plan["as_of"]),
            lake=lake,
            start=dt.date.fromisoformat(plan["start"]),
            **_force(ctx),
        )


def examples_window(ctx: StageContext, lake: Lake | None) -> tuple[dt.date, dt.date]:
    """The impression dates ``(start, end)`` the examples stage of ``ctx`` covers: ``--start`` /
    ``--end`` when given, else daily ``[D - examples.window_days, D - 1]``, backtest every event
    date of ``silver.events`` (ValueError when it is empty)."""
    from recpipe.examples.build import default_range

    given: tuple[Any, Any] = ctx.options.get("start"), ctx.options.get("end")
    if ctx.mode != BACKTEST:
        start, end = (
            ctx.run_date - dt.timedelta(days=ctx.cfg.examples.window_days),
            ctx.run_date - dt.timedelta(days=1),
        )
    elif all(given):
        start, end = given
    else:
        if lake is None:
            raise ValueError("examples: no lake to read the event range from")
        start, end = default_range(lake, None)
    return given[0] or start, given[1] or end


def daily_split(
    first: dt.date, end: dt.date, validation_days: int, test_days: int
) -> tuple[dt.date, dt.date]:
    """(validation_start, test_start) of a daily window whose events span ``[first, end]``: its
    last ``test_days`` test, the ``validation_days`` before them validation. A history too short
    to hold out both and still train (the first days of a new lake) is all train: the split
    dates fall after ``end`` until the lake holds more days."""
    if (end - first).days + 1 <= validation_days + test_days:
        return end + dt.timedelta(days=1), end + dt.timedelta(days=2)
    test_start = end - dt.timedelta(days=test_days - 1)
    return test_start - dt.timedelta(days=validation_days), test_start


class Examples(Stage):
    name = "examples"
    inputs = (*SILVER, *FEATURES)
    outputs = (C.GOLD_TRAINING_EXAMPLES,)
    config_keys = ("features", "examples", "quality", "data", "train.seed")
    count_keys = ("examples", "rows_written")

    def plan(self, ctx: StageContext, lake: Lake) -> dict[str, Any]:
        from recpipe.examples.build import default_range

        given: tuple[Any, Any] = ctx.options.get("start"), ctx.options.get("end")
        daily = ctx.mode != BACKTEST
        start, end = examples_window(ctx, lake)
        plan = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "click_only": True if ctx.options.get("click_only") else None,
        }
        if daily and not any(given):
            # The split moves with the run date (an explicit --start/--end keeps the configured
            # validation_start/test_start): fixed dates would put every example of a day
            # weeks after them into "test" and leave nothing to train on.
            first = start
            if lake is not None and lake.exists(C.SILVER_EVENTS):
                try:
                    first = max(start, default_range(lake, None)[0])
                except ValueError:  # no events yet: the examples body says so
                    pass
            ec = ctx.cfg.examples
            v, t = daily_split(first, end, ec.validation_days, ec.test_days)
            plan["validation_start"], plan["test_start"] = v.isoformat(), t.isoformat()
        return plan

    def body(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> dict[str, Any]:
        from recpipe.examples.build import run_examples

        cfg = ctx.cfg
        if plan.get("test_start"):
            split = dataclasses.replace(
                cfg.examples,
                validation_start=dt.date.fromisoformat(plan["validation_start"]),
                test_start=dt.date.fromisoformat(plan["test_start"]),
            )
            cfg = dataclasses.replace(cfg, examples=split)
        return run_examples(
            cfg,
            ctx.spark,
            dt.date.fromisoformat(plan["start"]),
            dt.date.fromisoformat(plan["end"]),
            lake=lake,
            click_only=plan["click_only"],
            **_force(ctx),
        )


class Train(Stage):
    name = "train"
    inputs = (C.GOLD_TRAINING_EXAMPLES,)
    outputs = (C.MODEL_REGISTRY,)
    config_keys = ("train", "features.ctr_prior_strength")
    count_keys = ("workers", "steps", "epochs_run", "examples_version")

    def default_date(self, cfg: Config, lake: Lake) -> dt.date:
        """The day after the latest event; today (UTC) on a lake that holds only examples."""
        if not lake.exists(C.SILVER_EVENTS):
            return dt.datetime.now(dt.UTC).date()
        return super().default_date(cfg, lake)

    def plan(self, ctx: StageContext, lake: Lake) -> dict[str, Any]:
        version = ctx.options.get("examples_version")
        return {
            "run_date": ctx.run_date.isoformat(),
            "examples_version": lake.version(C.GOLD_TRAINING_EXAMPLES) if version is None else version,
            "run_id": ctx.options.get("run_id"),
        }

    def skip_reason(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> str | None:
        every = ctx.cfg.train.every_days
        if ctx.mode != DAILY or plan["run_id"] or ctx.options.get("examples_version") is not None:
            return None  # backtest and explicit requests always train
        if every <= 1:
            return None
        first = ctx.run_date - dt.timedelta(days=every - 1)
        last = ctx.run_date - dt.timedelta(days=1)
        trained = [
            r
            for r in runs.stage_rows(lake, [self.name], first, last)
            if r["status"] == runs.OK and r["mode"] == DAILY
        ]
        if not trained:
            return None
        on = max(r["run_date"] for r in trained)
        nxt = on + dt.timedelta(days=every)
        return (
            f"not a training day: a model was trained for {on} and train.every_days={every} "
            f"(next on {nxt}); the current model is kept"
        )

    def body(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> dict[str, Any]:
        from recpipe.model.train import new_run_id, run_train

        # One run id per (date, examples version): a crashed attempt resumes from its checkpoint.
        run_id = plan["run_id"] or (
            new_run_id() if ctx.rerun else f"{ctx.run_date.isoformat()}-v{plan['examples_version']}"
        )
        return run_train(
            ctx.cfg,
            ctx.spark,
            lake=lake,
            run_id=run_id,
            examples_version=plan["examples_version"],
            run_date=ctx.run_date,
        )


# Inputs no stage of the daily plan writes: `recpipe stream` keeps them up to date, when it runs
# (read at their latest version, absent when it never ran).
EXTERNAL_INPUTS = frozenset({C.GOLD_USER_PROFILES})


class Recommend(Stage):
    name = "recommend"
    # gold.user_profiles (written by `recpipe stream`, when it runs): a profile updated since the
    # last attempt changes the lists of users active after the run's cut-off, so it is an input.
    inputs = (*SILVER, *FEATURES, C.MODEL_REGISTRY, C.GOLD_USER_PROFILES)
    outputs = (C.GOLD_CANDIDATES, C.GOLD_ALS_FACTORS, C.GOLD_RECOMMENDATIONS)
    config_keys = ("recommend", "candidates", "features", "data")
    count_keys = ("users", "lists", "slots")

    def plan(self, ctx: StageContext, lake: Lake) -> dict[str, Any]:
        return {"run_date": ctx.run_date.isoformat(), "users": ctx.options.get("users")}

    def body(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> dict[str, Any]:
        from recpipe.scoring.run import run_recommend

        extra = None
        if plan["users"]:
            reader = ctx.spark.read.option("header", True)
            users = plan["users"]
            extra = reader.parquet(users) if users.endswith(".parquet") else reader.csv(users)
        return run_recommend(
            ctx.cfg, ctx.spark, run_date=ctx.run_date, extra_users=extra, lake=lake, **_force(ctx)
        )


class Evaluate(Stage):
    name = "evaluate"
    inputs = (C.GOLD_RECOMMENDATIONS, C.GOLD_ALS_FACTORS, *SILVER, C.GOLD_TRAINING_EXAMPLES, C.MODEL_REGISTRY)
    outputs = (OPS_EVALUATIONS,)
    config_keys = ("evaluate", "candidates", "features.ctr_prior_strength", "data")
    count_keys = ("users_with_lists", "users_with_clicks")

    def default_date(self, cfg: Config, lake: Lake) -> dt.date:
        """The run date whose evaluation covers the latest published lists."""
        if not lake.exists(C.GOLD_RECOMMENDATIONS):
            raise ValueError(f"{C.GOLD_RECOMMENDATIONS} does not exist: pass --date or run recommend first")
        latest: dt.date | None = one_row(lake.read(C.GOLD_RECOMMENDATIONS).agg(F.max(C.RUN_DATE)))[0]
        if latest is None:
            raise ValueError(f"{C.GOLD_RECOMMENDATIONS} is empty: pass --date")
        return latest + dt.timedelta(days=cfg.evaluate.horizon_days)

    def lists_date(self, ctx: StageContext) -> dt.date:
        if ctx.mode == BACKTEST:
            return ctx.run_date
        return ctx.run_date - dt.timedelta(days=ctx.cfg.evaluate.horizon_days)

    def plan(self, ctx: StageContext, lake: Lake) -> dict[str, Any]:
        return {"lists_date": self.lists_date(ctx).isoformat()}

    def skip_reason(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> str | None:
        day = dt.date.fromisoformat(plan["lists_date"])
        why = (
            f"no lists published on {day} (run date {ctx.run_date} - evaluate.horizon_days="
            f"{ctx.cfg.evaluate.horizon_days})"
        )
        if not lake.exists(C.GOLD_RECOMMENDATIONS):
            return why
        recs = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(day))
        return why if recs.limit(1).count() == 0 else None

    def body(self, ctx: StageContext, plan: dict[str, Any], lake: Lake) -> dict[str, Any]:
        from recpipe.evaluation.run import run_evaluate

        day = dt.date.fromisoformat(plan["lists_date"])
        return run_evaluate(ctx.cfg, ctx.spark, day, lake=lake, click_model=true_click_model(ctx.cfg))


def true_click_model(cfg: Config) -> ClickModel | None:
    """The data's true click model for evaluation (which never imports the generator): the
    generator's, for synthetic data whose ``manifest.json`` is in ``data.raw_dir``; else none."""
    if cfg.data.source != "synthetic":
        return None
    from recpipe.datasets.synthetic import SyntheticClickModel

    return SyntheticClickModel.of_raw_dir(cfg.data.raw_dir)


STAGES: tuple[Stage, ...] = (Ingest(), Features(), Examples(), Train(), Recommend(), Evaluate())
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def get(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
