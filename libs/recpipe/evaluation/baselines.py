"""The baselines a ranker has to beat, one definition each, for training and evaluation alike.

- **Popularity** (:func:`item_popularity`): the item's smoothed CTR on the train split,
  ``(clicks + s * r) / (examples + s)`` with ``s = features.ctr_prior_strength`` and ``r`` the
  train label rate (the rate ``r`` for an item unseen in train); for a click-only source (the
  test negatives are uniform draws of clicked items) the item's train click count (0 when unseen).
  ``model.train`` (the training summary), ``recpipe evaluate`` (the ranker metrics) and the
  logistic-regression sanity baseline all report :func:`popularity_auc` of this score.
- **Logistic regression** (:func:`logreg_vs_popularity`): a scikit-learn pipeline
  (standardized dense example features + one-hot category, device and position bucket) fitted on
  the train split; if it cannot beat popularity on the test split, the features or labels are broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recpipe import constants as C
from recpipe.config import FeaturesConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from sklearn.pipeline import Pipeline

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

DEFAULT_PRIOR_STRENGTH = FeaturesConfig().ctr_prior_strength  # the config's default, not a copy
ONE_HOT = ["category", "device", "position_bucket"]
MAX_LEVELS = 50  # one-hot levels kept per column (the first, sorted); others encode as all zeros
_DENSE_PREFIXES = (
    "item_impressions_",
    "item_clicks_",
    "item_ctr_",
    "user_impressions_",
    "user_clicks_",
    "user_reads_",
)
_DENSE_EXTRA = (
    "item_age_hours",
    "user_hours_since_last_event",
    "user_hours_since_last_click",
    "user_category_share",
    "user_category_impressions",
    "user_category_ctr",
    "user_hours_since_category_click",
)


@dataclass(frozen=True)
class ItemPopularity:
    """The popularity score per item id, and the score of an item not seen in train."""

    score: pd.Series
    unseen: float

    def of(self, item_ids: pd.Series) -> FloatArray:
        """The score of each item of ``item_ids``."""
        return np.asarray(item_ids.map(self.score).fillna(self.unseen), dtype=np.float64)


def item_popularity(
    clicks: pd.Series, examples: pd.Series, *, prior_strength: float, clicks_only: bool
) -> ItemPopularity:
    """The popularity score from per-item train-split aggregates (index: item id): ``clicks``
    the sum of the labels, ``examples`` the number of examples."""
    total = float(examples.sum())
    rate = float(clicks.sum()) / total if total else 0.0
    if clicks_only:
        return ItemPopularity(clicks.astype(float), 0.0)
    smoothed = (clicks.astype(float) + prior_strength * rate) / (examples.astype(float) + prior_strength)
    return ItemPopularity(smoothed, rate)


def item_popularity_of_rows(
    item_ids: pd.Series, labels: pd.Series, *, prior_strength: float, clicks_only: bool
) -> ItemPopularity:
    """:func:`item_popularity` of train-split rows (item id and label per example)."""
    g = labels.astype(float).groupby(item_ids.to_numpy()).agg(["sum", "count"])
    return item_popularity(g["sum"], g["count"], prior_strength=prior_strength, clicks_only=clicks_only)


def item_popularity_of_frame(
    train: DataFrame, *, prior_strength: float, clicks_only: bool, label: str = C.LABEL
) -> ItemPopularity:
    """:func:`item_popularity` of a Spark train split (aggregated per item in Spark)."""
    from pyspark.sql import functions as F

    agg: pd.DataFrame = (
        train.groupBy(C.ITEM_ID)
        .agg(F.sum(label).cast("double").alias("sum"), F.count("*").alias("count"))
        .toPandas()
    )
    g = agg.set_index(C.ITEM_ID)
    return item_popularity(g["sum"], g["count"], prior_strength=prior_strength, clicks_only=clicks_only)


def popularity_auc(labels: npt.ArrayLike, item_ids: pd.Series, popularity: ItemPopularity) -> float:
    """Test AUC of the popularity score (``labels`` and ``item_ids`` row by row)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels, dtype=np.float64), popularity.of(item_ids)))


def dense_feature_columns(df: pd.DataFrame) -> list[str]:
    """The dense example features the logistic regression uses: counts, CTRs, recency, shares."""
    cols = [c for c in df.columns if c.startswith(_DENSE_PREFIXES)]
    return cols + [c for c in _DENSE_EXTRA if c in df.columns]


def _prepared(examples_pdf: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The examples with the position bucket, dense features filled with 0 (counts and recency
    ``log1p``'d) and the one-hot columns as strings; and the dense feature columns."""
    df = examples_pdf.copy()
    df["position_bucket"] = df[C.POSITION].fillna(-1).clip(upper=9).astype(int).astype(str)
    dense = dense_feature_columns(df)
    for c in dense:
        df[c] = df[c].astype(float).fillna(0.0)
        if c.startswith(("item_impressions_", "item_clicks_", "user_")) and not c.endswith(("share", "ctr")):
            df[c] = np.log1p(df[c].clip(lower=0))
    for c in ONE_HOT:
        df[c] = df[c].astype(str)
    return df, dense


def logreg_pipeline(dense: list[str], levels: list[list[str]], seed: int = 0) -> Pipeline:
    """Standardized ``dense`` columns and the one-hot ``ONE_HOT`` columns (``levels`` per column,
    in that order; any other value encodes as all zeros) into an L2 logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = ColumnTransformer(
        [
            ("dense", StandardScaler(), dense),
            (
                "onehot",
                OneHotEncoder(categories=levels, handle_unknown="ignore", sparse_output=False),
                ONE_HOT,
            ),
        ],
        sparse_threshold=0.0,
    )
    return Pipeline(
        [("features", features), ("logreg", LogisticRegression(max_iter=1000, C=1.0, random_state=seed))]
    )


def logreg_vs_popularity(
    examples_pdf: pd.DataFrame,
    seed: int = 0,
    *,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    clicks_only: bool = False,
) -> dict[str, Any]:
    """Fit the logistic regression (:func:`logreg_pipeline`) on the train split of the examples
    (pandas, with the split, label, item id and feature columns); report the test AUC of it and of
    the popularity score (:func:`item_popularity` of the train split), and its validation AUC.

    Dense features: counts (log1p), CTRs, recency, category share, user-item category share,
    standardized with train statistics; one-hot: item category, device, position bucket.
    """
    df, dense = _prepared(examples_pdf)
    train = df[df[C.SPLIT] == "train"]
    test = df[df[C.SPLIT] == "test"]
    out: dict[str, Any] = {
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "train_label_rate": float(train[C.LABEL].mean()) if len(train) else None,
        "test_label_rate": float(test[C.LABEL].mean()) if len(test) else None,
        "features": dense + [f"onehot:{c}" for c in ONE_HOT],
    }
    if len(train) == 0 or len(test) == 0 or train[C.LABEL].nunique() < 2 or test[C.LABEL].nunique() < 2:
        out["error"] = "train and test splits need both labels"
        return out
    from sklearn.metrics import roc_auc_score

    levels = [sorted(train[c].unique().tolist())[:MAX_LEVELS] for c in ONE_HOT]
    model = logreg_pipeline(dense, levels, seed).fit(train, train[C.LABEL].to_numpy())
    val = df[df[C.SPLIT] == "validation"]
    if len(val) and val[C.LABEL].nunique() == 2:  # for choosing among models on validation
        pv = model.predict_proba(val)[:, 1]
        out["auc_logreg_validation"] = float(roc_auc_score(val[C.LABEL].to_numpy(), pv))
    p = model.predict_proba(test)[:, 1]
    y = test[C.LABEL].to_numpy()
    out["auc_logreg"] = float(roc_auc_score(y, p))
    pop = item_popularity_of_rows(
        train[C.ITEM_ID], train[C.LABEL], prior_strength=prior_strength, clicks_only=clicks_only
    )
    out["auc_popularity"] = popularity_auc(y, test[C.ITEM_ID], pop)
    out["lift"] = out["auc_logreg"] - out["auc_popularity"]
    return out


def examples_to_pandas(examples: DataFrame) -> pd.DataFrame:
    """The scalar columns of a Spark examples frame as pandas (vectors and sequences dropped)."""
    scalar = [f.name for f in examples.schema.fields if f.dataType.typeName() not in ("array", "map")]
    out: pd.DataFrame = examples.select(*scalar).toPandas()
    return out
