"""Sanity baseline for the examples: logistic regression vs item popularity, test AUC.

If a plain logistic regression on the example features cannot beat "rank by the item's CTR with
prior" on the time-based test split, the features (or the labels) are broken.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from recpipe import constants as C

POPULARITY_SCORE = "item_ctr_28d"
ONE_HOT = ["category", "device", "position_bucket"]


def _design(df: pd.DataFrame, dense: list[str], levels: dict[str, list[str]]) -> np.ndarray:
    parts = [df[dense].to_numpy(dtype=float)]
    for col, vals in levels.items():
        v = df[col].astype(str).to_numpy()
        parts.append(
            np.stack([(v == x).astype(float) for x in vals], axis=1) if vals else np.zeros((len(df), 0))
        )
    return np.concatenate(parts, axis=1)


def dense_feature_columns(df: pd.DataFrame) -> list[str]:
    prefixes = (
        "item_impressions_",
        "item_clicks_",
        "item_ctr_",
        "user_impressions_",
        "user_clicks_",
        "user_reads_",
    )
    cols = [c for c in df.columns if c.startswith(prefixes)]
    cols += [
        c
        for c in (
            "item_age_hours",
            "user_hours_since_last_event",
            "user_hours_since_last_click",
            "user_category_share",
            "user_category_impressions",
            "user_category_ctr",
            "user_hours_since_category_click",
        )
        if c in df.columns
    ]
    return cols


def logreg_vs_popularity(
    examples_pdf: pd.DataFrame, popularity_col: str = POPULARITY_SCORE, seed: int = 0
) -> dict[str, Any]:
    """Fit LR on the train split, report test AUC of LR and of the popularity score.

    Dense features: counts (log1p), CTRs, recency, category share, user-item category share,
    standardized with train statistics; one-hot: item category, device, position bucket.
    """
    df = examples_pdf.copy()
    df["position_bucket"] = df[C.POSITION].fillna(-1).clip(upper=9).astype(int).astype(str)
    dense = dense_feature_columns(df)
    for c in dense:
        df[c] = df[c].astype(float).fillna(0.0)
        if c.startswith(("item_impressions_", "item_clicks_", "user_")) and not c.endswith(("share", "ctr")):
            df[c] = np.log1p(df[c].clip(lower=0))
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
    mean = train[dense].mean()
    std = train[dense].std(ddof=0).replace(0, 1.0)
    levels = {c: sorted(train[c].astype(str).unique().tolist())[:50] for c in ONE_HOT}
    tr = train.copy()
    te = test.copy()
    tr[dense] = (tr[dense] - mean) / std
    te[dense] = (te[dense] - mean) / std
    model = LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
    model.fit(_design(tr, dense, levels), train[C.LABEL].to_numpy())
    val = df[df[C.SPLIT] == "validation"].copy()
    if len(val) and val[C.LABEL].nunique() == 2:  # for choosing among models on validation
        val[dense] = (val[dense] - mean) / std
        pv = model.predict_proba(_design(val, dense, levels))[:, 1]
        out["auc_logreg_validation"] = float(roc_auc_score(val[C.LABEL].to_numpy(), pv))
    p = model.predict_proba(_design(te, dense, levels))[:, 1]
    y = test[C.LABEL].to_numpy()
    out["auc_logreg"] = float(roc_auc_score(y, p))
    out["auc_popularity"] = float(roc_auc_score(y, test[popularity_col].astype(float).fillna(0.0)))
    out["lift"] = out["auc_logreg"] - out["auc_popularity"]
    return out


def examples_to_pandas(examples) -> pd.DataFrame:
    """The scalar columns of a Spark examples frame as pandas (vectors and sequences dropped)."""
    scalar = [f.name for f in examples.schema.fields if f.dataType.typeName() not in ("array", "map")]
    return examples.select(*scalar).toPandas()
