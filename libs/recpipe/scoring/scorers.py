"""Scorers: ``score(rows) -> numpy array``, one score per candidate row of a batch (pandas, or
Arrow for the model: :func:`recpipe.scoring.rank.score_candidates` hands Arrow batches through).

A :class:`ScorerRef` (small, picklable) names a scorer; :func:`get_scorer` loads it at most once
per Python worker process (module-level cache), so the model is not reloaded per Arrow batch or task.

- ``popularity``: the fallback used when no model is registered: time-decayed popularity x the
  user's affinity for the item's category x recency, boosted by personal sources (co-visit,
  content, ALS).
- ``model``: the current registered CTR model (issue 4: ``load_current_model`` + ``model/inputs.py``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

log = logging.getLogger(__name__)


class Scorer(Protocol):
    def score(self, pdf: pd.DataFrame) -> npt.NDArray[Any]: ...

    def score_batch(self, batch: pa.RecordBatch | pa.Table) -> npt.NDArray[Any]: ...


@dataclass(frozen=True)
class ScorerRef:
    """What to load on the workers: ``kind`` plus the model location/version (model) or parameters."""

    kind: str  # "popularity" | "model"
    version: str | None = None
    uri: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    # The frame columns the scorer reads (the model's spec columns): only these and the columns
    # kept after scoring are sent to the Python workers. Empty: every column.
    inputs: tuple[str, ...] = ()

    @property
    def ranker(self) -> str:
        return self.kind


class PopularityScorer:
    """Fallback ranker (no model): popularity x category affinity x recency x personal-source boost."""

    COLUMNS = ("popularity", "cat_affinity", "age_hours", "s_co_visit", "s_similar_content", "s_als")

    def __init__(self, recency_half_life_hours: float = 48.0, personal_boost: float = 0.5) -> None:
        self.half_life = recency_half_life_hours
        self.personal_boost = personal_boost

    def score_batch(self, batch: pa.RecordBatch | pa.Table) -> npt.NDArray[Any]:
        names = batch.schema.names
        return self.score(batch.select([c for c in self.COLUMNS if c in names]).to_pandas())

    def score(self, pdf: pd.DataFrame) -> npt.NDArray[Any]:
        pop = pdf["popularity"].fillna(0.0).to_numpy(float)
        aff = pdf["cat_affinity"].fillna(0.0).to_numpy(float)
        age = np.clip(pdf["age_hours"].fillna(24 * 365.0).to_numpy(float), 0.0, None)
        recency = np.power(0.5, age / self.half_life)
        personal = np.zeros(len(pdf))
        for col in ("s_co_visit", "s_similar_content", "s_als"):
            if col in pdf:
                personal = np.maximum(personal, np.clip(pdf[col].fillna(0.0).to_numpy(float), 0.0, 1.0))
        scores: npt.NDArray[Any] = (
            (0.05 + aff) * (0.05 + pop) * (0.3 + 0.7 * recency) * (1.0 + self.personal_boost * personal)
        )
        return scores


class ModelScorer:
    """The registered CTR model; inputs assembled by the shared ``recpipe.model.inputs`` code."""

    def __init__(self, model: Any, spec: Any, version: str | None, batch_size: int = 65_536) -> None:
        self.model = model
        self.spec = spec
        self.version = version
        self.batch_size = batch_size

    def score_batch(self, batch: pa.RecordBatch | pa.Table) -> npt.NDArray[Any]:
        return self.score(batch)

    def score(self, pdf: pd.DataFrame | pa.RecordBatch | pa.Table) -> npt.NDArray[Any]:
        from recpipe.model import inputs  # the model side, imported where a model scores

        # Every model input must be built by the serving frame (rank.attach_model_features), the
        # same way as for training: a silently defaulted column is training/serving skew.
        names = pdf.schema.names if isinstance(pdf, (pa.RecordBatch, pa.Table)) else pdf.columns
        missing = [c for c in self.spec.columns if c not in names]
        if missing:
            raise ValueError(f"model {self.version}: serving frame lacks model inputs {missing}")
        x = inputs.to_model_inputs(pdf, self.spec)
        n = len(next(iter(x.values()))) if x else 0
        # One graph call per chunk (predict_on_batch): Keras' predict() builds a dataset and
        # steps through it, ~2.5x slower per row at these sizes.
        out = [
            np.asarray(self.model.predict_on_batch({k: v[lo : lo + self.batch_size] for k, v in x.items()}))
            for lo in range(0, n, self.batch_size)
        ]
        return np.concatenate(out, axis=0).astype(float).reshape(-1) if out else np.zeros(0)


POPULARITY = ScorerRef("popularity", inputs=PopularityScorer.COLUMNS)


def resolve_scorer(cfg: Any, lake: Any) -> tuple[ScorerRef, str]:
    """The scorer of this run (driver side): the current registered model, else popularity.

    Returns (ref, why) where ``why`` says which and why.
    """
    from recpipe.model import registry

    current = [r for r in registry.read_registry(lake) if r["status"] == registry.CURRENT]
    if not current:
        return POPULARITY, "no current model in ops.model_registry"
    # Loads the artifact once on the driver: a broken artifact fails here, before any Spark work.
    _model, spec, row = registry.load_current_model(cfg, lake)
    ref = ScorerRef(
        "model", version=str(row["model_version"]), uri=str(row["path"]), inputs=tuple(spec.columns)
    )
    return ref, "current registered model"


def previous_scorer(lake: Any, version: str | None) -> tuple[ScorerRef, str]:
    """The ranker that served before model ``version`` (driver side): the latest model promoted
    before it (registry status ``current`` or ``archived``, a lower version number), else the
    popularity ranker (``version`` None or the first promoted model). Returns (ref, why)."""
    from recpipe.model.artifact import read_export_spec
    from recpipe.model.registry import ARCHIVED, CURRENT, read_registry

    def number(v: Any) -> int:
        text = str(v or "")
        return int(text[1:]) if text[1:].isdigit() else -1

    if version is None:
        return POPULARITY, "no model before the popularity ranker"
    before = [
        r
        for r in read_registry(lake)
        if r["status"] in (CURRENT, ARCHIVED) and 0 <= number(r["model_version"]) < number(version)
    ]
    if not before:
        return POPULARITY, f"no model was promoted before {version}"
    row = max(before, key=lambda r: number(r["model_version"]))
    spec = read_export_spec(str(row["path"]))
    ref = ScorerRef(
        "model", version=str(row["model_version"]), uri=str(row["path"]), inputs=tuple(spec.columns)
    )
    return ref, f"promoted before {version}"


def _load(ref: ScorerRef) -> Scorer:
    if ref.kind == "popularity":
        return PopularityScorer(**dict(ref.params))
    if ref.kind == "model":
        from recpipe.model.artifact import load_export  # TensorFlow: on the Python workers only

        model, spec = load_export(str(ref.uri))
        return ModelScorer(model, spec, ref.version)
    raise ValueError(f"unknown scorer kind {ref.kind!r}")


_SCORERS: dict[ScorerRef, Scorer] = {}
_LOCK = threading.Lock()


def get_scorer(ref: ScorerRef) -> Scorer:
    """The scorer for ``ref``, loaded once per Python process."""
    with _LOCK:
        scorer = _SCORERS.get(ref)
        if scorer is None:
            log.info("loading scorer %s", ref)
            scorer = _SCORERS[ref] = _load(ref)
        return scorer
