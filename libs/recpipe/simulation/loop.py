"""``recpipe simulate --days N``: the feedback loop closed on the synthetic world.

The generator's landing folder (``data.raw_dir``, generated first if missing) is the history. Day
``D0`` (``--start``, default the first day after the generated logs) gets lists from one daily run
(the same stage plan as ``recpipe run --date D0``). Then, for each simulated day D:

1. the world moves on: the day's new items join ``items.jsonl`` and the world file
   (``<raw_dir>/_simulation.json``, read by :func:`~recpipe.datasets.synthetic.load_world`, so
   every evaluation of the true click model sees the same items and interest drift);
2. arriving users are served by their arm (:mod:`recpipe.simulation.serve`) and their impressions,
   clicks and reads land in ``events/D/`` following the serving-log contract;
3. the daily run of D + 1 ingests them, rebuilds features and examples, trains on its cadence
   (``train.every_days``) and publishes the lists of D + 1 (``evaluate`` is not run: the
   simulation measures the lists online; ``recpipe run --date`` evaluates offline as usual);
4. the off-policy estimate of the lists of D + 1 is made from D's recpipe-arm logs
   (:func:`~recpipe.simulation.measure.next_day_ope`), and compared with their online value once
   D + 1 is served.

Each served day leaves ``<raw_dir>/_simulation/served-D.parquet`` (the served slots with their
true click probability and drawn click). A day whose folder and served file exist is not served
again, and the daily runs skip what is done, so the same command resumes after a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.config import Config
from recpipe.datasets.synthetic import SIMULATION_FILE, SyntheticWorld, load_world, simulated_items
from recpipe.events.transforms import pseudonymize_py
from recpipe.lake import Lake, open_lake
from recpipe.simulation import measure, serve

log = logging.getLogger(__name__)

STATE_DIR = "_simulation"
BASE_ITEMS = "base-items.jsonl"


class SimulationError(RuntimeError):
    """The simulation cannot go on; nothing of the day was written."""


def first_day(cfg: Config) -> dt.date:
    """The first day after the generated logs."""
    syn = cfg.data.synthetic
    return syn.start + dt.timedelta(days=syn.days)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


class Simulation:
    """The state of one simulation over the landing folder ``cfg.data.raw_dir``."""

    def __init__(self, cfg: Config, spark: SparkSession, start: dt.date):
        self.cfg, self.spark, self.start = cfg, spark, start
        self.sim = cfg.simulate
        self.raw = Path(cfg.data.raw_dir)
        self.state = self.raw / STATE_DIR
        self.state.mkdir(parents=True, exist_ok=True)
        self.lake: Lake = open_lake(cfg, spark)
        manifest = json.loads((self.raw / "manifest.json").read_text())
        self.seed = int(manifest["seed"])
        gen_end = dt.date.fromisoformat(manifest["start"]) + dt.timedelta(days=int(manifest["days"]))
        if start < gen_end:
            raise SimulationError(
                f"--start {start} is inside the generated logs (they end before {gen_end}): "
                f"simulated days must come after them"
            )
        spec_path = self.raw / SIMULATION_FILE
        spec = json.loads(spec_path.read_text()) if spec_path.exists() else None
        wanted = {
            "start": start.isoformat(),
            "new_items_per_day": self.sim.new_items_per_day,
            "drift_per_day": self.sim.drift_per_day,
        }
        if spec is not None and any(spec.get(k) != v for k, v in wanted.items()):
            raise SimulationError(
                f"{spec_path} holds a simulation with other settings ({ {k: spec.get(k) for k in wanted} }); "
                f"use another data.raw_dir (and lake) for a new one"
            )
        self.spec = spec or {**wanted, "days": 0}
        # the generator's item ids are N000000.. in publication order; simulated ones continue them
        self.n_base_items = len(
            load_world(
                events=int(manifest["events_requested"]),
                seed=self.seed,
                start=dt.date.fromisoformat(manifest["start"]),
                days=int(manifest["days"]),
            ).item_ids
        )
        base = self.state / BASE_ITEMS
        if not base.exists():  # the generator's catalog, before any simulated item joined it
            base.write_bytes((self.raw / "items.jsonl").read_bytes())
        self.base_items = base.read_text().splitlines()
        self.key = cfg.pseudonym_key()

    # -- the world -----------------------------------------------------------------------------
    def extend_world(self, day_index: int) -> None:
        """Items of simulated days 0..day_index in the catalog and the world file."""
        if self.spec["days"] >= day_index + 1:
            return
        n_base = self.n_base_items
        lines = list(self.base_items)
        for t in range(day_index + 1):
            extra = simulated_items(
                self.seed, self.start, t, self.sim.new_items_per_day, n_base + t * self.sim.new_items_per_day
            )
            lines += [json.dumps(r, sort_keys=False) for r in extra["records"]]
        tmp = self.raw / ".items.jsonl.tmp"
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.spec = {**self.spec, "days": day_index + 1}
        _write_json(self.raw / SIMULATION_FILE, self.spec)
        tmp.replace(self.raw / "items.jsonl")

    # -- lists ---------------------------------------------------------------------------------
    def _published(self, day: dt.date, raw_of: dict[str, str]) -> pd.DataFrame:
        recs: pd.DataFrame = (
            self.lake.read(C.GOLD_RECOMMENDATIONS)
            .where(F.col(C.RUN_DATE) == F.lit(day))
            .select(C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, C.PROPENSITY, C.REASON, C.RUN_ID)
            .toPandas()
        )
        recs = recs[recs[C.USER_ID].isin(raw_of)]
        return _slots(recs, raw_of, "recpipe", recs[C.RUN_ID])

    def _previous(self, day: dt.date, raw_of: dict[str, str]) -> pd.DataFrame:
        """The "previous" arm's lists of D: the candidates of D ranked and re-ranked by the model
        promoted before the one behind D's published lists (the popularity ranker before the
        first model), not published; ``list_run_id`` names that ranker."""
        from recpipe.scoring.run import lists_for_users
        from recpipe.scoring.scorers import previous_scorer

        current = self.published_model_version(day)
        ref, why = previous_scorer(self.lake, current)
        recs = lists_for_users(self.cfg, self.spark, day, list(raw_of), ref)
        log.info(
            "simulate: %s previous arm: ranker %s %s (%s; published lists: %s), %d lists",
            day,
            ref.ranker,
            ref.version or "",
            why,
            current or "popularity ranker",
            recs[C.USER_ID].nunique(),
        )
        return _slots(
            recs, raw_of, "previous", f"simulate-previous-{day.isoformat()}-{ref.version or 'popularity'}"
        )

    def _catalog_state(
        self, day: dt.date, users: list[str]
    ) -> tuple[list[str], list[str], dict[str, set[str]]]:
        """Popular items (ranked), allowed items, and the arriving users' consumed items, as of D."""
        from recpipe.candidates import sources as S
        from recpipe.candidates.run import as_of_time

        as_of = as_of_time(day)
        events = S.history(self.lake.read(C.SILVER_EVENTS), as_of)
        allowed = S.allowed_items(self.lake.read(C.SILVER_ITEMS), as_of, self.cfg.recommend.max_item_age_days)
        allowed_ids = [r[0] for r in allowed.select(C.ITEM_ID).collect()]
        recent = S.interactions(events.where(F.col(C.EVENT_DATE) >= F.lit(day - dt.timedelta(days=7))))
        pop: pd.DataFrame = (
            S.trending(recent.join(allowed.select(C.ITEM_ID), C.ITEM_ID), as_of, 24.0, None)
            .orderBy(F.desc("score"), F.asc(C.ITEM_ID))
            .limit(self.cfg.recommend.top_n + 200)
            .toPandas()
        )
        pseudo = {pseudonymize_py(u, self.key): u for u in users}
        who = self.spark.createDataFrame(pd.DataFrame({C.USER_ID: list(pseudo)}), f"{C.USER_ID} string")
        done: pd.DataFrame = S.consumed(events).join(F.broadcast(who), C.USER_ID).toPandas()
        consumed: dict[str, set[str]] = {}
        for u, item in zip(done[C.USER_ID], done[C.ITEM_ID], strict=True):
            consumed.setdefault(pseudo[u], set()).add(item)
        return pop[C.ITEM_ID].tolist(), allowed_ids, consumed

    # -- one day ---------------------------------------------------------------------------------
    def served_path(self, day: dt.date) -> Path:
        return self.state / f"served-{day.isoformat()}.parquet"

    def _arm_lists(
        self, day: dt.date, came: list[str], arm_of: dict[str, str], rng: np.random.Generator
    ) -> pd.DataFrame:
        """The top-N list each arriving user is shown, by arm: recpipe's published list (popularity
        when the user has none), the previous model's, popularity, random (draws from ``rng``)."""
        ranked, allowed, consumed = self._catalog_state(day, came)
        raw_of = {pseudonymize_py(u, self.key): u for u in came}
        published = self._published(day, raw_of)
        top_n = self.cfg.recommend.top_n
        tag = day.isoformat()
        parts = []
        rec_users = [u for u in came if arm_of[u] == "recpipe"]
        with_list = set(published["user"])
        parts.append(published[published["user"].isin(rec_users)].drop(columns="score"))
        fallback = [u for u in rec_users if u not in with_list]
        parts.append(
            serve.popularity_lists(fallback, ranked, consumed, top_n, f"simulate-fallback-{tag}", "recpipe")
        )
        prev_users = [u for u in came if arm_of[u] == "previous"]
        if prev_users:
            earlier = self._previous(day, {pseudonymize_py(u, self.key): u for u in prev_users})
            parts.append(earlier.drop(columns="score"))
            missing = [u for u in prev_users if u not in set(earlier["user"])]
            parts.append(
                serve.popularity_lists(
                    missing, ranked, consumed, top_n, f"simulate-fallback-previous-{tag}", "previous"
                )
            )
        pop_users = [u for u in came if arm_of[u] == "popularity"]
        parts.append(
            serve.popularity_lists(
                pop_users, ranked, consumed, top_n, f"simulate-popularity-{tag}", "popularity"
            )
        )
        rnd_users = [u for u in came if arm_of[u] == "random"]
        parts.append(serve.random_lists(rnd_users, allowed, consumed, top_n, f"simulate-random-{tag}", rng))
        return pd.concat([p for p in parts if len(p)], ignore_index=True)

    def serve_day(self, day: dt.date, world: SyntheticWorld) -> pd.DataFrame:
        """Serve day D (or read what was served before) and return its served slots."""
        path = self.served_path(day)
        day_dir = self.raw / "events" / day.isoformat()
        if path.exists():
            return pd.read_parquet(path)
        if day_dir.exists() and any(day_dir.iterdir()):
            raise SimulationError(
                f"{day_dir} already holds event files that this simulation did not serve; "
                "simulate into a landing folder of its own"
            )
        index = (day - self.start).days
        rng = np.random.default_rng([self.sim.seed, index])
        came = world.user_ids[serve.arrivals(world, self.sim.users_per_day, rng)].tolist()
        arm_of = dict(zip(came, serve.assign_arms(came, self.sim.arms, self.sim.seed), strict=True))
        lists = self._arm_lists(day, came, arm_of, rng)
        if lists.empty:
            raise SimulationError(f"{day}: no list to serve (no arriving user, or no allowed item)")
        ts = serve.request_times(day, len(came), rng)
        request_ts = dict(zip(came, ts.tolist(), strict=True))
        events, imp = serve.served_events(world, lists, request_ts, day, rng)
        files = serve.write_day(events, day_dir)
        imp["fallback"] = imp["list_run_id"].str.startswith("simulate-fallback-")
        keep = [
            "request_id",
            "user",
            "arm",
            "position",
            "item_id",
            "propensity",
            "reason",
            "list_run_id",
            "fallback",
            "p_click",
            "clicked",
        ]
        out = imp[keep]
        tmp = path.with_name(f".{path.name}.tmp")
        out.to_parquet(tmp, index=False)
        tmp.replace(path)
        log.info(
            "simulate: %s served %d users (%s), %d impressions, %d clicks, %d files",
            day,
            len(came),
            ", ".join(f"{a} {sum(1 for u in came if arm_of[u] == a)}" for a in self.sim.arms),
            len(imp),
            int(imp["clicked"].sum()),
            files,
        )
        return out

    def next_day_estimate(self, day: dt.date, served: dict[dt.date, pd.DataFrame]) -> dict[str, Any]:
        """The off-policy estimate of the lists of D + 1 from D's recpipe-arm logs: doubly robust
        under a position-based click model whose curve is fitted on the random arm's clicks of
        the days served so far (:func:`measure.position_curve`); SNIPS slot by slot beside it."""
        logged = served[day][(served[day]["arm"] == "recpipe") & ~served[day]["fallback"]]
        if logged.empty:
            return {"skipped": "no recpipe list served"}
        raw_of = {pseudonymize_py(u, self.key): u for u in set(logged["user"])}
        target = self._published(day + dt.timedelta(days=1), raw_of)
        so_far = pd.concat([v for d, v in served.items() if d <= day], ignore_index=True)
        curve = measure.position_curve(so_far, max_positions=max(self.cfg.recommend.top_n, 1))
        alpha = self.sim.alpha
        out = measure.next_day_dr(logged, target, curve["theta"], alpha)
        out["position_curve"] = {k: curve[k] for k in ("beta", "impressions", "clicks")}
        out["snips_per_slot"] = measure.next_day_ope(logged, target, alpha)
        return out

    def run_pipeline(self, day: dt.date) -> dict[str, Any]:
        """The daily plan of ``day`` without evaluate; returns stage -> status."""
        from recpipe.stages.daily import STAGE_NAMES
        from recpipe.stages.runner import run_days

        names = [n for n in STAGE_NAMES if n != "evaluate"]
        results = run_days(self.cfg, [day], names, spark=self.spark)
        out = {r.stage: r.status for r in results}
        model = [r.summary.get("model_version") for r in results if r.stage == "recommend" and r.summary]
        version = model[0] if model else None
        if version is None and out.get("recommend") in ("ok", "skipped"):
            version = self.published_model_version(day)  # a rerun skips recommend: read the lists
        return {"stages": out, "model_version": version}

    def published_model_version(self, day: dt.date) -> str | None:
        """The ranker version stored with the lists published for ``day`` (None without lists;
        ``popularity`` lists store none)."""
        if not self.lake.exists(C.GOLD_RECOMMENDATIONS):
            return None
        rows = (
            self.lake.read(C.GOLD_RECOMMENDATIONS)
            .where(F.col(C.RUN_DATE) == F.lit(day))
            .where(F.col(C.MODEL_VERSION).isNotNull())
            .select(C.MODEL_VERSION)
            .distinct()
            .limit(2)
            .collect()
        )
        return str(rows[0][0]) if rows else None


def _slots(recs: pd.DataFrame, raw_of: dict[str, str], arm: str, list_run_id: Any) -> pd.DataFrame:
    """Ranked list rows (``gold.recommendations`` columns, pseudonymized users) -> the served-slot
    frame of ``arm`` (raw user ids, 0-based positions)."""
    return pd.DataFrame(
        {
            "user": recs[C.USER_ID].map(raw_of),
            "position": recs[C.RANK].astype(int) - 1,
            "item_id": recs[C.ITEM_ID],
            "propensity": recs[C.PROPENSITY].astype(float),
            "reason": recs[C.REASON],
            "list_run_id": list_run_id,
            "arm": arm,
            "score": recs[C.SCORE].astype(float),
        }
    )


def _previous_ranker(served: pd.DataFrame) -> str | None:
    """The ranker behind the previous arm's lists of a served day (from their list run id)."""
    ids = served.loc[(served["arm"] == "previous") & ~served["fallback"], "list_run_id"]
    return str(ids.iloc[0]).rsplit("-", 1)[-1] if len(ids) else None


def _mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 5) if values else float("nan")


def _day_row(
    day: dt.date,
    served: pd.DataFrame,
    pipelines: dict[dt.date, dict[str, Any]],
    ope: dict[str, Any],
    alpha: float,
    t_day: float,
) -> dict[str, Any]:
    """The summary's row of one simulated day (``ope`` is the estimate made on it for the next
    day; the next day's :func:`_meet_yesterdays_estimate` adds the observed value to it)."""
    nxt = day + dt.timedelta(days=1)
    arms = measure.arm_metrics(served, alpha)
    return {
        "date": day.isoformat(),
        "arms": arms,
        "lift_over_popularity": measure.ctr_lift(served, "recpipe", "popularity", alpha)
        if {"recpipe", "popularity"} <= set(arms)
        else None,
        "lift_over_previous": measure.ctr_lift(served, "recpipe", "previous", alpha)
        if {"recpipe", "previous"} <= set(arms)
        else None,
        "previous_ranker": _previous_ranker(served),
        "fallback_lists": int(served.loc[served["fallback"], "user"].nunique()),
        "model_version": pipelines[day]["model_version"],
        "pipeline_next_day": pipelines[nxt]["stages"],
        "ope": ope,
        "duration_s": round(time.perf_counter() - t_day, 1),
    }


def _meet_yesterdays_estimate(
    day: dt.date, served: pd.DataFrame, ope_by_day: dict[dt.date, dict[str, Any]]
) -> None:
    """Yesterday's estimate for today's lists meets today's online value (updated in place)."""
    prev = day - dt.timedelta(days=1)
    if prev in ope_by_day and "value" in ope_by_day[prev]:
        observed = served[(served["arm"] == "recpipe") & ~served["fallback"]]
        if len(observed):
            value = float(observed.groupby("user")["clicked"].sum().mean())
            est = ope_by_day[prev]
            est["observed"] = round(value, 5)
            est["ci_contains_observed"] = bool(est["ci_low"] <= value <= est["ci_high"])
            est["abs_error"] = round(abs(est["value"] - value), 5)


def _run_summary(
    cfg: Config,
    start: dt.date,
    days: int,
    served: dict[dt.date, pd.DataFrame],
    day_rows: list[dict[str, Any]],
    ope_by_day: dict[dt.date, dict[str, Any]],
    t0: float,
) -> dict[str, Any]:
    """The run's JSON summary: per arm over all days, the lifts, the days, the OPE's record."""
    alpha = cfg.simulate.alpha
    everything = pd.concat(served.values(), ignore_index=True)
    checked = [o for o in ope_by_day.values() if "observed" in o]
    return {
        "job": "simulate",
        "start": start.isoformat(),
        "days_simulated": days,
        "arm_shares": dict(cfg.simulate.arms),
        "arms": measure.arm_metrics(everything, alpha),
        "lift_over_popularity": measure.ctr_lift(everything, "recpipe", "popularity", alpha),
        "lift_over_previous": measure.ctr_lift(everything, "recpipe", "previous", alpha)
        if "previous" in cfg.simulate.arms
        else None,
        "days": day_rows,
        "ope_summary": {
            "days_checked": len(checked),
            "mean_abs_error": _mean([o["abs_error"] for o in checked]),
            "ci_contains_share": round(sum(o["ci_contains_observed"] for o in checked) / len(checked), 3)
            if checked
            else None,
        },
        "seconds_per_day": round((time.perf_counter() - t0) / days, 1),
        "duration_s": round(time.perf_counter() - t0, 1),
    }


def run_simulation(
    cfg: Config, spark: SparkSession, days: int, start: dt.date | None = None
) -> dict[str, Any]:
    """Simulate ``days`` days (see the module docstring); returns the JSON summary."""
    from recpipe.pipeline import stage_generate

    if days < 1:
        raise SimulationError("--days must be >= 1")
    if cfg.data.source != "synthetic":
        raise SimulationError(
            f"data.source is {cfg.data.source!r}: the simulation needs the synthetic world (data.source: synthetic)"
        )
    t0 = time.perf_counter()
    gen = stage_generate(cfg)
    log.info("simulate: data prep %s", "reused" if "skipped" in gen else "generated")
    start = start or first_day(cfg)
    sim = Simulation(cfg, spark, start)
    alpha = cfg.simulate.alpha
    log.info("simulate: day %s gets its lists from the history (the daily plan of %s)", start, start)
    boot = sim.run_pipeline(start)
    served: dict[dt.date, pd.DataFrame] = {}
    day_rows: list[dict[str, Any]] = []
    ope_by_day: dict[dt.date, dict[str, Any]] = {}
    pipelines: dict[dt.date, dict[str, Any]] = {start: boot}
    for i in range(days):
        day = start + dt.timedelta(days=i)
        t_day = time.perf_counter()
        sim.extend_world(i)
        world = load_world(cfg.data.raw_dir)
        served[day] = sim.serve_day(day, world)
        nxt = day + dt.timedelta(days=1)
        pipelines[nxt] = sim.run_pipeline(nxt)
        ope_by_day[day] = sim.next_day_estimate(day, served)
        row = _day_row(day, served[day], pipelines, ope_by_day[day], alpha, t_day)
        _meet_yesterdays_estimate(day, served[day], ope_by_day)
        day_rows.append(row)
        log.info(
            "simulate: %s done in %.0f s: %s",
            day,
            row["duration_s"],
            "  ".join(
                f"{a} ctr {m['ctr']:.4f} ({m['clicks_per_list']:.3f}/list)" for a, m in row["arms"].items()
            ),
        )
    summary = _run_summary(cfg, start, days, served, day_rows, ope_by_day, t0)
    _write_json(sim.state / "summary.json", summary)
    # The summary is also a report: simulation-<start>.json and its page in the reports folder,
    # rendered from the JSON alone (`recpipe report --render` rebuilds it).
    from recpipe.reports.store import publish, write_report

    folder = cfg.artifacts_dir("reports")
    path = write_report(folder, f"simulation-{start}.json", summary)
    report_html = publish(folder, f"simulation-{start}", "simulation", summary)
    summary["report_path"] = path
    summary["report_html"] = report_html
    return summary
