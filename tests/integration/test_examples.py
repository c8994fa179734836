"""Features + examples end-to-end on the shared synthetic lake (20k events, 14 days)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.config import replace
from recpipe.evaluation.baselines import examples_to_pandas, logreg_vs_popularity
from recpipe.examples import build as E
from recpipe.features.build import run_features
from recpipe.features.leakage import LeakageError
from recpipe.guard import DestructiveWriteError
from recpipe.model import artifact

pytestmark = pytest.mark.integration

START, END = dt.date(2026, 10, 1), dt.date(2026, 10, 14)


@pytest.fixture(scope="module")
def built(spark, synthetic_lake):
    """The feature partitions of the fixture's whole range (the features stage), then the
    examples over it (which read them)."""
    cfg, lake, _, _ = synthetic_lake
    features = run_features(cfg, spark, END, lake=lake, start=START)
    summary = E.run_examples(cfg, spark, START, END, lake=lake)
    return cfg, lake, summary, features


def test_examples_build_splits_spec_and_quality(built):
    cfg, lake, summary, features = built
    # then: every split non-empty, one example per impression, spec beside the table
    assert set(summary["table_split_counts"]) == set(C.SPLITS)
    assert all(n > 0 for n in summary["table_split_counts"].values())
    assert summary["leakage"]["leaking_examples"] == 0
    assert summary["quality"]["success"]
    ex = lake.read(C.GOLD_TRAINING_EXAMPLES)
    assert ex.count() == ex.select(C.EXAMPLE_ID).distinct().count() == summary["examples"]
    assert ex.where(F.col(C.FEATURE_TS) >= F.col(C.EVENT_TS)).count() == 0
    spec = artifact.read_spec(lake.path(C.GOLD_TRAINING_EXAMPLES))
    assert spec.metadata["examples_table_version"] == lake.version(C.GOLD_TRAINING_EXAMPLES)
    assert set(spec.columns) <= set(ex.columns)
    assert spec.vectors[0].dim == cfg.features.text_features
    assert spec.sequences[0].max_len == cfg.features.last_k_items
    assert all(f.std > 0 for f in spec.dense)
    # the item's words: the feature table's tokens of the item, a learned-embedding input
    (tok,) = spec.tokens
    assert (tok.name, tok.max_len, tok.buckets) == (
        "item_text_tokens",
        cfg.features.text_tokens,
        cfg.features.text_token_buckets,
    )
    stored = lake.read(C.GOLD_ITEM_FEATURES).select(C.ITEM_ID, F.col("text_tokens").alias("_t"))
    pairs = ex.select(C.ITEM_ID, tok.name).distinct().join(stored.distinct(), C.ITEM_ID)
    assert pairs.count() > 0 and pairs.where(F.col(tok.name) != F.col("_t")).count() == 0
    assert ex.where(F.size(tok.name) > 0).count() > 0.9 * ex.count()
    # the text affinity: the cosine of the item's vector to the centroid of the user's recent
    # items' vectors, recomputed here with numpy for examples with a history
    import numpy as np

    vec = {r[0]: np.asarray(r[1], float) for r in ex.select(C.ITEM_ID, "item_text_vec").distinct().collect()}
    vec.update(
        {
            r[0]: np.asarray(r[1], float)
            for r in lake.read(C.GOLD_ITEM_FEATURES).select(C.ITEM_ID, "text_vec").collect()
        }
    )
    unit = {k: v / np.linalg.norm(v) for k, v in vec.items() if np.linalg.norm(v) > 0}
    rows = ex.where(F.size("user_last_items") > 2).select(C.ITEM_ID, "user_last_items", "user_text_affinity")
    checked = 0
    for item, hist, got in rows.limit(50).collect():
        known = [unit[h] for h in hist if h in unit]
        centroid = np.sum(known, axis=0) if known else None
        want = (
            0.0
            if centroid is None or item not in unit
            else float(unit[item] @ centroid / np.linalg.norm(centroid))
        )
        assert got == pytest.approx(want, abs=1e-5), (item, hist)
        checked += 1
    assert checked == 50 and "user_text_affinity" in {f.name for f in spec.dense}
    assert ex.agg(F.min("user_text_affinity"), F.max("user_text_affinity")).first()[1] > 0
    # counts are log1p-transformed in the model; their stats are those of the transformed train values
    dense = {f.name: f for f in spec.dense}
    assert dense["item_impressions_7d"].transform == "log1p" and dense["item_ctr_7d"].transform == "none"
    train = ex.where(F.col(C.SPLIT) == "train")
    want = train.agg(
        F.avg(F.log1p("item_impressions_7d")), F.stddev_pop(F.log1p("item_impressions_7d"))
    ).first()
    assert dense["item_impressions_7d"].mean == pytest.approx(want[0])
    assert dense["item_impressions_7d"].std == pytest.approx(want[1])
    # quality results recorded for the examples and both feature tables
    dq = lake.read(C.OPS_DATA_QUALITY).where(F.col("run_id") == summary["run_id"])
    assert {r[0] for r in dq.select("suite").distinct().collect()} == {"training_examples"}
    # the features stage wrote one partition per date of the range in one commit per table, and
    # recorded its suites; the examples read them and wrote neither feature table
    assert "features" not in summary
    dates = {r[0] for r in lake.read(C.GOLD_ITEM_FEATURES).select(C.AS_OF_DATE).distinct().collect()}
    assert {d.isoformat() for d in dates} >= set(summary["as_of_dates"])
    assert summary["table_versions"][C.GOLD_ITEM_FEATURES] == features["table_versions"][C.GOLD_ITEM_FEATURES]
    assert summary["table_versions"][C.GOLD_USER_FEATURES] == features["table_versions"][C.GOLD_USER_FEATURES]
    assert features["quality"][C.GOLD_USER_FEATURES]["success"]


def test_rerun_is_idempotent(spark, built):
    cfg, lake, _, _ = built
    tables = [C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES, C.GOLD_TRAINING_EXAMPLES]
    before = {t: lake.version(t) for t in tables}
    # when: the same range again on unchanged inputs
    again = E.run_examples(cfg, spark, START, END, lake=lake)
    # then: nothing committed, every table version unchanged
    assert again["skipped"]
    assert {t: lake.version(t) for t in tables} == before


def test_run_features_single_date_and_rerun(spark, built):
    cfg, lake, _, _ = built
    first = run_features(cfg, spark, dt.date(2026, 10, 15), lake=lake)
    assert first["items"] > 0 and first["users"] > 0
    assert first["quality"][C.GOLD_ITEM_FEATURES]["success"]
    v = {t: lake.version(t) for t in (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES)}
    second = run_features(cfg, spark, dt.date(2026, 10, 15), lake=lake)
    assert second["skipped"] and second["table_versions"] == v
    part = lake.read(C.GOLD_ITEM_FEATURES).where(F.col(C.AS_OF_DATE) == dt.date(2026, 10, 15))
    assert part.count() == first["items"]
    assert part.where(F.col(C.FEATURE_TS) >= F.lit(dt.datetime(2026, 10, 15))).count() == 0


def test_planted_leak_fails_the_job(spark, built, monkeypatch):
    cfg, lake, _, _ = built
    version = lake.version(C.GOLD_TRAINING_EXAMPLES)
    real = E.read_feature_frames

    def leaky(lake, dates):
        # the stored features of the day after, labelled with the earlier date
        later = [d + dt.timedelta(days=1) for d in dates]
        item_df, user_df = real(lake, later)
        shift = F.date_sub(F.col(C.AS_OF_DATE), 1).alias(C.AS_OF_DATE)
        return (
            item_df.select(*[shift if c == C.AS_OF_DATE else c for c in item_df.columns]),
            user_df.select(*[shift if c == C.AS_OF_DATE else c for c in user_df.columns]),
        )

    monkeypatch.setattr(E, "read_feature_frames", leaky)
    # a different range, so that the idempotency token does not skip the run
    cfg2 = dataclasses.replace(cfg, examples=dataclasses.replace(cfg.examples, attribution_window_minutes=29))
    with pytest.raises(
        LeakageError, match=r"\d+ training examples use features computed from events at or after"
    ):
        E.run_examples(cfg2, spark, dt.date(2026, 10, 5), dt.date(2026, 10, 6), lake=lake)
    assert lake.version(C.GOLD_TRAINING_EXAMPLES) == version


def test_logreg_beats_popularity(built):
    cfg, lake, _, _ = built
    examples = examples_to_pandas(lake.read(C.GOLD_TRAINING_EXAMPLES))
    res = logreg_vs_popularity(examples, prior_strength=cfg.features.ctr_prior_strength)
    assert res["n_test"] > 0
    assert res["auc_logreg"] > res["auc_popularity"] + 0.02, res


def _versions(lake):
    return {
        t: lake.version(t) for t in (C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES, C.GOLD_TRAINING_EXAMPLES)
    }


def test_features_refuse_an_empty_result(spark, built):
    """Issue 9: features as of a date without events in the lookback are empty; they are not
    written, not even with force, and no table changes."""
    cfg, lake, _, _ = built
    before = _versions(lake)
    for force in (False, True):
        with pytest.raises(DestructiveWriteError, match=r"gold\.(item|user)_features: the result is empty"):
            run_features(cfg, spark, dt.date(2026, 12, 31), lake=lake, force=force)
    assert _versions(lake) == before
    stored = lake.read(C.GOLD_USER_FEATURES).where(F.col(C.AS_OF_DATE) == dt.date(2026, 12, 31))
    assert stored.count() == 0


def test_a_shrinking_rebuild_is_refused_and_nothing_is_written(spark, built):
    """Issue 9: a setting that shrinks a stored partition (here 1-day instead of 28-day feature
    windows: only the users active on the day before) replaces nothing without --force; the
    examples and both feature tables keep their versions and rows."""
    cfg, lake, _, _ = built
    day = dt.date(2026, 10, 10)
    before = _versions(lake)
    users = lake.read(C.GOLD_USER_FEATURES).where(F.col(C.AS_OF_DATE) == day).count()
    one_day = replace(cfg, ["features.windows_days=[1]", "lake.max_drop_share=0.1"])
    with pytest.raises(
        DestructiveWriteError,
        match=r"gold\.(item|user)_features: rows of as_of_date=2026-10-10 fall from \d+ to \d+ .*"
        r"more than lake\.max_drop_share=0\.1; pass --force",
    ):
        run_features(one_day, spark, day, lake=lake)
    # click-only examples (clicks + 4 sampled negatives) are fewer than the impressions: refused
    # before any of the range's feature or example partitions is replaced
    with pytest.raises(
        DestructiveWriteError,
        match=r"gold\.training_examples: rows of event_date=2026-10-0[56] fall from \d+ to \d+",
    ):
        E.run_examples(
            replace(cfg, ["lake.max_drop_share=0.1"]),
            spark,
            dt.date(2026, 10, 5),
            dt.date(2026, 10, 6),
            lake=lake,
            click_only=True,
        )
    assert _versions(lake) == before
    assert lake.read(C.GOLD_USER_FEATURES).where(F.col(C.AS_OF_DATE) == day).count() == users


def test_examples_name_the_feature_dates_not_built(spark, built, monkeypatch):
    """The examples never write the feature tables: a range whose features the features stage
    has not built fails with the dates and the command that builds them, and writes nothing."""
    cfg, lake, _, _ = built
    before = _versions(lake)
    real = E.read_feature_frames

    def unbuilt(lake, dates):  # the tables as if the features stage had stopped at 10-12
        item_df, user_df = real(lake, dates)
        cut = F.col(C.AS_OF_DATE) < F.lit(dt.date(2026, 10, 13))
        return item_df.where(cut), user_df.where(cut)

    monkeypatch.setattr(E, "read_feature_frames", unbuilt)
    with pytest.raises(
        E.MissingFeaturesError,
        match=r"no rows as of 2026-10-13, 2026-10-14 \(2 of the 3 dates.*"
        r"build them first: recpipe features --start 2026-10-13 --date 2026-10-14",
    ):
        E.run_examples(cfg, spark, dt.date(2026, 10, 12), dt.date(2026, 10, 14), lake=lake)
    assert _versions(lake) == before
