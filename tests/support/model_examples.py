"""Small synthetic training examples + feature spec with a known click model (tests, benchmarks).

Independent of ``recpipe.examples``: it only follows the examples contract (one row per
impression, the spec's columns, the label, ``split`` in train/validation/test, ``p_click_true``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recpipe.features.spec import (
    CategoricalFeature,
    DenseFeature,
    FeatureSpec,
    HashedFeature,
    SequenceFeature,
    VectorFeature,
)

CATEGORIES = ["news", "sports", "music", "tech", "film", "food", "travel", "games"]
DEVICES = ["mobile", "desktop", "tablet"]


def synthetic_spec(text_dim: int = 8, last_k: int = 5) -> FeatureSpec:
    return FeatureSpec(
        label="label",
        hashed=[HashedFeature("user_id", 1_000, 8), HashedFeature("item_id", 2_000, 8)],
        categorical=[
            CategoricalFeature("category", CATEGORIES, 4),
            CategoricalFeature("device", DEVICES, 2),
        ],
        dense=[DenseFeature("item_ctr", 0.2, 0.1), DenseFeature("position", 3.0, 2.0)],
        vectors=[VectorFeature("text_vec", text_dim)],
        sequences=[SequenceFeature("last_items", last_k, "item_id")],
        metadata={"source": "tests.support.model_examples"},
    )


def synthetic_examples(
    rows: int = 4_000, seed: int = 0, users: int = 200, items: int = 300, text_dim: int = 8, last_k: int = 5
) -> pd.DataFrame:
    """Impressions whose click probability depends on user taste x item category, item quality,
    position and history; columns match :func:`synthetic_spec` plus ``request_id``, ``p_click_true``,
    ``split`` (70/15/15 by time order)."""
    rng = np.random.default_rng(seed)
    item_cat = rng.integers(0, len(CATEGORIES), items)
    item_quality = rng.normal(0, 0.8, items)
    user_taste = rng.integers(0, len(CATEGORIES), users)
    cat_vec = rng.normal(0, 1, (len(CATEGORIES), text_dim))

    u = rng.integers(0, users, rows)
    i = rng.integers(0, items, rows)
    pos = rng.integers(1, 8, rows)
    match = (item_cat[i] == user_taste[u]).astype(float)
    logit = -1.8 + 2.0 * match + item_quality[i] - 0.15 * (pos - 1)
    p = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(rows) < p).astype(np.int32)

    hist_len = rng.integers(0, last_k + 3, rows)
    taste_items = [np.nonzero(item_cat == c)[0] for c in range(len(CATEGORIES))]
    last_items = []
    for r in range(rows):
        pool = taste_items[user_taste[u[r]]]
        hist = rng.choice(pool if len(pool) else np.arange(items), hist_len[r])
        last_items.append([f"I{x:05d}" for x in hist])
    text = cat_vec[item_cat[i]] + rng.normal(0, 0.3, (rows, text_dim))
    n_train, n_val = int(rows * 0.7), int(rows * 0.15)
    split = np.array(["train"] * n_train + ["validation"] * n_val + ["test"] * (rows - n_train - n_val))
    return pd.DataFrame(
        {
            "request_id": [f"R{r // 5:07d}" for r in range(rows)],
            "user_id": [f"U{x:05d}" for x in u],
            "item_id": [f"I{x:05d}" for x in i],
            "category": [CATEGORIES[c] for c in item_cat[i]],
            "device": rng.choice(DEVICES, rows),
            "item_ctr": np.clip(0.2 + 0.08 * item_quality[i] + rng.normal(0, 0.03, rows), 0, 1),
            "position": pos.astype(np.int32),
            "text_vec": [row.astype(np.float32).tolist() for row in text],
            "last_items": last_items,
            "label": label,
            "p_click_true": p,
            "split": split,
        }
    )


def write_examples(spark, lake, df: pd.DataFrame, spec: FeatureSpec, table: str = "gold.training_examples"):
    """Append ``df`` to ``table`` (partitioned by split) and write ``_feature_spec.json`` beside it."""
    from pyspark.sql.types import (
        ArrayType,
        DoubleType,
        FloatType,
        IntegerType,
        StringType,
        StructField,
        StructType,
    )

    from recpipe.model.artifact import write_spec

    schema = StructType(
        [
            StructField("request_id", StringType()),
            StructField("user_id", StringType()),
            StructField("item_id", StringType()),
            StructField("category", StringType()),
            StructField("device", StringType()),
            StructField("item_ctr", DoubleType()),
            StructField("position", IntegerType()),
            StructField("text_vec", ArrayType(FloatType())),
            StructField("last_items", ArrayType(StringType())),
            StructField("label", IntegerType()),
            StructField("p_click_true", DoubleType()),
            StructField("split", StringType()),
        ]
    )
    sdf = spark.createDataFrame(df[[f.name for f in schema.fields]], schema=schema)
    result = lake.append(table, sdf, partition_by=["split"])
    write_spec(lake.path(table), spec)
    return result
