"""Ranking: assemble one row per (user, candidate item) and score it inside Spark with
``mapInArrow``; the scorer is loaded once per Python worker."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from pyspark import Accumulator, Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from recpipe import constants as C
from recpipe.batches import gathered, whole_groups_arrow
from recpipe.examples import inputs as E
from recpipe.features.text import fixed_matrix, text_affinity, unit_rows
from recpipe.scoring.rerank import INPUT_COLUMNS, OUT_DDL, RerankParams, rerank_table
from recpipe.scoring.scorers import ModelScorer, Scorer, ScorerRef, get_scorer

if TYPE_CHECKING:
    from recpipe.lake import Lake

log = logging.getLogger(__name__)

SCORE_DECIMALS = 6


def ranking_frame(
    cands: DataFrame,
    allowed: DataFrame,
    affinity: DataFrame,
    item_stats: DataFrame,
    as_of: dt.datetime,
    fresh_window_hours: int,
) -> DataFrame:
    """Candidates (one row per source) -> one row per (user, item) with the ranking features:
    per-source scores ``s_<source>``, ``n_sources``, the reason (highest-priority source, see
    ``constants.CANDIDATE_SOURCES``) and its detail, category, age/freshness, popularity,
    impressions and the user's category affinity.

    The candidate rows are shuffled once, by user; every later join keeps that partitioning
    (the item-side tables are broadcast, the user's category affinities are one map per user),
    so the frame reaches :func:`score_and_rerank` without another shuffle of candidate rows.
    """
    prio = F.create_map(*[x for i, s in enumerate(C.CANDIDATE_SOURCES) for x in (F.lit(s), F.lit(i))])
    per_source = [
        F.max(F.when(F.col(C.SOURCE) == s, F.col(C.SOURCE_SCORE))).alias(f"s_{s}")
        for s in C.CANDIDATE_SOURCES
    ]
    # Hash-partitioned by user, the (user, item) aggregation needs no shuffle of its own.
    agg = (
        cands.repartition(C.USER_ID)
        .groupBy(C.USER_ID, C.ITEM_ID)
        .agg(
            *per_source,
            # One row per (user, item, source) in gold.candidates (budget_frame keeps one), so a
            # plain count is the number of sources: no distinct aggregation, one shuffle fewer.
            F.count(C.SOURCE).alias("n_sources"),
            F.min(
                F.struct(
                    F.coalesce(prio[F.col(C.SOURCE)], F.lit(99)).alias("p"),
                    F.col(C.SOURCE).alias("s"),
                    F.coalesce(F.col(C.DETAIL), F.lit("")).alias("d"),
                )
            ).alias("_best"),
        )
    )
    age = (F.unix_micros(F.lit(as_of).cast("timestamp")) - F.unix_micros("published_ts")) / 3.6e9
    items = allowed.select(C.ITEM_ID, "category", age.alias("age_hours"))
    # A join on (user, category) would shuffle every candidate row again: the affinities travel
    # as one category -> affinity map per user, joined on the user id alone.
    per_user = (
        affinity.where(F.col("category").isNotNull())
        .groupBy(C.USER_ID)
        .agg(F.map_from_entries(F.collect_list(F.struct("category", "affinity"))).alias("_affinity"))
    )
    frame = (
        agg.join(F.broadcast(items), C.ITEM_ID)
        .join(F.broadcast(item_stats), C.ITEM_ID, "left")
        .join(per_user, C.USER_ID, "left")
        .withColumn("affinity", F.element_at("_affinity", F.col("category")))
    )
    is_fresh = F.col("age_hours").isNotNull() & (F.col("age_hours") <= fresh_window_hours)
    return frame.select(
        C.USER_ID,
        C.ITEM_ID,
        F.coalesce("category", F.lit("")).alias("category"),
        F.col("age_hours").cast("double").alias("age_hours"),
        is_fresh.alias("is_fresh"),
        F.when(is_fresh, 1.0 - F.col("age_hours") / (fresh_window_hours + 1.0))
        .otherwise(0.0)
        .alias("freshness"),
        F.coalesce("popularity", F.lit(0.0)).cast("double").alias("popularity"),
        F.coalesce("impressions", F.lit(0)).cast("long").alias("impressions"),
        F.coalesce("affinity", F.lit(0.0)).cast("double").alias("cat_affinity"),
        *[F.coalesce(f"s_{s}", F.lit(0.0)).alias(f"s_{s}") for s in C.CANDIDATE_SOURCES],
        F.col("n_sources").cast("int").alias("n_sources"),
        F.col("_best.s").alias(C.REASON),
        F.col("_best.d").alias(C.REASON_DETAIL),
    )


# The item matrix of unit text vectors (not a column: _with_item_columns skips it) and the input
# the scoring kernel derives from it (recpipe.examples.inputs.USER_TEXT_AFFINITY).
_UNIT_TEXT = "~unit_text_vec~"
_TEXT_AFFINITY = E.USER_TEXT_AFFINITY

# Rows per scorer call: the model predicts a 65k-row table ~5x faster per row than 10k-row batches.
SCORE_ROWS = 65_536


def _as_list_column(matrix: npt.NDArray[Any], pos: npt.NDArray[Any]) -> pa.Array:
    """``matrix[pos]`` as a list<float> array (a numpy take and zero-copy wrapping instead of
    Arrow's list take, ~4x faster for 65k rows x 256 floats)."""
    n, dim = len(pos), matrix.shape[1]
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix[pos].reshape(-1)))


def _with_item_columns(
    rows: pa.Table, index: pd.Index, items: pa.Table, matrices: dict[str, npt.NDArray[Any]] | None = None
) -> pa.Table:
    """``rows`` plus ``items``' columns (other than item_id) of each row's item (null when the
    item has none), looked up by position instead of joined to every row in Spark. ``matrices``:
    columns already held as (items, dim) matrices (:func:`recpipe.features.text.fixed_matrix`), taken with numpy when
    every row's item is known."""
    pos = index.get_indexer(rows.column(C.ITEM_ID).to_numpy())
    take = pa.array(pos, pa.int64(), mask=pos < 0)
    known = bool((pos >= 0).all())
    names = [c for c in items.column_names if c != C.ITEM_ID]
    extra = [
        _as_list_column(matrices[c], pos)
        if known and matrices and c in matrices
        else items.column(c).take(take)
        for c in names
    ]
    return pa.Table.from_arrays([*rows.columns, *extra], names=[*rows.column_names, *names])


def _with_text_affinity(
    rows: pa.Table, index: pd.Index | None, matrices: dict[str, npt.NDArray[Any]] | None
) -> pa.Table:
    """``rows`` plus the user's text affinity of each candidate, by the function that built the
    training examples' column (:func:`recpipe.features.text.text_affinity`; a batch holds whole
    users, and one user's rows share one history)."""
    unit = (matrices or {}).get(_UNIT_TEXT)
    users = pd.factorize(rows.column(C.USER_ID).to_numpy())[0]
    score = text_affinity(
        rows.column(E.USER_LAST_ITEMS),
        rows.column(C.ITEM_ID),
        users,
        index if index is not None else pd.Index([]),
        unit,
    )
    return rows.append_column(E.USER_TEXT_AFFINITY, pa.array(score, pa.float64()))


def _scores(
    scorer: Scorer,
    ref: ScorerRef,
    rows: pa.Table,
    index: pd.Index | None,
    items: pa.Table | None,
    matrices: dict[str, npt.NDArray[Any]] | None = None,
) -> npt.NDArray[Any]:
    """The scorer's scores of ``rows`` (with ``items``' columns added by item id when given, and
    the text affinity when the scorer reads it and the rows lack it)."""
    if _TEXT_AFFINITY in ref.inputs and _TEXT_AFFINITY not in rows.column_names:
        if items is None:
            # Without the item table every affinity would be 0: training/serving skew, not a default.
            raise ValueError(
                f"model {ref.version} reads {_TEXT_AFFINITY}: score with the item table "
                "(scoring.rank.item_vector_table) so that it can be computed"
            )
        rows = _with_text_affinity(rows, index, matrices)
    if isinstance(scorer, ModelScorer):
        # The item table's columns are added to the batch's distinct items only.
        add = (lambda t: _with_item_columns(t, index, items, matrices)) if items is not None else None
        s = np.asarray(scorer.score_sides(rows, add), dtype=float).reshape(-1)
    else:
        full = _with_item_columns(rows, index, items, matrices) if items is not None else rows
        s = np.asarray(scorer.score_batch(full), dtype=float).reshape(-1)
    if len(s) != rows.num_rows:
        raise ValueError(f"scorer {ref.kind} returned {len(s)} scores for {rows.num_rows} rows")
    return s


def _item_matrices(items: pa.Table | None) -> dict[str, npt.NDArray[Any]]:
    """The item columns that are fixed-length float vectors, as matrices (once per task), and
    the text vectors scaled to unit length (for the text affinity)."""
    if items is None:
        return {}
    found = {c: fixed_matrix(items.column(c)) for c in items.column_names if c != C.ITEM_ID}
    out = {c: m for c, m in found.items() if m is not None}
    if E.ITEM_TEXT_VEC in out:
        out[_UNIT_TEXT] = unit_rows(out[E.ITEM_TEXT_VEC])
    return out


def _score_batches(
    ref: ScorerRef, keep: list[str], items: Broadcast[pa.Table] | None = None, rows_per_call: int = SCORE_ROWS
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = get_scorer(ref)  # once per worker process (module-level cache)
        table = items.value if items is not None else None
        index = pd.Index(table.column(C.ITEM_ID).to_numpy()) if table is not None else None
        matrices = _item_matrices(table)
        for rows in gathered(batches, rows_per_call):
            s = _scores(scorer, ref, rows, index, table, matrices)
            cols = [rows.column(c).combine_chunks() for c in keep]
            yield pa.RecordBatch.from_arrays(
                [*cols, pa.array(np.round(s, SCORE_DECIMALS), pa.float64())], names=[*keep, C.SCORE]
            )

    return fn


def score_candidates(
    frame: DataFrame, ref: ScorerRef, keep: list[str] | None = None, items: pa.Table | None = None
) -> DataFrame:
    """``keep`` (default: every column of ``frame``) plus ``score`` from the scorer ``ref``: scores
    without re-ranking (the job uses :func:`score_and_rerank`; this is the step-wise reference
    a test keeps it equal to).

    Only ``keep`` and the scorer's inputs (``ref.inputs``) are sent to the Python workers, as
    Arrow batches handed to the scorer as they come (no pandas round trip of the model's list
    columns, and the model inputs do not come back). ``items`` (item_id + columns, unique ids):
    per-item inputs broadcast once and added to each batch by item id, e.g. the 256-float text
    vectors (:func:`item_vector_table`), instead of a join that carries them on every row."""
    keep = list(keep or frame.columns)
    inputs = [c for c in ref.inputs if c in frame.columns] if ref.inputs else frame.columns
    cols = list(dict.fromkeys([*keep, *inputs, *([C.ITEM_ID] if items is not None else [])]))
    schema = StructType([frame.schema[c] for c in keep] + [StructField(C.SCORE, DoubleType())])
    shared = frame.sparkSession.sparkContext.broadcast(items) if items is not None else None
    return frame.select(*cols).mapInArrow(_score_batches(ref, keep, shared), schema)


def score_and_rerank(
    frame: DataFrame,
    ref: ScorerRef,
    params: RerankParams,
    run_date: dt.date,
    items: pa.Table | None = None,
    scored: Accumulator[int] | None = None,
) -> DataFrame:
    """Each user's top-N list (``OUT_DDL`` rows) from the ranking frame in one pass: batches of
    whole users (the frame is partitioned by user, see :func:`ranking_frame`) are scored
    (:func:`score_candidates`' scorer, inputs and ``items``) and re-ranked
    (:func:`recpipe.scoring.rerank.rerank_table`) in the same Python call, so the scored
    candidates are neither shuffled again nor kept. ``scored`` (an int accumulator) counts the
    candidates scored; read it right after the first action (a recomputed or retried task
    adds its rows again)."""
    keep = [c for c in INPUT_COLUMNS if c != C.SCORE]
    inputs = [c for c in ref.inputs if c in frame.columns] if ref.inputs else frame.columns
    cols = list(dict.fromkeys([*keep, *inputs]))
    shared = frame.sparkSession.sparkContext.broadcast(items) if items is not None else None
    day = run_date.isoformat()

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = get_scorer(ref)  # once per worker process (module-level cache)
        table = shared.value if shared is not None else None
        index = pd.Index(table.column(C.ITEM_ID).to_numpy()) if table is not None else None
        matrices = _item_matrices(table)
        for rows in whole_groups_arrow(batches, C.USER_ID, SCORE_ROWS):
            s = _scores(scorer, ref, rows, index, table, matrices)
            if scored is not None:
                scored.add(rows.num_rows)
            scored_rows = rows.select(keep).append_column(C.SCORE, pa.array(np.round(s, SCORE_DECIMALS)))
            yield from rerank_table(scored_rows, params, day).to_batches()

    return frame.select(*cols).sortWithinPartitions(C.USER_ID).mapInArrow(fn, OUT_DDL)


# The position the model is asked about at serving: the lists are ranked as if every candidate
# were shown in the top slot (training positions are 0-based), so that the learned position bias
# is the same for all candidates instead of an unseen fractional "mean position".
SERVE_POSITION = 0


def attach_model_features(
    frame: DataFrame,
    lake: Lake,
    run_date: dt.date,
    windows_days: list[int] | None = None,
    as_of: dt.datetime | None = None,
    text_vectors: bool = True,
) -> DataFrame:
    """Join the point-in-time feature rows the model was trained on (``gold.user_features`` and
    ``gold.item_features`` at ``as_of_date = run_date``, both computed from events before it) and
    derive the model's input columns exactly as :func:`recpipe.examples.inputs.join_point_in_time`
    does for the training rows:

    - ``item_age_hours``: the item's age at the run's cut-off (the frame's ``age_hours``);
    - ``user_category_share``: the user's click share of the candidate's category;
    - ``user_hours_since_last_event`` / ``_click``: capped at ``max(windows) * 24``;
    - ``user_last_items``, ``item_text_vec``; missing feature rows -> zero counts / empty history;
    - ``device`` / ``country``: the user's latest ones before the cut-off (``unknown`` if none);
    - ``position``: :data:`SERVE_POSITION` for every candidate.

    Columns the ranking frame already has are kept from the frame. ``text_vectors=False`` leaves
    ``item_text_vec`` out: the scoring kernel adds it per batch from :func:`item_vector_table`.
    """

    from recpipe.features import build as B

    wins = sorted(windows_days or [1, 7, 28])
    for table, key in ((C.GOLD_USER_FEATURES, C.USER_ID), (C.GOLD_ITEM_FEATURES, C.ITEM_ID)):
        if not lake.exists(table):
            log.warning("%s does not exist: the model scores without those features", table)
            continue
        feats = lake.read(table).where(F.col(C.AS_OF_DATE) == F.lit(run_date))
        if feats.limit(1).count() == 0:
            log.warning(
                "%s has no rows as of %s: run `recpipe features --date %s` first", table, run_date, run_date
            )
        skip = {C.AS_OF_DATE, C.FEATURE_TS} | (set() if text_vectors else {B.TEXT_VEC, B.TEXT_TOKENS})
        cols = [c for c in feats.columns if c not in frame.columns and c not in skip]
        side = feats.select(key, *cols)
        # Item rows are few: broadcast, so the frame keeps its partitioning by user.
        frame = frame.join(F.broadcast(side) if key == C.ITEM_ID else side, key, "left")

    # The user's context (device, country) of their latest event before the cut-off.
    cutoff = as_of or dt.datetime.combine(run_date, dt.time())
    ctx_cols = [c for c in (C.DEVICE, C.COUNTRY) if c not in frame.columns]
    if ctx_cols and lake.exists(C.SILVER_EVENTS):
        ev = lake.read(C.SILVER_EVENTS).where(
            (F.col(C.EVENT_TS) < F.lit(cutoff)) & (F.col(C.EVENT_DATE) <= F.lit(run_date))
        )
        last = ev.groupBy(C.USER_ID).agg(
            F.max_by(F.struct(*[F.col(c) for c in ctx_cols]), F.col(C.EVENT_TS)).alias("_ctx")
        )
        frame = frame.join(
            last.select(C.USER_ID, *[F.col(f"_ctx.{c}").alias(c) for c in ctx_cols]), C.USER_ID, "left"
        )

    # Feature tables or rows that are missing become typed nulls; the model inputs are then
    # derived by the same function as the training rows (recpipe.examples.inputs).
    for c, t in E.raw_feature_types(wins).items():
        if c not in frame.columns:
            frame = frame.withColumn(c, F.lit(None).cast(t))
    derived = E.model_input_columns(wins, F.lit(0.0))  # features are as of the cut-off
    derived[C.POSITION] = F.lit(SERVE_POSITION).cast("int")
    if text_vectors:
        text = F.col(B.TEXT_VEC) if B.TEXT_VEC in frame.columns else F.lit(None).cast("array<float>")
        derived[E.ITEM_TEXT_VEC] = text  # null -> zeros in model.inputs, as in training
        words = F.col(B.TEXT_TOKENS) if B.TEXT_TOKENS in frame.columns else F.lit(None)
        derived[E.ITEM_TEXT_TOKENS] = words.cast("array<string>")  # null -> padding
    keep = [c for c in frame.columns if c not in derived]
    return frame.select(*keep, *[v.alias(k) for k, v in derived.items()])


def item_vector_table(lake: Lake, run_date: dt.date, allowed: DataFrame) -> pa.Table:
    """(item_id, item_text_vec, item_text_tokens) from ``gold.item_features`` as of ``run_date``
    of the ``allowed`` items and the users' recent items (``gold.user_features``' last items):
    the vectors :func:`attach_model_features` would join, collected once for
    :func:`score_candidates`' ``items``; items without a vector are absent (null -> zeros in
    ``model.inputs``, as with the join). 10^4 items x 256 floats are 10 MB."""
    from recpipe.features import build as B

    schema = pa.schema(
        [
            (C.ITEM_ID, pa.string()),
            (E.ITEM_TEXT_VEC, pa.list_(pa.float32())),
            (E.ITEM_TEXT_TOKENS, pa.list_(pa.string())),
        ]
    )
    names = lake.schema(C.GOLD_ITEM_FEATURES).fieldNames() if lake.exists(C.GOLD_ITEM_FEATURES) else []
    if B.TEXT_VEC not in names:
        return schema.empty_table()
    feats = lake.read(C.GOLD_ITEM_FEATURES).where(F.col(C.AS_OF_DATE) == F.lit(run_date))
    words = F.col(B.TEXT_TOKENS) if B.TEXT_TOKENS in names else F.lit(None)
    # The candidates' vectors, and those of the users' recent items (the text affinity's centroid;
    # many of them are no longer allowed).
    wanted = allowed.select(C.ITEM_ID)
    if lake.exists(C.GOLD_USER_FEATURES):
        users = lake.read(C.GOLD_USER_FEATURES).where(F.col(C.AS_OF_DATE) == F.lit(run_date))
        wanted = wanted.union(users.select(F.explode(B.LAST_ITEMS).alias(C.ITEM_ID))).distinct()
    rows = (
        feats.join(wanted, C.ITEM_ID, "left_semi")
        .where(F.col(B.TEXT_VEC).isNotNull())
        .select(
            C.ITEM_ID,
            F.col(B.TEXT_VEC).cast("array<float>").alias(E.ITEM_TEXT_VEC),
            words.cast("array<string>").alias(E.ITEM_TEXT_TOKENS),
        )
        .dropDuplicates([C.ITEM_ID])
        .toArrow()
    )
    return rows.cast(schema)
