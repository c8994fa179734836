"""Features + examples end-to-end on the shared synthetic lake (20k events, 14 days)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.features import examples as E
from recpipe.features.baselines import examples_to_pandas, logreg_vs_popularity
from recpipe.features.build import run_features
from recpipe.features.leakage import LeakageError

pytestmark = pytest.mark.integration

START, END = dt.date(2026, 10, 1), dt.date(2026, 10, 14)


@pytest.fixture(scope="module")
def built(spark, synthetic_lake):
    """Examples over the fixture's whole range (and the feature partitions they need)."""
    cfg, lake, _, _ = synthetic_lake
    summary = E.run_examples(cfg, spark, START, END, lake=lake)
    return cfg, lake, summary


def test_examples_build_splits_spec_and_quality(built):
    cfg, lake, summary = built
    # then: every split non-empty, one example per impression, spec beside the table
    assert set(summary["table_split_counts"]) == set(C.SPLITS)
    assert all(n > 0 for n in summary["table_split_counts"].values())
    assert summary["leakage"]["leaking_examples"] == 0
    assert summary["quality"]["success"]
    ex = lake.read(C.GOLD_TRAINING_EXAMPLES)
    assert ex.count() == ex.select(C.EXAMPLE_ID).distinct().count() == summary["examples"]
    assert ex.where(F.col(C.FEATURE_TS) >= F.col(C.EVENT_TS)).count() == 0
    spec = E.read_spec(lake)
    assert spec.metadata["examples_table_version"] == lake.version(C.GOLD_TRAINING_EXAMPLES)
    assert set(spec.columns) <= set(ex.columns)
    assert spec.vectors[0].dim == cfg.features.text_features
    assert spec.sequences[0].max_len == cfg.features.last_k_items
    assert all(f.std > 0 for f in spec.dense)
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
    assert {r[0] for r in dq.select("suite").distinct().collect()} == {
        "training_examples",
        "item_features",
        "user_features",
    }
    # feature tables hold one partition per example date
    dates = {r[0] for r in lake.read(C.GOLD_ITEM_FEATURES).select(C.AS_OF_DATE).distinct().collect()}
    assert {d.isoformat() for d in dates} >= set(summary["as_of_dates"])


def test_rerun_is_idempotent(spark, built):
    cfg, lake, _ = built
    tables = [C.GOLD_ITEM_FEATURES, C.GOLD_USER_FEATURES, C.GOLD_TRAINING_EXAMPLES]
    before = {t: lake.version(t) for t in tables}
    # when: the same range again on unchanged inputs
    again = E.run_examples(cfg, spark, START, END, lake=lake)
    # then: nothing committed, every table version unchanged
    assert again["skipped"]
    assert {t: lake.version(t) for t in tables} == before


def test_run_features_single_date_and_rerun(spark, built):
    cfg, lake, _ = built
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
    cfg, lake, _ = built
    version = lake.version(C.GOLD_TRAINING_EXAMPLES)
    real = E.build_feature_frames

    def leaky(cfg, events, items, dates):
        # features computed with a cutoff one day later, labelled with the earlier date
        later = [d + dt.timedelta(days=1) for d in dates]
        item_df, user_df = real(cfg, events, items, later)
        shift = F.date_sub(F.col(C.AS_OF_DATE), 1).alias(C.AS_OF_DATE)
        return (
            item_df.select(*[shift if c == C.AS_OF_DATE else c for c in item_df.columns]),
            user_df.select(*[shift if c == C.AS_OF_DATE else c for c in user_df.columns]),
        )

    monkeypatch.setattr(E, "build_feature_frames", leaky)
    # a different range, so that the idempotency token does not skip the run
    cfg2 = dataclasses.replace(cfg, examples=dataclasses.replace(cfg.examples, attribution_window_minutes=29))
    with pytest.raises(
        LeakageError, match=r"\d+ training examples use features computed from events at or after"
    ):
        E.run_examples(cfg2, spark, dt.date(2026, 10, 5), dt.date(2026, 10, 6), lake=lake)
    assert lake.version(C.GOLD_TRAINING_EXAMPLES) == version


def test_logreg_beats_popularity(built):
    _, lake, _ = built
    res = logreg_vs_popularity(examples_to_pandas(lake.read(C.GOLD_TRAINING_EXAMPLES)))
    assert res["n_test"] > 0
    assert res["auc_logreg"] > res["auc_popularity"] + 0.02, res
