"""The items' text inputs: one function for the feature tables, the model's text inputs and the
content-similarity candidates (which read them from ``gold.item_features`` when it exists and
compute them here, the same way, when it does not).

Two representations of the same tokens (letters/digits tokens of two or more characters, English
stop words removed, title first):

- ``text_vec``: TF-IDF over ``num_features`` hashed terms (fixed statistics: the content
  neighbours' cosine and a fixed-width model input);
- ``text_tokens``: the item's first ``max_tokens`` distinct words, which the model hashes and
  embeds itself (:class:`recpipe.features.spec.TokenFeature`): a text representation learned on
  the clicks, with no vocabulary to refit, so an item published today gets its vector today.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from pyspark.ml import Pipeline
from pyspark.ml.feature import IDF, HashingTF, RegexTokenizer, StopWordsRemover
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C

TEXT_VEC = "text_vec"
TEXT_TOKENS = "text_tokens"


def text_vectors(items: DataFrame, num_features: int, max_tokens: int = 0) -> DataFrame:
    """``item_id, text_vec[, text_tokens]``: TF-IDF of title + text as array<float> (HashingTF,
    IDF fit on ``items``: text statistics, no labels) and, with ``max_tokens`` > 0, the first
    ``max_tokens`` distinct words of title + text in order (array<string>, empty without text)."""
    docs = items.select(
        C.ITEM_ID,
        F.concat_ws(" ", F.coalesce("title", F.lit("")), F.coalesce("text", F.lit(""))).alias("_doc"),
    )
    pipe = Pipeline(
        stages=[
            RegexTokenizer(inputCol="_doc", outputCol="_tokens", pattern=r"[^\p{L}\p{N}]+", minTokenLength=2),
            StopWordsRemover(inputCol="_tokens", outputCol="_words"),
            HashingTF(inputCol="_words", outputCol="_tf", numFeatures=num_features),
            IDF(inputCol="_tf", outputCol="_tfidf"),
        ]
    )
    model = pipe.fit(docs)
    cols: list[Column | str] = [C.ITEM_ID, vector_to_array(F.col("_tfidf"), dtype="float32").alias(TEXT_VEC)]
    if max_tokens > 0:
        cols.append(F.slice(F.array_distinct("_words"), 1, max_tokens).alias(TEXT_TOKENS))
    return model.transform(docs).select(*cols)


def unit_rows(matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``matrix`` with each row scaled to length 1 (zero rows stay zero), float32."""
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    out: npt.NDArray[Any] = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
    return out


def text_affinity(
    history: pa.Array | pa.ChunkedArray,
    items: pa.Array | pa.ChunkedArray,
    groups: npt.NDArray[Any],
    index: pd.Index,
    unit: npt.NDArray[Any] | None,
) -> npt.NDArray[Any]:
    """Per row: the cosine between the candidate item's text vector and the centroid of the
    text vectors of the user's recent items (``history``, list<string> of item ids); 0 when the
    candidate or every history item has no vector. ONE function for the training examples
    (:func:`with_text_affinity`) and the scoring kernel (``recpipe.scoring.rank``).

    ``index``/``unit``: item ids and their unit-length vectors (:func:`unit_rows`), row by row.
    ``groups``: a key per row such that rows with the same key have the same history (the user
    at serving, user and date in training): one centroid is computed per key."""
    n = len(items)
    if unit is None or len(index) == 0 or n == 0:
        return np.zeros(n)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    hist = history.combine_chunks() if isinstance(history, pa.ChunkedArray) else history
    hist = hist.take(pa.array(first))
    lengths = hist.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    pos = index.get_indexer(hist.flatten().to_numpy(zero_copy_only=False))
    owner = np.repeat(np.arange(len(first)), lengths)
    ok = pos >= 0
    centroid = np.zeros((len(first), unit.shape[1]), dtype=np.float32)
    np.add.at(centroid, owner[ok], unit[pos[ok]])  # ~10 history items per key: cheap
    centroid = unit_rows(centroid)
    cand_ids = items.combine_chunks() if isinstance(items, pa.ChunkedArray) else items
    cpos = index.get_indexer(cand_ids.to_numpy(zero_copy_only=False))
    cand = np.where((cpos >= 0)[:, None], unit[np.maximum(cpos, 0)], np.float32(0.0))
    out: npt.NDArray[Any] = np.einsum("ij,ij->i", centroid[inverse.reshape(-1)], cand).astype(np.float64)
    return np.round(out, 6)


def with_text_affinity(
    frame: DataFrame, vectors: DataFrame, history: str, groups: list[str], out: str
) -> DataFrame:
    """``frame`` plus ``out``: :func:`text_affinity` of each row's ``history`` column and item
    against ``vectors`` (item_id, text_vec; collected once and broadcast), one centroid per
    ``groups`` key in a batch."""
    from pyspark.sql.types import DoubleType, StructField, StructType

    table = vectors.select(C.ITEM_ID, TEXT_VEC).where(F.col(TEXT_VEC).isNotNull()).toArrow()
    ids = table.column(C.ITEM_ID).to_numpy(zero_copy_only=False)
    matrix = fixed_matrix(table.column(TEXT_VEC))  # None (no vectors): every affinity 0, as at serving
    shared = frame.sparkSession.sparkContext.broadcast((ids, matrix))
    schema = StructType([*frame.schema.fields, StructField(out, DoubleType())])

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        item_ids, m = shared.value
        index = pd.Index(item_ids)
        unit = unit_rows(m) if m is not None else None
        for b in batches:
            keys = pd.MultiIndex.from_arrays([b.column(g).to_pandas() for g in groups]).factorize()[0]
            score = text_affinity(b.column(history), b.column(C.ITEM_ID), keys, index, unit)
            yield pa.RecordBatch.from_arrays(
                [*b.columns, pa.array(score, pa.float64())],
                schema=b.schema.append(pa.field(out, pa.float64())),
            )

    return frame.mapInArrow(fn, schema)


def fixed_matrix(col: pa.ChunkedArray) -> npt.NDArray[Any] | None:
    """A list<float> column whose rows all hold the same number of values, none null, as an
    (items, dim) float32 matrix; None for any other column."""
    arr = col.combine_chunks()
    if not pa.types.is_list(arr.type) or not pa.types.is_floating(arr.type.value_type) or arr.null_count:
        return None
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) == 0 or not bool((lengths == lengths[0]).all()) or lengths[0] == 0:
        return None
    dim = int(lengths[0])
    run = arr.flatten().cast(pa.float32())
    if run.null_count:
        return None
    matrix: npt.NDArray[Any] = run.to_numpy(zero_copy_only=False).reshape(len(arr), dim)
    return matrix
