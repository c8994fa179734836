"""Training examples (``recpipe examples``): one row per logged impression, labelled, with
point-in-time features.

* Label: a non-history click on the same (user, item) within ``examples.attribution_window_minutes``
  after the impression, in the same request when both carry a ``request_id``.
* Click-only sources (``data.feedback``): each click is a positive and ``negatives_per_positive``
  items clicked on its day are drawn per positive, excluding the user's positives; the train
  split's by ``examples.negative_sampling`` (click-count weighted or uniform), validation's and
  test's uniformly (so reported AUCs do not reward popularity); ``sampled`` marks drawn rows.
* Point in time: an example at time t joins the feature rows with ``as_of_date = date(t)``,
  computed from events strictly before 00:00 UTC of that day. The examples read those rows from
  ``gold.item_features`` / ``gold.user_features`` (written by the features stage,
  :func:`recpipe.features.build.run_features` with a ``start``; the examples never write them),
  so training sees exactly the features serving reads; :mod:`recpipe.features.leakage` then
  proves that no example's ``feature_ts`` reaches its ``event_ts`` before anything is written.
* Split by time: train < ``validation_start`` <= validation < ``test_start`` <= test.

``gold.training_examples`` is partitioned by ``event_date``; a run overwrites the dates of its
range and is idempotent (a rerun on unchanged inputs commits nothing). The feature spec is written
to ``<table path>/_feature_spec.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe import quality
from recpipe.config import Config
from recpipe.events.feedback import CLICKS_ONLY, IMPRESSIONS, Feedback, is_clicks_only, with_feedback
from recpipe.examples.inputs import (
    CATEGORICAL,
    ITEM_AGE_HOURS,
    ITEM_TEXT_TOKENS,
    ITEM_TEXT_VEC,
    USER_CATEGORY_CTR,
    USER_CATEGORY_IMPRESSIONS,
    USER_CATEGORY_SHARE,
    USER_HOURS_SINCE_CATEGORY_CLICK,
    USER_LAST_ITEMS,
    USER_TEXT_AFFINITY,
    add_text_vectors,
    dense_columns,
    dense_transforms,
    join_point_in_time,
)
from recpipe.examples.labels import (
    assign_split,
    click_only_examples,
    label_impressions,
)
from recpipe.features import build as B
from recpipe.features.leakage import check_leakage
from recpipe.features.spec import (
    CategoricalFeature,
    DenseFeature,
    FeatureSpec,
    HashedFeature,
    SequenceFeature,
    TokenFeature,
    VectorFeature,
)
from recpipe.features.text import with_text_affinity
from recpipe.frames import one_row
from recpipe.guard import guard_partition_replace
from recpipe.lake import CommitResult, Lake, Txn, open_lake
from recpipe.model import artifact


def example_checks(
    windows: list[int], splits: list[str], label_bounds: tuple[float, float] = (0.001, 0.5)
) -> list[quality.Check]:
    wins = sorted(windows)
    ic = B.item_window_cols(wins)
    uc = B.user_window_cols(wins)
    Q = quality.Check
    checks = [
        Q("ExpectColumnValuesToNotBeNull", {"column": c})
        for c in (C.EXAMPLE_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TS, C.LABEL, C.SPLIT, C.AS_OF_DATE)
    ]
    checks += [
        Q("ExpectColumnValuesToBeUnique", {"column": C.EXAMPLE_ID}),
        Q("ExpectColumnValuesToBeInSet", {"column": C.LABEL, "value_set": [0, 1]}),
        Q(
            "ExpectColumnMeanToBeBetween",
            {"column": C.LABEL, "min_value": label_bounds[0], "max_value": label_bounds[1]},
        ),
        Q("ExpectColumnValuesToBeInSet", {"column": C.SPLIT, "value_set": C.SPLITS}),
        Q("ExpectColumnDistinctValuesToContainSet", {"column": C.SPLIT, "value_set": splits}),
    ]
    checks += [
        Q("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0})
        for c in ic["impressions"]
        + ic["clicks"]
        + uc["impressions"]
        + uc["clicks"]
        + uc["reads"]
        + [ITEM_AGE_HOURS, USER_CATEGORY_IMPRESSIONS, USER_HOURS_SINCE_CATEGORY_CLICK]
    ]
    checks += [
        Q("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "max_value": 1})
        for c in ic["ctr"] + [USER_CATEGORY_SHARE, USER_CATEGORY_CTR]
    ]
    return checks


def expected_splits(cfg: Config, start: dt.date, end: dt.date) -> list[str]:
    """The splits whose time range overlaps ``[start, end]`` (each must be non-empty)."""
    v = cfg.examples.validation_start
    t = cfg.examples.test_start
    out = []
    if start < v:
        out.append("train")
    if start < t and end >= v:
        out.append("validation")
    if end >= t:
        out.append("test")
    return out


# -- feature spec ------------------------------------------------------------------------------------
def build_spec(cfg: Config, examples: DataFrame, version: int | None, extra: dict[str, Any]) -> FeatureSpec:
    """The spec of the examples table: vocabularies and dense stats from its train split."""
    fc = cfg.features
    train = examples.where(F.col(C.SPLIT) == "train")
    if train.limit(1).count() == 0:
        train = examples
    dense = dense_columns(cfg.features.windows_days)
    transforms = dense_transforms(cfg.features.windows_days)

    def value(c: str) -> Column:  # the value the model standardizes (see DenseFeature.transform)
        x = F.col(c).cast("double")
        return F.log1p(F.greatest(x, F.lit(0.0))) if transforms[c] == "log1p" else x

    row = one_row(
        train.agg(
            *[F.mean(value(c)).alias(f"m_{c}") for c in dense],
            *[F.stddev_pop(value(c)).alias(f"s_{c}") for c in dense],
            *[F.sort_array(F.collect_set(c)).alias(f"v_{c}") for c in CATEGORICAL],
        )
    )

    def num(v: Any, default: float) -> float:
        return float(v) if v is not None else default

    return FeatureSpec(
        label=C.LABEL,
        hashed=[
            HashedFeature(C.USER_ID, cfg.examples.hash_buckets_user),
            HashedFeature(C.ITEM_ID, cfg.examples.hash_buckets_item),
        ],
        categorical=[CategoricalFeature(c, list(row[f"v_{c}"] or [])) for c in CATEGORICAL],
        dense=[
            DenseFeature(c, num(row[f"m_{c}"], 0.0), num(row[f"s_{c}"], 1.0) or 1.0, transforms[c])
            for c in dense
        ],
        vectors=[VectorFeature(ITEM_TEXT_VEC, cfg.features.text_features)],
        sequences=[SequenceFeature(USER_LAST_ITEMS, cfg.features.last_k_items, C.ITEM_ID)],
        tokens=[TokenFeature(ITEM_TEXT_TOKENS, fc.text_token_buckets, fc.text_tokens)]
        if fc.text_tokens
        else [],
        metadata={
            "examples_table": C.GOLD_TRAINING_EXAMPLES,
            "examples_table_version": version,
            "null_position": "position is null for sampled negatives; fill with the mean",
            "features": dataclasses.asdict(cfg.features),
            "examples": dataclasses.asdict(cfg.examples),
            **extra,
        },
    )


# -- job ---------------------------------------------------------------------------------------------
_SUMMARY_TABLES = (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES, C.GOLD_TRAINING_EXAMPLES)


def _table_versions(lake: Lake) -> dict[str, int | None]:
    """The current versions of the feature and examples tables (for the job summary)."""
    return {t: lake.version(t) for t in _SUMMARY_TABLES}


def _with_feedback_kind(cfg: Config, lake: Lake, click_only: bool | None) -> Config:
    """``cfg`` with ``data.feedback`` overridden by ``click_only`` (if given), then resolved."""
    if click_only is not None:
        kind: Feedback = CLICKS_ONLY if click_only else IMPRESSIONS
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, feedback=kind))
    return with_feedback(cfg, lake)


def _run_identity(
    cfg: Config, lake: Lake, start: dt.date, end: dt.date, click_only: bool
) -> tuple[Txn, str, dict[str, Any]]:
    """The examples write's transaction token (from the inputs' fingerprint), the run id and the
    head of the job summary."""
    features = {t: lake.version(t) for t in (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES)}
    fp = B.inputs_fingerprint(cfg, lake, start, end, click_only, dataclasses.asdict(cfg.examples), features)
    txn = Txn(f"recpipe.examples/{start.isoformat()}_{end.isoformat()}/{fp}", 1)
    run_id = f"examples/{start.isoformat()}_{end.isoformat()}/{uuid.uuid4().hex[:8]}"
    summary: dict[str, Any] = {
        "job": "examples",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "run_id": run_id,
        "fingerprint": fp,
    }
    return txn, run_id, summary


def _read_range_events(cfg: Config, lake: Lake, start: dt.date, end: dt.date) -> DataFrame:
    """Raw events from the feature lookback before ``start`` up to the end of the attribution
    window after ``end``."""
    lo = start - dt.timedelta(days=max(cfg.features.windows_days))
    hi_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time()) + dt.timedelta(
        minutes=cfg.examples.attribution_window_minutes
    )
    return lake.read(C.SILVER_EVENTS).where(
        (F.col(C.EVENT_DATE) >= F.lit(lo - dt.timedelta(days=1)))
        & (F.col(C.EVENT_DATE) <= F.lit(end + dt.timedelta(days=1)))
        & (F.col(C.EVENT_TS) >= F.lit(dt.datetime.combine(lo, dt.time())))
        & (F.col(C.EVENT_TS) <= F.lit(hi_ts))
    )


def _labelled_base(
    cfg: Config, events: DataFrame, start: dt.date, end: dt.date, click_only: bool
) -> tuple[DataFrame, dict[str, Any]]:
    """The labelled examples dated ``start..end`` (not persisted) and the summary's ``sampling``."""
    ec = cfg.examples
    in_range = (F.col(B.DAY) >= F.lit(start)) & (F.col(B.DAY) <= F.lit(end))
    if click_only:
        base = click_only_examples(events.where(in_range), cfg)
        sampling: dict[str, Any] = {
            "click_only": True,
            "negatives_per_positive": ec.negatives_per_positive,
            "train_negatives": ec.negative_sampling,
            "validation_test_negatives": "uniform",
            "pool": "items clicked on the same day",
            "excludes": "the user's positives",
            "seed": cfg.train.seed,
        }
    else:
        base = label_impressions(events, ec.attribution_window_minutes).where(in_range)
        sampling = {"click_only": False}
    return base, sampling


def _join_and_split(cfg: Config, base: DataFrame, item_df: DataFrame, user_df: DataFrame) -> DataFrame:
    """Point-in-time join of ``base`` with the feature frames, plus the split column (not persisted)."""
    ec = cfg.examples
    return join_point_in_time(base, item_df.drop(B.TEXT_VEC), user_df, cfg.features.windows_days).withColumn(
        C.SPLIT,
        assign_split(
            F.col(C.EVENT_TS),
            ec.validation_start,
            ec.test_start,
        ),
    )


def _quality_gate(
    cfg: Config, lake: Lake, joined: DataFrame, start: dt.date, end: dt.date, run_id: str
) -> dict[str, Any]:
    """Validate and record the examples' quality suite; raise on a critical failure when configured.
    Returns the report's summary."""
    report = quality.validate(
        joined.drop(USER_LAST_ITEMS),
        "training_examples",
        example_checks(cfg.features.windows_days, expected_splits(cfg, start, end)),
        C.GOLD_TRAINING_EXAMPLES,
        lake.version(C.GOLD_TRAINING_EXAMPLES),
    )
    quality.record(lake, report, run_id=run_id)
    summary = report.summary()
    if cfg.quality.fail_on_critical:
        report.raise_if_failed()
    return summary


def _spec_and_stats(
    cfg: Config, lake: Lake, joined: DataFrame, run_id: str, sampling: dict[str, Any]
) -> tuple[dict[Any, Any], dict[Any, Any], str]:
    """From the written table: its split counts, the run's label rate per split, and the path of
    the feature spec built from the table and written."""
    version = lake.version(C.GOLD_TRAINING_EXAMPLES)
    table = lake.read(C.GOLD_TRAINING_EXAMPLES, version)
    counts = {r[0]: r[1] for r in table.groupBy(C.SPLIT).count().collect()}
    label_rate = {r[0]: r[1] for r in joined.groupBy(C.SPLIT).agg(F.mean(C.LABEL)).collect()}
    spec = build_spec(cfg, table.drop(ITEM_TEXT_VEC), version, {"run_id": run_id, "sampling": sampling})
    return counts, label_rate, artifact.write_spec(lake.path(C.GOLD_TRAINING_EXAMPLES), spec)


def _load_inputs(
    cfg: Config, lake: Lake, start: dt.date, end: dt.date, click_only: bool
) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """Step 1: the prepared events and the labelled examples (both persisted; the caller
    unpersists them) and the summary's ``sampling``."""
    raw = _read_range_events(cfg, lake, start, end)
    events = B.prepare_events(raw).persist(StorageLevel.MEMORY_AND_DISK)
    base, sampling = _labelled_base(cfg, events, start, end, click_only)
    return events, base.persist(StorageLevel.MEMORY_AND_DISK), sampling


class MissingFeaturesError(ValueError):
    """The feature tables lack a date the examples need (the features stage has not built it)."""


def read_feature_frames(lake: Lake, dates: list[dt.date]) -> tuple[DataFrame, DataFrame]:
    """The stored ``gold.item_features`` and ``gold.user_features`` rows as of ``dates`` (a module
    attribute so that tests can plant a leak)."""
    out = []
    for table in (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES):
        if not lake.exists(table):
            raise MissingFeaturesError(
                f"examples: {table} does not exist; build the features first: recpipe features "
                f"--start {dates[0]} --date {dates[-1]}"
            )
        out.append(lake.read(table).where(F.col(C.AS_OF_DATE).isin(dates)))
    return out[0], out[1]


def _check_feature_dates(
    item_df: DataFrame, user_df: DataFrame, dates: list[dt.date], first_event: dt.date
) -> None:
    """Raise :class:`MissingFeaturesError` naming the dates of ``dates`` after the first event
    date that neither feature table holds (the first date has no events before it: no rows)."""
    have = {
        r[0] for r in item_df.select(C.AS_OF_DATE).union(user_df.select(C.AS_OF_DATE)).distinct().collect()
    }
    missing = [d for d in dates if d > first_event and d not in have]
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MissingFeaturesError(
            f"examples: gold.item_features and gold.user_features have no rows as of {shown} "
            f"({len(missing)} of the {len(dates)} dates the examples need); build them first: "
            f"recpipe features --start {missing[0]} --date {missing[-1]}"
        )


def _features_and_join(
    cfg: Config, lake: Lake, events: DataFrame, base: DataFrame, dates: list[dt.date]
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """Step 2: the stored item and user feature rows of ``dates`` (persisted; MissingFeaturesError
    when the features stage has not built a date), the items' text vectors and the point-in-time
    joined, split examples (persisted; the caller unpersists)."""
    item_df, user_df = read_feature_frames(lake, dates)
    item_df = item_df.persist(StorageLevel.MEMORY_AND_DISK)
    user_df = user_df.persist(StorageLevel.MEMORY_AND_DISK)
    first_event = events.agg(F.min(B.DAY)).first()
    _check_feature_dates(
        item_df, user_df, dates, first_event[0] if first_event and first_event[0] else dates[0]
    )
    # A table written before the words existed has no text_tokens column: null words (no tokens).
    words = F.col(B.TEXT_TOKENS) if B.TEXT_TOKENS in item_df.columns else F.lit(None)
    text = [B.TEXT_VEC, words.cast("array<string>").alias(B.TEXT_TOKENS)]
    vectors = item_df.select(C.ITEM_ID, *text).dropDuplicates([C.ITEM_ID])
    joined = _join_and_split(cfg, base, item_df, user_df).persist(StorageLevel.MEMORY_AND_DISK)
    return item_df, user_df, vectors, joined


def _guard_examples(cfg: Config, lake: Lake, joined: DataFrame, day_list: list[dt.date], force: bool) -> None:
    """Refuse (:mod:`recpipe.guard`) an empty result or one that shrinks a stored partition of the
    range by more than ``lake.max_drop_share``, unless ``force``."""
    guard_partition_replace(
        lake,
        C.GOLD_TRAINING_EXAMPLES,
        joined,
        C.EVENT_DATE,
        day_list,
        max_drop_share=cfg.lake.max_drop_share,
        setting="lake.max_drop_share",
        force=force,
    )


def _write_examples(
    cfg: Config, lake: Lake, joined: DataFrame, vectors: DataFrame, day_list: list[dt.date], txn: Txn
) -> CommitResult:
    """Step 4: overwrite the range's partitions of the examples table (with the text vectors)."""
    out = add_text_vectors(joined, vectors, cfg.features.text_features, tokens=cfg.features.text_tokens > 0)
    out = with_text_affinity(out, vectors, USER_LAST_ITEMS, [C.USER_ID, C.AS_OF_DATE], USER_TEXT_AFFINITY)
    return lake.overwrite(
        C.GOLD_TRAINING_EXAMPLES,
        out,
        partition_by=[C.EVENT_DATE],
        partitions={C.EVENT_DATE: day_list},
        txn=txn,
        add_columns=True,  # an older table without a newer feature column (item_trend)
    )


def run_examples(
    cfg: Config,
    spark: SparkSession,
    start: dt.date,
    end: dt.date,
    lake: Lake | None = None,
    click_only: bool | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build ``gold.training_examples`` for impressions dated ``start..end`` (inclusive).

    Nothing is written when the examples are empty or an examples partition would lose more than
    ``lake.max_drop_share`` of its stored rows, unless ``force`` (:mod:`recpipe.guard`). Reads the
    point-in-time features of every impression date from the feature tables (never writes them:
    :class:`MissingFeaturesError` names the dates the features stage has not built), runs the
    quality suite and the leakage check (either failing stops the job before the examples are
    written), and writes the feature spec. ``click_only`` overrides ``data.feedback`` (``None``:
    the configured kind, or the detected one when it is ``auto``).
    """
    if end < start:
        raise ValueError(f"examples: end {end} is before start {start}")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    lake = lake or open_lake(cfg, spark)
    cfg = _with_feedback_kind(cfg, lake, click_only)
    click_only = is_clicks_only(cfg)
    txn, run_id, summary = _run_identity(cfg, lake, start, end, click_only)
    if lake.txn_version(C.GOLD_TRAINING_EXAMPLES, txn.app_id):
        summary["skipped"] = "already built from these inputs"
        summary["table_versions"] = _table_versions(lake)
        return summary

    # 1. inputs: events from the feature lookback before `start` up to the end of the attribution window.
    t0 = time.perf_counter()
    events, base, summary["sampling"] = _load_inputs(cfg, lake, start, end, click_only)
    dates = sorted(r[0] for r in base.select(B.DAY).distinct().collect())
    timings["label_s"] = time.perf_counter() - t0
    if not dates:
        raise ValueError(
            f"examples: no {'clicks' if click_only else 'impressions'} between {start} and {end}"
        )

    # 2. the stored features of every needed date, point-in-time join, split, leakage check.
    t0 = time.perf_counter()
    item_df, user_df, vectors, joined = _features_and_join(cfg, lake, events, base, dates)
    n_examples = joined.count()
    timings["features_join_s"] = time.perf_counter() - t0
    summary["leakage"] = check_leakage(joined)

    # 3. quality gate, then the guard on the partitions the write replaces.
    t0 = time.perf_counter()
    summary["quality"] = _quality_gate(cfg, lake, joined, start, end, run_id)
    day_list = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    _guard_examples(cfg, lake, joined, day_list, force)
    timings["quality_s"] = time.perf_counter() - t0

    # 4. write the range's partitions, then the spec from the table's train split.
    t0 = time.perf_counter()
    res = _write_examples(cfg, lake, joined, vectors, day_list, txn)
    timings["write_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts, label_rate, summary["spec_path"] = _spec_and_stats(cfg, lake, joined, run_id, summary["sampling"])
    timings["spec_s"] = time.perf_counter() - t0
    for df in (events, base, item_df, user_df, joined):
        df.unpersist()
    summary.update(
        {
            "examples": n_examples,
            "rows_written": res.rows_written,
            "as_of_dates": [d.isoformat() for d in dates],
            "table_split_counts": counts,
            "run_label_rate": {k: round(v, 5) for k, v in label_rate.items()},
            "table_versions": _table_versions(lake),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "duration_s": round(time.perf_counter() - t_start, 3),
        }
    )
    return summary


def default_range(lake: Lake, until: dt.date | None) -> tuple[dt.date, dt.date]:
    """The whole event range of ``silver.events`` up to ``until`` (inclusive)."""
    row = (
        lake.read(C.SILVER_EVENTS)
        .where(~F.coalesce(F.col(C.IS_HISTORY), F.lit(False)))
        .agg(F.min(C.EVENT_DATE), F.max(C.EVENT_DATE))
        .first()
    )
    if row is None or row[0] is None:
        raise ValueError("examples: silver.events is empty")
    end = row[1] if until is None else min(row[1], until)
    return row[0], end
