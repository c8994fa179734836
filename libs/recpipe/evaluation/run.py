"""`recpipe evaluate --date D`: ranker, top-N lists, baselines and off-policy estimates -> ops.evaluations."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DoubleType, StringType, StructField, StructType, TimestampType

from recpipe import constants as C
from recpipe.candidates.run import read_candidates
from recpipe.config import Config
from recpipe.evaluation import offline as O
from recpipe.evaluation import ope
from recpipe.evaluation.baselines import item_popularity_of_frame, popularity_auc
from recpipe.evaluation.calibration import calibration_summary
from recpipe.events.feedback import is_clicks_only, with_feedback
from recpipe.events.items import read_items
from recpipe.frames import one_row
from recpipe.lake import Lake, Txn, open_lake
from recpipe.reports.store import publish, write_report

if TYPE_CHECKING:
    import pandas as pd

    from recpipe.candidates.sources import AlsFactors
    from recpipe.evaluation.truth import ClickModel

log = logging.getLogger(__name__)

OPS_EVALUATIONS = "ops.evaluations"
EVALUATIONS_SCHEMA = StructType(
    [
        StructField("run_id", StringType()),
        StructField("run_date", DateType()),
        StructField("policy", StringType()),
        StructField("segment", StringType()),
        StructField("metric", StringType()),
        StructField("value", DoubleType()),
        StructField("created_at", TimestampType()),
    ]
)


def ranker_metrics(cfg: Config, lake: Lake) -> dict[str, Any]:
    """AUC / logloss and calibration of the current model, AUC of item popularity
    (:func:`recpipe.evaluation.baselines.item_popularity`), on the examples' test split.

    Impressions: popularity is the item's smoothed train CTR. Click-only: the test split's
    negatives are drawn uniformly (``recpipe.examples.labels.click_only_examples``) and popularity is
    the item's train click count, so neither AUC is inflated by popularity-weighted negatives.
    """
    from sklearn.metrics import log_loss, roc_auc_score

    if not lake.exists(C.GOLD_TRAINING_EXAMPLES):
        return {"skipped": f"{C.GOLD_TRAINING_EXAMPLES} does not exist"}
    clicks_only = is_clicks_only(with_feedback(cfg, lake))
    ex = lake.read(C.GOLD_TRAINING_EXAMPLES)
    test = ex.where(F.col(C.SPLIT) == "test")
    train = ex.where(F.col(C.SPLIT) == "train")
    pop = item_popularity_of_frame(
        train, prior_strength=cfg.features.ctr_prior_strength, clicks_only=clicks_only
    )
    try:
        from recpipe.model.inputs import to_model_inputs
        from recpipe.model.registry import load_current_model

        model, spec, row = load_current_model(cfg, lake)
    except (ImportError, RuntimeError) as exc:
        model, spec, row, no_model = None, None, None, f"no current model: {exc}"
    # Only the columns used: the label, the item (for popularity) and the model's inputs.
    cols = [C.LABEL, C.ITEM_ID] + ([c for c in spec.columns if c not in (C.LABEL, C.ITEM_ID)] if spec else [])
    pdf: pd.DataFrame = test.select(*cols).toPandas()
    if pdf.empty or pdf[C.LABEL].nunique() < 2:
        return {"skipped": "test split is empty or has a single label"}
    y = pdf[C.LABEL].to_numpy().astype(int)
    out: dict[str, Any] = {
        "test_examples": int(len(y)),
        "test_ctr": float(y.mean()),
        "test_negatives": "uniformly sampled clicked items" if clicks_only else "logged impressions",
        "popularity_auc": popularity_auc(y, pdf[C.ITEM_ID], pop),
    }
    if model is None or row is None:  # (both None together)
        out["model"] = no_model
        return out
    p = model.predict(to_model_inputs(pdf, spec), batch_size=4096, verbose=0).reshape(-1)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    out.update(
        model_version=row["model_version"],
        auc=float(roc_auc_score(y, p)),
        logloss=float(log_loss(y, p)),
        calibration=calibration_summary(y, p),
    )
    return out


def logged_policy_ope(events: DataFrame, start: dt.date, end: dt.date) -> dict[str, Any]:
    """IPS / SNIPS of the logging policy on its own impressions (must contain the observed CTR).

    A sanity check of the propensities that the same estimators apply to our own published
    lists once their clicks come back.
    """
    imps = events.where(
        (F.col(C.EVENT_TYPE) == "impression")
        & F.col(C.PROPENSITY).isNotNull()
        & (F.col(C.EVENT_DATE) >= F.lit(start))
        & (F.col(C.EVENT_DATE) < F.lit(end))
    )
    clicks = (
        events.where((F.col(C.EVENT_TYPE) == "click") & F.col(C.REQUEST_ID).isNotNull())
        .select(C.REQUEST_ID, C.ITEM_ID, F.lit(1).alias("clicked"))
        .distinct()
    )
    pdf: pd.DataFrame = (
        imps.join(clicks, [C.REQUEST_ID, C.ITEM_ID], "left")
        .select(F.coalesce("clicked", F.lit(0)).alias("r"), C.PROPENSITY)
        .toPandas()
    )
    if pdf.empty:
        return {"skipped": "no logged impressions with propensities in the window"}
    r = pdf["r"].to_numpy(float)
    p = pdf[C.PROPENSITY].to_numpy(float)
    est = ope.evaluate_policy(r, p, p)
    observed = float(r.mean())
    return {
        "impressions": int(len(r)),
        "observed_ctr": observed,
        **{name: e.to_dict() for name, e in est.items()},
        "ips_ci_contains_observed": est["ips"].ci_low <= observed <= est["ips"].ci_high,
    }


def true_click_model_eval(
    cfg: Config,
    lake: Lake,
    date: dt.date,
    click_model: ClickModel | None = None,
    als_factors: AlsFactors | None = None,
    extra: dict[str, DataFrame] | None = None,
) -> dict[str, Any]:
    """Expected clicks per list of the published, popularity and ALS-only top-N under the data's
    true ``click_model`` (:mod:`recpipe.evaluation.oracle`); synthetic data only, the caller
    that knows the data source passes the generator's model (``recpipe.datasets.synthetic:SyntheticClickModel``).
    ``als_factors``: the day's ALS model when the caller already has it; ``extra``: more lists
    by name (rows user_id, item_id, rank), e.g. the fallback ranker's."""
    if cfg.data.source != "synthetic":
        return {"skipped": f"data.source is {cfg.data.source!r}: no true click model"}
    if click_model is None:
        manifest = Path(cfg.data.raw_dir) / "manifest.json"
        return {"skipped": f"no true click model given ({manifest}: the generator's world is needed)"}
    from recpipe.evaluation.oracle import evaluate_lists

    return evaluate_lists(cfg, lake, date, click_model, als_factors=als_factors, extra=extra)


def _als_baseline(
    cfg: Config, lake: Lake, date: dt.date, before: DataFrame, users: DataFrame, k: int, allowed: DataFrame
) -> tuple[DataFrame, dict[str, Any], AlsFactors | None]:
    """The ALS-alone lists with the day's model (stored by recommend, else fitted here), what
    the model was, and the model itself (the true-click evaluation scores with it too)."""
    from recpipe.candidates import sources as S
    from recpipe.candidates.als import day_factors

    inter = S.interactions(before)
    if inter.limit(1).count() == 0:
        empty = users.select(C.USER_ID, F.array().cast("array<string>").alias("items")).limit(0)
        return empty, {"model": None, "why": "no interactions before the run date"}, None
    factors, model = day_factors(lake, inter, date, S.AlsParams.of(cfg.candidates, cfg.recommend.seed))
    log.info("evaluate: ALS baseline from the %s model %s", model["model"], model["params"])
    return O.als_lists(factors, before, users, k, allowed=allowed), model, factors


FALLBACK = "fallback_ranker"


def _fallback_lists(
    cfg: Config, lake: Lake, date: dt.date, recs: DataFrame
) -> tuple[DataFrame | None, dict[str, Any]]:
    """The lists the fallback ranker (``scoring.scorers.POPULARITY``) would have published on
    ``date`` from the same stored candidates and re-rank (:func:`recpipe.scoring.run.stored_lists`),
    and what the report says of them; None when ``evaluate.fallback_lists`` is off or the
    published lists are that ranker's own."""
    if not cfg.evaluate.fallback_lists:
        return None, {"skipped": "evaluate.fallback_lists is false"}
    if recs.where(F.col(C.MODEL_VERSION).isNotNull()).limit(1).count() == 0:
        return None, {"skipped": "the published lists are the fallback ranker's own (no model version)"}
    if not lake.exists(C.GOLD_CANDIDATES) or read_candidates(lake, date).limit(1).count() == 0:
        return None, {"skipped": f"{C.GOLD_CANDIDATES} holds no candidates of {date}"}
    from recpipe.scoring.run import stored_lists
    from recpipe.scoring.scorers import POPULARITY

    t0 = time.perf_counter()
    lists = stored_lists(cfg, lake, date, POPULARITY).join(
        recs.select(C.USER_ID).distinct(), C.USER_ID, "left_semi"
    )
    n = lists.select(C.USER_ID).distinct().count()
    log.info("evaluate: the fallback ranker's lists of the same candidates for %d users", n)
    return lists, {"ranker": POPULARITY.ranker, "lists": n, "seconds": round(time.perf_counter() - t0, 2)}


def _published_lists(lake: Lake, date: dt.date | None) -> tuple[DataFrame, dt.date]:
    """The ``gold.recommendations`` rows of ``date`` (default: the latest run date) and the date;
    RuntimeError when there are none."""
    if not lake.exists(C.GOLD_RECOMMENDATIONS):
        raise RuntimeError(f"{C.GOLD_RECOMMENDATIONS} does not exist: run `recpipe recommend` first")
    recs = lake.read(C.GOLD_RECOMMENDATIONS)
    if date is None:
        date = one_row(recs.agg(F.max("run_date")))[0]
    recs = recs.where(F.col("run_date") == F.lit(date))
    if recs.limit(1).count() == 0:
        raise RuntimeError(f"{C.GOLD_RECOMMENDATIONS} has no lists for {date}")
    return recs, date


def run_evaluate(
    cfg: Config,
    spark: SparkSession,
    date: dt.date | None = None,
    lake: Lake | None = None,
    click_model: ClickModel | None = None,
) -> dict[str, Any]:
    """``click_model``: the data's true click model (synthetic data), for the expected clicks per
    list (:func:`true_click_model_eval`); the report says why they are missing without it."""
    t0 = time.perf_counter()
    lake = lake or open_lake(cfg, spark)
    k = cfg.evaluate.k
    recs, date = _published_lists(lake, date)
    end = date + dt.timedelta(days=cfg.evaluate.horizon_days)
    events = lake.read(C.SILVER_EVENTS)
    from recpipe.candidates.sources import allowed_items, history

    # Events strictly before the run date (partition-pruned, as the candidate sources see them).
    before = history(events, dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC))
    items = read_items(lake)
    truth = O.clicks_truth(events, date, end).cache()
    users = recs.select(C.USER_ID).distinct().cache()
    # Both are reused by every policy and segment below.
    segments = O.segment_users(before, users).cache()
    popularity = (
        before.where((F.col(C.EVENT_TYPE) == "click") & ~F.coalesce(F.col(C.IS_HISTORY), F.lit(False)))
        .groupBy(C.ITEM_ID)
        .agg(F.count("*").alias("clicks"))
        .cache()
    )
    published = O.lists_from_rows(recs)
    # The baselines rank the same allowed catalog as the published lists (not expired, blocked
    # or older than recommend.max_item_age_days at the run's cut-off).
    cutoff = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
    allowed = allowed_items(items, cutoff, cfg.recommend.max_item_age_days).select(C.ITEM_ID).cache()
    als_baseline, als_model, als_factors = _als_baseline(cfg, lake, date, before, users, k, allowed)
    policies = {
        "published": published,
        "popularity": O.popularity_lists(before, users, k, allowed),
        "als": als_baseline,
    }
    fallback, fallback_info = _fallback_lists(cfg, lake, date, recs)
    if fallback is not None:
        policies[FALLBACK] = O.lists_from_rows(fallback)
    rows: list[dict[str, Any]] = []
    for name, lists in policies.items():
        log.info("evaluate: %s lists", name)
        rows += O.evaluate_lists(name, lists, truth, segments, items, popularity, k)
    item_segments = O.item_segment_hit_rates(published, truth, before, k)
    ranker = ranker_metrics(cfg, lake)
    off_policy = logged_policy_ope(events, date, end)
    extra = {FALLBACK: fallback} if fallback is not None else None
    true_clicks = true_click_model_eval(cfg, lake, date, click_model, als_factors, extra)
    run_id = f"evaluate-{date}-{uuid.uuid4().hex[:8]}"
    report = {
        "job": "evaluate",
        "run_id": run_id,
        "run_date": str(date),
        "truth_window": [str(date), str(end)],
        "k": k,
        "users_with_lists": users.count(),
        "users_with_clicks": truth.count(),
        "ranker": ranker,
        "top_n": rows,
        "als_baseline": als_model,
        FALLBACK: fallback_info,
        "item_segments": item_segments,
        "off_policy": off_policy,
        "true_click_model": true_clicks,
        "reasons": {
            r["reason"]: r["n"] for r in recs.groupBy("reason").agg(F.count("*").alias("n")).collect()
        },
    }
    folder = cfg.artifacts_dir("reports")
    path = write_report(folder, f"evaluation-{date}.json", report)
    # The page is rendered from the JSON's dict alone (`recpipe report --render` rebuilds it).
    report_html = publish(folder, f"evaluation-{date}", "evaluation", report)
    _store(lake, report, date)
    for cached in (truth, users, segments, popularity, allowed):
        cached.unpersist()
    report["report_path"] = path
    report["report_html"] = report_html
    report["duration_s"] = round(time.perf_counter() - t0, 2)
    return report


def _store(lake: Lake, report: dict[str, Any], date: dt.date) -> None:
    now = dt.datetime.now(dt.UTC)
    out = []
    for row in report["top_n"]:
        for key, v in row.items():
            if key in ("policy", "segment", "k") or not isinstance(v, (int, float)) or v is None:
                continue
            out.append((report["run_id"], date, row["policy"], row["segment"], key, float(v), now))
    for key, v in report["ranker"].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((report["run_id"], date, "ranker", "all", key, float(v), now))
    for est in ("ips", "snips"):
        if est in report["off_policy"]:
            out.append(
                (
                    report["run_id"],
                    date,
                    "logging_policy",
                    "all",
                    f"{est}_ctr",
                    float(report["off_policy"][est]["value"]),
                    now,
                )
            )
    for policy in ("published", "popularity", "als_only", FALLBACK):
        v = report.get("true_click_model", {}).get(f"{policy}_expected_clicks_per_list")
        if v is not None:
            out.append(
                (report["run_id"], date, policy, "all", "true_expected_clicks_per_list", float(v), now)
            )
    df = lake.spark.createDataFrame(out, EVALUATIONS_SCHEMA)
    # One evaluation per run date is kept: a rerun replaces that date's rows atomically.
    if lake.exists(OPS_EVALUATIONS):
        lake.overwrite(OPS_EVALUATIONS, df, partitions={"run_date": [date]})
    else:
        lake.append(OPS_EVALUATIONS, df, partition_by=["run_date"], txn=Txn(f"evaluate/{date}", 1))
