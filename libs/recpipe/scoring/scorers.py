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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from recpipe import constants as C

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


def _row_chunks(
    x: dict[str, dict[str, npt.NDArray[Any]]], index: dict[str, npt.NDArray[Any]], n: int, size: int
) -> Iterator[tuple[dict[str, dict[str, npt.NDArray[Any]]], dict[str, npt.NDArray[Any]]]]:
    """``x`` and ``index`` in chunks of at most ``size`` candidate rows (the side inputs whole)."""
    for lo in range(0, n, size):
        rows = {k: v[lo : lo + size] for k, v in x["row"].items()}
        yield {**x, "row": rows}, {k: v[lo : lo + size] for k, v in index.items()}


def _first_rows(col: pa.ChunkedArray) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """(per row: the index of its distinct value, per distinct value: its first row)."""
    codes = col.combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)
    first: npt.NDArray[Any] = np.unique(codes, return_index=True)[1]
    return codes.astype(np.int32), first


def _check_one_value(
    col: pa.ChunkedArray,
    idx: npt.NDArray[Any],
    first: npt.NDArray[Any],
    name: str,
    side: str,
    keys: pa.ChunkedArray,
) -> None:
    """Raise when the scalar column ``col`` takes more than one value within one item/user of
    the batch (``idx``: each row's item/user, ``first``: their first rows); list columns (the
    text vectors and tokens from the item table, the user's last items from the user's feature
    row) are one value per item/user by construction and not compared."""
    arr = col.combine_chunks()
    if (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        return
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_dictionary(arr.type):
        values = arr.dictionary_encode().indices.fill_null(-1).to_numpy(zero_copy_only=False)
        same = values == values[first][idx]
    else:
        num = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
        ref = num[first][idx]
        same = (num == ref) | (np.isnan(num) & np.isnan(ref))
    if not bool(same.all()):
        row = int(np.flatnonzero(~same)[0])
        raise ValueError(
            f"serving input {name!r} is on the {side} side (recpipe.examples.inputs.serving_side) but "
            f"takes more than one value for {side} {keys[row].as_py()!r} ({arr[row].as_py()!r} and "
            f"{arr[int(first[idx[row]])].as_py()!r}): "
            "the serving frame must derive it from the item's or user's feature row alone"
        )


class ModelScorer:
    """The registered CTR model; inputs assembled by the shared ``recpipe.model.inputs`` code.

    :meth:`score_sides` scores a batch of the serving frame with the item-side and user-side
    inputs converted and run through the model once per distinct item and user
    (:mod:`recpipe.model.grouped`); :meth:`score` runs every row through the whole model."""

    def __init__(self, model: Any, spec: Any, version: str | None, batch_size: int = 65_536) -> None:
        from recpipe.examples.inputs import serving_side
        from recpipe.model.grouped import GroupedModel

        self.model = model
        self.spec = spec
        self.version = version
        self.batch_size = batch_size
        self.sides = {c: serving_side(c) for c in spec.columns}
        self.by_side = {
            side: [c for c in spec.columns if self.sides[c] == side] for side in ("item", "user", "row")
        }
        # Each side's part of the spec (its inputs, with their fill values and vocabularies).
        self.side_specs = {
            side: spec.without([c for c in spec.columns if c not in cols])
            for side, cols in self.by_side.items()
        }
        self.grouped = GroupedModel(model, self.sides)

    def score_sides(
        self, table: pa.Table, item_columns: Callable[[pa.Table], pa.Table] | None = None
    ) -> npt.NDArray[Any]:
        """Scores of the serving frame's rows ``table`` (with user_id and item_id): each input
        converted for the distinct items / users only (their first row's value: the serving
        frame gives an item or user input one value per run, see
        :func:`recpipe.examples.inputs.serving_side`). ``item_columns`` adds per-item columns
        (e.g. the text vectors of :func:`recpipe.scoring.rank.item_vector_table`) to the table
        of distinct items instead of to every row. Equal to :meth:`score` of the same rows with
        the item columns joined (a test keeps them equal)."""
        from recpipe.model import inputs

        item_idx, item_first = _first_rows(table.column(C.ITEM_ID))
        user_idx, user_first = _first_rows(table.column(C.USER_ID))
        names = set(table.column_names)
        by_side = self.by_side
        firsts = {"item": (item_idx, item_first, C.ITEM_ID), "user": (user_idx, user_first, C.USER_ID)}
        for side, (idx, first, key) in firsts.items():
            for c in by_side[side]:
                if c in names and c != key:  # the key is one value per key by definition
                    _check_one_value(table.column(c), idx, first, c, side, table.column(key))
        items = table.select([C.ITEM_ID, *[c for c in by_side["item"] if c in names and c != C.ITEM_ID]])
        items = items.take(item_first)
        if item_columns is not None:
            items = item_columns(items)
        parts = {
            "item": items,
            "user": table.select([c for c in by_side["user"] if c in names]).take(user_first),
            "row": table.select([c for c in by_side["row"] if c in names]),
        }
        # A row input that only the item table holds is taken to the rows from there.
        for c in by_side["row"]:
            if c not in names and c in items.column_names:
                parts["row"] = parts["row"].append_column(c, items.column(c).take(pa.array(item_idx)))
        missing = [c for side, cols in by_side.items() for c in cols if c not in parts[side].column_names]
        if missing:
            raise ValueError(f"model {self.version}: serving frame lacks model inputs {missing}")
        x = {}
        for side, cols in by_side.items():
            x[side] = inputs.to_model_inputs(parts[side], self.side_specs[side]) if cols else {}
        index = {"item": item_idx, "user": user_idx}
        out = [
            self.grouped.predict(x_chunk, idx_chunk)
            for x_chunk, idx_chunk in _row_chunks(x, index, len(item_idx), self.batch_size)
        ]
        return np.concatenate(out, axis=0).astype(float).reshape(-1) if out else np.zeros(0)

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
