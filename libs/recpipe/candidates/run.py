"""Candidate generation job: silver events/items (+ gold.item_features) -> ``gold.candidates``.

IO lives here; the transforms are in :mod:`recpipe.candidates.sources`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.candidates import sources as S
from recpipe.candidates.als import fit_and_save
from recpipe.config import CandidatesConfig, Config
from recpipe.events.feedback import is_clicks_only, with_feedback
from recpipe.events.items import has_text, read_items
from recpipe.features import profiles as P
from recpipe.lake import CommitResult, Lake

log = logging.getLogger(__name__)


# The sources' settings are the config's ``candidates`` section (tests pass smaller ALS settings:
# ``CandidateParams(als_rank=16)``); the name stays for callers.
CandidateParams = CandidatesConfig


@dataclass
class CandidateSet:
    """The candidates of a run plus the frames the ranking step reuses."""

    run_date: dt.date
    as_of: dt.datetime
    candidates: DataFrame  # CANDIDATES_SCHEMA without run_date
    users: DataFrame  # (user_id, country, device) the run recommends for
    allowed: DataFrame  # silver.items rows allowed at as_of
    affinity: DataFrame  # (user_id, category, affinity)
    item_stats: DataFrame  # (item_id, popularity, impressions)
    source_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # rows, seconds per source
    _cached: list[DataFrame] = field(default_factory=list)

    def unpersist(self) -> None:
        for df in self._cached:
            df.unpersist()


def as_of_time(run_date: dt.date) -> dt.datetime:
    """The run's cut-off: run_date 00:00 UTC (only events strictly before it are used)."""
    return dt.datetime(run_date.year, run_date.month, run_date.day, tzinfo=dt.UTC)


def item_vectors(cfg: Config, lake: Lake, items: DataFrame, run_date: dt.date) -> tuple[DataFrame, str]:
    """Unit text vectors: ``gold.item_features``' text vector when the table has one (latest
    ``as_of_date`` <= run date per item), else TF-IDF of silver.items computed here."""
    stored = P.stored_item_vectors(lake, run_date)
    if stored is not None:
        return stored
    return S.tfidf_vectors(items, cfg.features.text_features), "tfidf(silver.items)"


def with_fresh_profiles(
    lake: Lake, as_of: dt.datetime, users: DataFrame, affinity: DataFrame, consumed: DataFrame
) -> tuple[DataFrame, DataFrame]:
    """``affinity`` and ``consumed`` pairs, where ``users`` whose ``gold.user_profiles`` row was
    last seen on the run date (at or after ``as_of``, streamed after the history's cut-off) have
    their category affinity from the profile's interest shares (``basis`` "profile", named in
    the candidates' detail) and the items they used since ``as_of`` counted as consumed. Other
    users keep their history's rows; without the table both come back unchanged."""
    if not lake.exists(C.GOLD_USER_PROFILES):
        return affinity, consumed
    until = as_of + dt.timedelta(days=1)
    fresh = P.fresh_profiles(lake.read(C.GOLD_USER_PROFILES), as_of, until)
    fresh = fresh.join(users.select(C.USER_ID), C.USER_ID, "left_semi")
    from_profile = P.profile_affinity(fresh, as_of)
    # Users whose profile has no category interests (no catalog) keep their history's affinity.
    replaced = from_profile.select(C.USER_ID).distinct()
    kept = affinity.join(replaced, C.USER_ID, "left_anti").withColumn(
        S.AFFINITY_BASIS, F.lit(None).cast("string")
    )
    used = P.items_used_since(fresh, as_of)
    return kept.unionByName(from_profile), consumed.unionByName(used).distinct()


def _keep(cached: list[DataFrame], df: DataFrame) -> DataFrame:
    """``df`` persisted and filled now, added to ``cached`` (unpersisted with the candidate set)."""
    # Filled here, before the sources read it: several broadcast builds filling one lazy
    # cache at once compute the same blocks twice ("Block rdd_... already exists").
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    df.count()
    cached.append(df)
    return df


def _source_k(cfg: Config, p: CandidateParams, source: str) -> int:
    """How many candidates ``source`` gives each user: its share of the budget, oversampled."""
    rc = cfg.recommend
    budget = rc.candidates_per_user
    return max(rc.top_n, int(math.ceil(budget * p.shares.get(source, 0.1) * p.oversample)))


@dataclass
class _History:
    """The frames of the history before ``as_of`` that the candidate sources read."""

    events: DataFrame
    items: DataFrame
    allowed: DataFrame
    inter: DataFrame
    target: DataFrame
    target_ids: DataFrame
    affinity: DataFrame
    consumed: DataFrame
    recent: DataFrame


def _target_users(
    events: DataFrame, as_of: dt.datetime, active_days: int, extra_users: DataFrame | None
) -> DataFrame:
    """(user_id, country, device) of the users active in the ``active_days`` before ``as_of``,
    plus ``extra_users`` (their given country/device win over the ones seen in the events)."""
    profiles = S.user_profiles(events)
    since = as_of - dt.timedelta(days=active_days)
    active = events.where(F.col(C.EVENT_TS) >= F.lit(since).cast("timestamp")).select(C.USER_ID).distinct()
    target = profiles.join(active, C.USER_ID, "left_semi")
    if extra_users is not None:
        given = extra_users.select(
            C.USER_ID,
            *[
                (F.col(c) if c in extra_users.columns else F.lit(None).cast("string")).alias(f"_{c}")
                for c in (C.COUNTRY, C.DEVICE)
            ],
        ).dropDuplicates([C.USER_ID])
        # Given country/device win over the ones seen in the events.
        target = target.join(given, C.USER_ID, "full_outer").select(
            C.USER_ID,
            F.coalesce(f"_{C.COUNTRY}", C.COUNTRY).alias(C.COUNTRY),
            F.coalesce(f"_{C.DEVICE}", C.DEVICE).alias(C.DEVICE),
        )
    return target


def _read_history(
    cfg: Config,
    lake: Lake,
    as_of: dt.datetime,
    p: CandidateParams,
    extra_users: DataFrame | None,
    cached: list[DataFrame],
    sources: bool = True,
) -> _History:
    """The history, allowed items, target users and their profiles (each kept frame filled now);
    ``sources=False``: the users' recent items (read by the sources only) are left lazy."""
    rc = cfg.recommend
    # The history is read by six steps below: scanned once, only the columns they use.
    used = [C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_TS, C.SESSION_ID, C.COUNTRY, C.DEVICE]
    events = _keep(cached, S.history(lake.read(C.SILVER_EVENTS), as_of).select(*used))
    items = read_items(lake)
    allowed = _keep(cached, S.allowed_items(items, as_of, rc.max_item_age_days))
    inter = _keep(cached, S.interactions(events))
    target = _keep(cached, _target_users(events, as_of, p.active_days, extra_users))
    target_ids = target.select(C.USER_ID)

    affinity = S.category_affinity(inter.join(target_ids, C.USER_ID, "left_semi"), items, as_of)
    affinity, consumed = with_fresh_profiles(lake, as_of, target_ids, affinity, S.consumed(events))
    affinity = _keep(cached, affinity)
    recent = S.recent_items(inter.join(target_ids, C.USER_ID, "left_semi"), as_of, cfg.features.last_k_items)
    recent = _keep(cached, recent) if sources else recent
    return _History(events, items, allowed, inter, target, target_ids, affinity, consumed, recent)


def _covisit_source(h: _History, p: CandidateParams, k: int) -> DataFrame:
    """Co-visitation: neighbours among allowed items, applied to the user's recent items."""
    cov = S.covisit_neighbours(h.inter, p.covisit_neighbours * 3)
    cov = cov.join(h.allowed.select(F.col(C.ITEM_ID).alias("neighbour_id")), "neighbour_id", "left_semi")
    cov = S.top_k(cov, [C.ITEM_ID], [F.desc("sim"), F.asc("neighbour_id")], p.covisit_neighbours)
    return S.neighbour_candidates(h.recent, cov, C.REASON_CO_VISIT, k)


def _als_source(
    cfg: Config, lake: Lake, h: _History, run_date: dt.date, p: CandidateParams, k: int
) -> DataFrame:
    """ALS over the allowed items (asks for twice its share: consumed items are filtered
    afterwards). The day's model is stored in gold.als_factors: evaluation scores its baselines
    with it."""
    t0 = time.perf_counter()
    factors = fit_and_save(lake, h.inter, run_date, S.AlsParams.of(p, cfg.recommend.seed))
    log.info(
        "candidates for %s: ALS fitted and stored in %s (%.1f s)",
        run_date,
        C.GOLD_ALS_FACTORS,
        time.perf_counter() - t0,
    )
    return S.score_als(factors, h.target_ids, 2 * k, allowed=h.allowed)


def _content_source(
    cfg: Config,
    lake: Lake,
    h: _History,
    run_date: dt.date,
    p: CandidateParams,
    k: int,
    skipped: dict[str, str],
) -> DataFrame | None:
    """Content similarity: the user's recent items -> similar allowed items (clicked or not);
    None, with the reason in ``skipped``, when no item has text (the other sources fill its
    share of the budget)."""
    if not has_text(h.items):
        skipped[C.REASON_SIMILAR_CONTENT] = "no item has a title or text"
        log.info("candidates for %s: %s skipped (%s)", run_date, C.REASON_SIMILAR_CONTENT, skipped)
        return None
    vectors, vec_source = item_vectors(cfg, lake, h.items, run_date)
    neigh = S.content_neighbours(
        vectors,
        h.recent.select(C.ITEM_ID),
        h.allowed.select(C.ITEM_ID),
        p.content_neighbours,
        min_cosine=p.content_min_cosine,
    )
    content = S.neighbour_candidates(h.recent, neigh, C.REASON_SIMILAR_CONTENT, k)
    log.info("candidates for %s: text vectors from %s", run_date, vec_source)
    return content


def _collect_lists(
    cfg: Config,
    h: _History,
    trends: tuple[DataFrame, DataFrame, DataFrame],
    as_of: dt.datetime,
    k_fresh: int,
) -> tuple[S.ItemLists, float]:
    """The trending (global, country, category) and fresh item lists, and the seconds taken."""
    # Trending and fresh items are the same few lists for everyone: collected here and applied
    # to each batch of users inside the filter/budget kernel (S.filter_and_budget), not joined
    # to every user in Spark (~200 rows per user through a shuffle).
    t0 = time.perf_counter()
    global_trend, country_trend, category_trend = trends
    lists = S.collect_item_lists(
        global_trend,
        country_trend,
        category_trend,
        h.allowed,
        as_of,
        cfg.recommend.fresh_window_hours,
        k_fresh,
    )
    return lists, round(time.perf_counter() - t0, 2)


def _materialize_sources(
    sources: tuple[tuple[str, DataFrame | None], ...],
    skipped: dict[str, str],
    lists_s: float,
    source_stats: dict[str, dict[str, Any]],
) -> dict[str, DataFrame]:
    """Each source materialized on its own, its rows and seconds added to ``source_stats``
    (after trending and fresh, applied per user batch from the collected lists)."""
    # Each source is materialized on its own: smaller plans (fewer concurrent broadcasts on the
    # driver) and per-source counts/timings for the summary. A local checkpoint, not a cache: a
    # cached frame keeps its whole lineage, and the union's tasks carried all five sources' plans
    # (a 1-1.7 MB task binary, Spark's "Broadcasting large task binary" warning). The blocks go
    # when the frames are garbage collected (Spark's ContextCleaner).
    per_source: dict[str, DataFrame] = {}
    for name in (C.REASON_TRENDING, C.REASON_FRESH):
        source_stats[name] = {"rows": None, "s": lists_s, "applied": "per user batch in the budget kernel"}
    for name, df in sources:
        if df is None:
            source_stats[name] = {"rows": 0, "skipped": skipped[name]}
            continue
        t0 = time.perf_counter()
        per_source[name] = df.localCheckpoint(eager=True, storageLevel=StorageLevel.MEMORY_AND_DISK)
        source_stats[name] = {"rows": per_source[name].count(), "s": round(time.perf_counter() - t0, 2)}
    return per_source


def _item_stats(
    cfg: Config, lake: Lake, h: _History, inter_allowed: DataFrame, as_of: dt.datetime, half: float
) -> DataFrame:
    """(item_id, popularity, impressions) of the allowed items."""
    pop = S.trending(inter_allowed, as_of, half, None).select(C.ITEM_ID, F.col("score").alias("popularity"))
    # Exposure behind the "uncertain" exploration pool: impressions, or for a click-only source
    # (no impressions logged) its clicks, so that not every item counts as unexplored.
    exposure = "click" if is_clicks_only(with_feedback(cfg, lake)) else "impression"
    impressions = (
        h.events.where(F.col(C.EVENT_TYPE) == exposure)
        .groupBy(C.ITEM_ID)
        .agg(F.count("*").alias("impressions"))
    )
    return (
        h.allowed.select(C.ITEM_ID)
        .join(pop, C.ITEM_ID, "left")
        .join(impressions, C.ITEM_ID, "left")
        .select(
            C.ITEM_ID,
            F.coalesce("popularity", F.lit(0.0)).alias("popularity"),
            F.coalesce("impressions", F.lit(0)).cast("long").alias("impressions"),
        )
    )


def build_candidates(
    cfg: Config,
    lake: Lake,
    run_date: dt.date,
    extra_users: DataFrame | None = None,
    params: CandidateParams | None = None,
) -> CandidateSet:
    """All candidate sources for ``run_date``, filtered and cut to the per-user budget.

    Users: every user with an event in the ``active_days`` before the run, plus ``extra_users``
    (user_id[, country, device]), e.g. users who signed up but have no events yet. Users without
    history get trending (of their country when known) and fresh items.
    """
    p = params or cfg.candidates
    rc = cfg.recommend
    as_of = as_of_time(run_date)
    t_prep = time.perf_counter()
    cached: list[DataFrame] = []
    h = _read_history(cfg, lake, as_of, p, extra_users, cached)
    budget = rc.candidates_per_user
    source_stats: dict[str, dict[str, Any]] = {}
    log.info(
        "candidates for %s: history and user profiles ready (%.1f s)", run_date, time.perf_counter() - t_prep
    )
    k_of = functools.partial(_source_k, cfg, p)

    # trending (only allowed items can trend)
    inter_allowed = h.inter.join(h.allowed.select(C.ITEM_ID, "category"), C.ITEM_ID)
    k_tr = k_of(C.REASON_TRENDING)
    half = cfg.features.trend_half_life_hours
    global_trend = S.trending(inter_allowed, as_of, half, k_tr)
    country_trend = S.trending(inter_allowed, as_of, half, k_tr, by=[C.COUNTRY])
    category_trend = S.trending(inter_allowed, as_of, half, k_tr, by=["category"])

    covisit = _covisit_source(h, p, k_of(C.REASON_CO_VISIT))
    als = _als_source(cfg, lake, h, run_date, p, k_of(C.REASON_ALS))
    skipped: dict[str, str] = {}
    content = _content_source(cfg, lake, h, run_date, p, k_of(C.REASON_SIMILAR_CONTENT), skipped)

    trends = (global_trend, country_trend, category_trend)
    lists, lists_s = _collect_lists(cfg, h, trends, as_of, k_of(C.REASON_FRESH))

    sources = ((C.REASON_CO_VISIT, covisit), (C.REASON_ALS, als), (C.REASON_SIMILAR_CONTENT, content))
    per_source = _materialize_sources(sources, skipped, lists_s, source_stats)
    union = functools.reduce(DataFrame.unionByName, per_source.values())
    # Every source starts from the target users, so no other user appears here.
    cands = S.filter_and_budget(
        union,
        h.allowed,
        h.consumed,
        budget,
        p.shares,
        users=h.target.select(C.USER_ID, C.COUNTRY),
        affinity=h.affinity,
        lists=lists,
    )
    stats = _keep(cached, _item_stats(cfg, lake, h, inter_allowed, as_of, half))
    return CandidateSet(
        run_date=run_date,
        as_of=as_of,
        candidates=cands,
        users=h.target,
        allowed=h.allowed,
        affinity=h.affinity,
        item_stats=stats,
        source_stats=source_stats,
        _cached=cached,
    )


def stored_candidate_set(
    cfg: Config, lake: Lake, run_date: dt.date, params: CandidateParams | None = None
) -> CandidateSet:
    """The candidate set of an earlier run for re-ranking it (evaluation's other rankers): the
    run's stored ``gold.candidates`` (no source is recomputed, no ALS refitted, nothing written)
    with the frames the ranking step reads (allowed items, category affinities, item stats)
    rebuilt from the events before ``run_date``. A stream that updated ``gold.user_profiles``
    after the run can change the rebuilt affinities of its users."""
    p = params or cfg.candidates
    as_of = as_of_time(run_date)
    cached: list[DataFrame] = []
    h = _read_history(cfg, lake, as_of, p, None, cached, sources=False)
    inter_allowed = h.inter.join(h.allowed.select(C.ITEM_ID, "category"), C.ITEM_ID)
    stats = _keep(cached, _item_stats(cfg, lake, h, inter_allowed, as_of, cfg.features.trend_half_life_hours))
    return CandidateSet(
        run_date=run_date,
        as_of=as_of,
        candidates=read_candidates(lake, run_date),
        users=h.target,
        allowed=h.allowed,
        affinity=h.affinity,
        item_stats=stats,
        _cached=cached,
    )


def with_run_date(cands: DataFrame, run_date: dt.date) -> DataFrame:
    return cands.select(F.lit(run_date).cast("date").alias(C.RUN_DATE), *S.CAND_COLS)


def write_candidates(lake: Lake, cands: DataFrame, run_date: dt.date) -> CommitResult:
    """Replace the run date's partition of ``gold.candidates`` (one commit, idempotent per date)."""
    df = with_run_date(cands, run_date)
    return lake.overwrite(
        C.GOLD_CANDIDATES, df, partition_by=[C.RUN_DATE], partitions={C.RUN_DATE: [run_date.isoformat()]}
    )


def read_candidates(lake: Lake, run_date: dt.date) -> DataFrame:
    return lake.read(C.GOLD_CANDIDATES).where(F.col(C.RUN_DATE) == F.lit(run_date))
