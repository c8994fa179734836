"""Loader for the Open Bandit Dataset (ZOZOTOWN) small sample, ``random_all.csv``.

The file (from the ``obp`` package, ``obp/dataset/obd/random/all/all.csv``) has one row per *shown slot*:
an unnamed row index, ``timestamp``, ``item_id`` (0..79), ``position`` (1..3), ``click`` (0/1),
``propensity_score``, ``user_feature_0..3`` (hashed categoricals) and ``user-item_affinity_0..79``.

What ``propensity_score`` means: the logging policy ("Random") fills the 3 positions of a recommendation
with items drawn uniformly at random from the 80 items, so the marginal probability that the logged item is the
one shown at the logged position is ``1/80 = 0.0125`` -- and that is the value in every row of the sample
(checked: 10,000 rows, all exactly 0.0125). It is therefore the per-slot action probability
``pi_0(item | context, position)``, with the position treated as part of the context; it is *not* the
probability of the whole 3-item ranking (``1/(80*79*78)``) and not divided by the number of positions.
Use it directly as ``logging_propensity`` in :mod:`recpipe.evaluation.ope`, with a target policy's probability
of choosing the logged item for that position. The sample is a row subsample: the 3 slots of one impression are
generally not all present, so rows should be treated as independent slot-level decisions.

The data licence is research-only: read it from the shared data folder at run time, never copy it into the repo.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["FILE_NAME", "REQUIRED_COLUMNS", "load_open_bandit"]

FILE_NAME = "random_all.csv"

#: source column -> normalised column
REQUIRED_COLUMNS = {
    "timestamp": "ts",
    "item_id": "item_id",
    "position": "position",
    "click": "click",
    "propensity_score": "propensity",
}


def _resolve(path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / FILE_NAME
    if not p.is_file():
        raise FileNotFoundError(f"Open Bandit file not found: {p}")
    return p


def load_open_bandit(path) -> pd.DataFrame:
    """Read ``random_all.csv`` (``path`` is the file or the folder holding it) into a normalised frame.

    Columns: ``ts`` (tz-aware UTC timestamp), ``item_id`` (int64), ``position`` (int64), ``click`` (int64, 0/1),
    ``propensity`` (float64, the logging policy's per-slot probability of the logged item; see module docstring),
    then the user features as in the file (``user_feature_0..3`` as strings, ``user-item_affinity_*`` as floats).
    The unnamed leading row-index column is dropped. Rows keep file order.

    Raises ``FileNotFoundError`` if the file is missing and ``ValueError`` naming the file and the column when a
    required column is absent or holds invalid values (nulls, click not 0/1, propensity outside (0, 1]).
    """
    file = _resolve(path)
    df = pd.read_csv(file)
    df = df.drop(columns=[c for c in df.columns if c == "" or str(c).startswith("Unnamed:")])

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{file}: required column(s) missing: {', '.join(missing)} (found: {', '.join(map(str, df.columns[:12]))}"
            f"{', ...' if len(df.columns) > 12 else ''})"
        )
    for col in REQUIRED_COLUMNS:
        nulls = df[col].isna()
        if nulls.any():
            raise ValueError(f"{file}: column {col!r} has a null at row {int(nulls.to_numpy().argmax())}")

    out = pd.DataFrame(
        {
            "ts": pd.to_datetime(df["timestamp"], utc=True),
            "item_id": df["item_id"].astype("int64"),
            "position": df["position"].astype("int64"),
            "click": df["click"].astype("int64"),
            "propensity": df["propensity_score"].astype("float64"),
        }
    )
    bad = ~out["click"].isin([0, 1])
    if bad.any():
        raise ValueError(f"{file}: column 'click' must be 0/1, row {int(bad.to_numpy().argmax())} is not")
    bad = (out["propensity"] <= 0) | (out["propensity"] > 1)
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise ValueError(
            f"{file}: column 'propensity_score' must be in (0, 1], row {i} is {out['propensity'].iloc[i]!r}"
        )

    features = [c for c in df.columns if c not in REQUIRED_COLUMNS]
    return pd.concat([out, df[features]], axis=1)
