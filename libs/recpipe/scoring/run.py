"""The recommend job: candidates -> ranking -> re-ranking -> checked, atomic publish.

``run_recommend`` writes ``gold.candidates`` and ``gold.recommendations`` for one run date and
returns the JSON summary (users, lists, candidates per user, share of slots per reason, model
version, ranker).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.candidates.run import (
    CandidateParams,
    CandidateSet,
    as_of_time,
    build_candidates,
    read_candidates,
    stored_candidate_set,
    write_candidates,
)
from recpipe.config import Config
from recpipe.events.items import read_items
from recpipe.frames import one_row
from recpipe.lake import CommitResult, Lake, open_lake
from recpipe.scoring.publish import publish_recommendations
from recpipe.scoring.rank import attach_model_features, item_vector_table, ranking_frame, score_and_rerank
from recpipe.scoring.rerank import RerankParams
from recpipe.scoring.scorers import ScorerRef, resolve_scorer

log = logging.getLogger(__name__)


def default_run_date(lake: Lake) -> dt.date:
    """The day after the latest event date in silver.events (batch runs on complete days)."""
    row = lake.read(C.SILVER_EVENTS).agg(F.max(C.EVENT_DATE)).first()
    if row is None or row[0] is None:
        raise ValueError("silver.events is empty: nothing to recommend from")
    latest: dt.date = row[0]
    return latest + dt.timedelta(days=1)


def scoring_frame(
    cfg: Config, lake: Lake, cs: CandidateSet, cands: DataFrame, model_inputs: bool
) -> tuple[DataFrame, Any]:
    """Candidates -> one row per (user, item) with the ranking features
    (:func:`~recpipe.scoring.rank.ranking_frame`) and, with ``model_inputs``, the model's inputs
    (:func:`~recpipe.scoring.rank.attach_model_features`) plus the item table the scoring kernel
    adds per batch (:func:`~recpipe.scoring.rank.item_vector_table`; else None)."""
    rc = cfg.recommend
    frame = ranking_frame(cands, cs.allowed, cs.affinity, cs.item_stats, cs.as_of, rc.fresh_window_hours)
    if not model_inputs:
        return frame, None
    frame = attach_model_features(
        frame, lake, cs.run_date, cfg.features.windows_days, cs.as_of, text_vectors=False
    )
    return frame, item_vector_table(lake, cs.run_date, cs.allowed)


def rank_candidates(
    cfg: Config,
    lake: Lake,
    cs: CandidateSet,
    cands: DataFrame,
    scorer: ScorerRef,
    params: CandidateParams,
    scored: Any = None,
) -> DataFrame:
    """Candidates (``gold.candidates`` rows of ``cs.run_date``) -> ranked, re-ranked top-N lists
    (``OUT_DDL`` rows of :func:`score_and_rerank`), scored by ``scorer``; ``scored``: an
    accumulator counting the scored candidates."""
    rc = cfg.recommend
    frame, item_inputs = scoring_frame(cfg, lake, cs, cands, scorer.kind == "model")
    # Scored and re-ranked in one pass over batches of whole users.
    rr = RerankParams.from_config(rc, params.uncertain_impressions)
    return score_and_rerank(frame, scorer, rr, cs.run_date, items=item_inputs, scored=scored)


def lists_for_users(
    cfg: Config,
    spark: SparkSession,
    run_date: dt.date,
    users: list[str],
    scorer: ScorerRef,
    params: CandidateParams | None = None,
    lake: Lake | None = None,
) -> pd.DataFrame:
    """The lists ``scorer`` would give ``users`` (pseudonymized ids) on ``run_date`` from the same
    candidates and re-ranking as :func:`run_recommend`, NOT published: e.g. the lists of an
    earlier model for a simulated arm. Columns: user_id, rank, item_id, score, propensity,
    reason, reason_detail. Users without candidates get no rows."""
    lake = lake or open_lake(cfg, spark)
    params = params or cfg.candidates
    who = spark.createDataFrame(pd.DataFrame({C.USER_ID: users}), f"{C.USER_ID} string")
    cs = build_candidates(cfg, lake, run_date, None, params)
    try:
        cands = cs.candidates.join(F.broadcast(who), C.USER_ID, "left_semi")
        lists = rank_candidates(cfg, lake, cs, cands, scorer, params)
        out: pd.DataFrame = lists.select(*C.LIST_COLUMNS).toPandas()
    finally:
        cs.unpersist()
    return out


def stored_lists(
    cfg: Config,
    lake: Lake,
    run_date: dt.date,
    scorer: ScorerRef,
    params: CandidateParams | None = None,
) -> DataFrame:
    """The lists ``scorer`` would have published on ``run_date``: that run's stored candidates
    (:func:`recpipe.candidates.run.stored_candidate_set`) ranked by ``scorer`` and re-ranked as
    :func:`run_recommend` does (same exploration draws), NOT published. Columns
    ``constants.LIST_COLUMNS``; materialized (a local checkpoint), so it outlives the candidate
    set's cached frames."""
    params = params or cfg.candidates
    cs = stored_candidate_set(cfg, lake, run_date, params)
    try:
        lists = rank_candidates(cfg, lake, cs, cs.candidates, scorer, params)
        out: DataFrame = lists.select(*C.LIST_COLUMNS).localCheckpoint(eager=True)
    finally:
        cs.unpersist()
    return out


def _candidates_step(
    cfg: Config,
    lake: Lake,
    run_date: dt.date,
    extra_users: DataFrame | None,
    params: CandidateParams,
) -> tuple[CandidateSet, CommitResult, DataFrame, DataFrame, int]:
    """Build and write ``gold.candidates`` of ``run_date``; returns the candidate set, the commit,
    the written candidates read back, candidates per user (persisted) and the number of users."""
    cs = build_candidates(cfg, lake, run_date, extra_users, params)
    cand_commit = write_candidates(lake, cs.candidates, run_date)
    # Not cached: scoring reads the written files as fast as a cache (measured at 10^5 users:
    # 23 s either way), and filling the cache cost ~20 s.
    cands = read_candidates(lake, run_date)
    # One row per user, read by the publish checks and the summary (3-4 times): kept, not
    # recomputed from every candidate row each time. Distinct items counted as a set of their
    # 64-bit hashes per user (10 s at 10^5 users against 22 s for a distinct count of the id
    # strings; two ids of one user's few hundred colliding is a ~1e-15 chance).
    cand_counts = (
        cands.groupBy(C.USER_ID)
        .agg(F.size(F.collect_set(F.xxhash64(C.ITEM_ID))).alias("n_candidates"))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    cand_counts.count()
    n_users = cs.users.count()
    kept = {r[C.SOURCE]: r["count"] for r in cands.groupBy(C.SOURCE).count().collect()}
    for name, stats in cs.source_stats.items():
        stats["kept"] = kept.get(name, 0)  # rows in gold.candidates after filters and budget
    return cs, cand_commit, cands, cand_counts, n_users


def _scorer_of(cfg: Config, lake: Lake, scorer: ScorerRef | None) -> tuple[ScorerRef, str]:
    """The ranker (the caller's, else the resolved one) and why it was chosen (logged)."""
    if scorer is None:
        scorer, why = resolve_scorer(cfg, lake)
    else:
        why = "given by the caller"
    log.info("ranker %s (%s), model version %s", scorer.ranker, why, scorer.version)
    return scorer, why


def _score_lists(
    cfg: Config,
    spark: SparkSession,
    lake: Lake,
    cs: CandidateSet,
    cands: DataFrame,
    scorer: ScorerRef,
    params: CandidateParams,
    run_id: str,
) -> tuple[DataFrame, int, int]:
    """The ranked lists as ``gold.recommendations`` rows (persisted), their row count and the
    number of candidates scored."""
    counter = spark.sparkContext.accumulator(0)
    lists = rank_candidates(cfg, lake, cs, cands, scorer, params, scored=counter)
    recs = lists.select(
        F.lit(cs.run_date).cast("date").alias(C.RUN_DATE),
        *C.LIST_COLUMNS,
        F.lit(scorer.version).cast("string").alias(C.MODEL_VERSION),
        F.lit(run_id).alias(C.RUN_ID),
        F.lit(dt.datetime.now(dt.UTC).replace(microsecond=0)).cast("timestamp").alias(C.GENERATED_AT),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    n_rows = recs.count()
    n_scored: int = counter.value
    return recs, n_rows, n_scored


def _publish(
    cfg: Config,
    lake: Lake,
    recs: DataFrame,
    run_date: dt.date,
    cand_counts: DataFrame,
    as_of: dt.datetime,
    force: bool,
) -> dict[str, Any]:
    """Check and publish ``recs`` as the lists of ``run_date`` (:mod:`recpipe.scoring.publish`)."""
    rc = cfg.recommend
    items = read_items(lake)
    return publish_recommendations(
        lake,
        recs,
        run_date,
        items,
        cand_counts,
        as_of,
        rc.top_n,
        max_drop_share=rc.max_drop_share,
        max_short_share=rc.max_short_share,
        force=force,
    )


def _list_stats(recs: DataFrame, cand_counts: DataFrame, top_n: int) -> tuple[dict[str, int], int, int, int]:
    """Slots per reason, lists, candidate rows and lists with ``top_n`` items (in this order)."""
    reasons = {
        r[C.REASON]: r["n"] for r in recs.groupBy(C.REASON).count().withColumnRenamed("count", "n").collect()
    }
    n_lists = recs.select(C.USER_ID).distinct().count()
    n_cand_rows = one_row(cand_counts.agg(F.sum("n_candidates")))[0] or 0
    full_lists = recs.groupBy(C.USER_ID).count().where(F.col("count") >= top_n).count()
    return reasons, n_lists, n_cand_rows, full_lists


def run_recommend(
    cfg: Config,
    spark: SparkSession,
    run_date: dt.date | None = None,
    extra_users: DataFrame | None = None,
    lake: Lake | None = None,
    scorer: ScorerRef | None = None,
    params: CandidateParams | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build candidates, rank, re-rank and publish the lists of ``run_date``; returns the summary.

    ``force`` publishes lists whose count fell by more than ``recommend.max_drop_share`` against
    the last publish; every other publish check still applies (:mod:`recpipe.scoring.publish`).
    """
    t_start = time.perf_counter()
    lake = lake or open_lake(cfg, spark)
    run_date = run_date or default_run_date(lake)
    params = params or cfg.candidates
    as_of = as_of_time(run_date)
    rc = cfg.recommend
    run_id = f"recommend-{run_date.isoformat()}-{uuid.uuid4().hex[:8]}"
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    cs, cand_commit, cands, cand_counts, n_users = _candidates_step(cfg, lake, run_date, extra_users, params)
    timings["candidates_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scorer, why = _scorer_of(cfg, lake, scorer)
    recs, n_rows, n_scored = _score_lists(cfg, spark, lake, cs, cands, scorer, params, run_id)
    timings["score_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pub = _publish(cfg, lake, recs, run_date, cand_counts, as_of, force)
    timings["publish_s"] = time.perf_counter() - t0

    reasons, n_lists, n_cand_rows, full_lists = _list_stats(recs, cand_counts, rc.top_n)
    summary = {
        "job": "recommend",
        "run_date": run_date.isoformat(),
        "run_id": run_id,
        "users": n_users,
        "lists": n_lists,
        "full_lists": full_lists,
        "slots": n_rows,
        "mean_candidates_per_user": round(n_cand_rows / max(1, n_users), 2),
        "candidate_sources": cs.source_stats,
        "scored_candidates": n_scored,
        "reason_share": {k: round(v / max(1, n_rows), 4) for k, v in sorted(reasons.items())},
        "model_version": scorer.version,
        "ranker": scorer.ranker,
        "ranker_reason": why,
        "published": pub,
        "candidates_commit": cand_commit.to_dict(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "duration_s": round(time.perf_counter() - t_start, 3),
    }
    for df in (cand_counts, recs):
        df.unpersist()
    cs.unpersist()
    return summary
