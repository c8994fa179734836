"""Scorers: the fallback popularity scorer, the per-process cache and mapInPandas scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recpipe import constants as C
from recpipe.scoring.rank import score_candidates
from recpipe.scoring.scorers import PopularityScorer, ScorerRef, get_scorer

pytestmark = pytest.mark.unit


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.USER_ID: ["u", "u", "u"],
            C.ITEM_ID: ["pop_match", "pop_other", "unknown"],
            "popularity": [1.0, 1.0, 0.0],
            "cat_affinity": [0.8, 0.0, 0.8],
            "age_hours": [10.0, 10.0, 10.0],
            "s_co_visit": [0.0, 0.0, 0.0],
        }
    )


def test_popularity_scorer_prefers_popular_items_of_the_users_categories():
    s = PopularityScorer().score(frame())
    assert s[0] > s[1] and s[0] > s[2] and (s > 0).all()


def test_scorer_is_loaded_once_per_process():
    ref = ScorerRef("popularity")
    assert get_scorer(ref) is get_scorer(ref)


def test_score_candidates_adds_a_score_column_in_spark(spark):
    df = spark.createDataFrame(frame())
    out = score_candidates(df, ScorerRef("popularity")).toPandas().set_index(C.ITEM_ID)
    expected = PopularityScorer().score(frame()).round(6)
    assert out.loc[["pop_match", "pop_other", "unknown"], C.SCORE].tolist() == pytest.approx(
        expected.tolist()
    )


def test_item_vectors_taken_with_numpy_equal_arrows_take_and_unknown_items_fall_back():
    import pyarrow as pa

    from recpipe.model.inputs import _vectors
    from recpipe.scoring.rank import _item_matrices, _with_item_columns

    rng = np.random.default_rng(2)
    dim = 8
    vec = pa.array(list(rng.normal(size=(30, dim)).astype(np.float32)), pa.list_(pa.float32()))
    ragged = pa.array([[1.0]] * 29 + [[1.0, 2.0]], pa.list_(pa.float32()))  # not a matrix
    items = pa.table({"item_id": [f"I{i}" for i in range(30)], "text": vec, "other": ragged})
    matrices = _item_matrices(items)
    assert set(matrices) == {"text"} and matrices["text"].shape == (30, dim)
    index = pd.Index(items.column("item_id").to_numpy())
    rows = pa.table({"item_id": [f"I{i}" for i in rng.integers(0, 30, 500)]})
    fast = _with_item_columns(rows, index, items, matrices)
    slow = _with_item_columns(rows, index, items)
    assert fast.column_names == slow.column_names == ["item_id", "text", "other"]
    assert np.array_equal(_vectors(fast.column("text"), dim), _vectors(slow.column("text"), dim))
    assert fast.column("other").equals(slow.column("other"))
    # a row whose item is not in the table: the whole batch takes Arrow's path, null for it
    odd = pa.table({"item_id": ["I1", "nope"]})
    got = _with_item_columns(odd, index, items, matrices)
    assert got.column("text").null_count == 1 and got.column("text")[0].as_py() == vec[1].as_py()


def test_the_text_affinity_is_computed_from_the_item_table_and_never_defaulted():
    import pyarrow as pa

    from recpipe.scoring import rank

    class Echo:  # returns the affinity it was given, so the test sees what the model would
        def score_batch(self, batch):
            return batch.column("user_text_affinity").to_numpy()

    ref = ScorerRef("model", version="m9", inputs=("user_last_items", "user_text_affinity"))
    rows = pa.table(
        {
            C.USER_ID: ["u", "u", "v"],
            C.ITEM_ID: ["B", "C", "B"],
            "user_last_items": pa.array([["A"], ["A"], []], pa.list_(pa.string())),
        }
    )
    items = pa.table(
        {
            C.ITEM_ID: ["A", "B", "C"],
            "item_text_vec": pa.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], pa.list_(pa.float32())),
        }
    )
    index = pd.Index(items.column(C.ITEM_ID).to_numpy())
    # given the item table, the kernel computes the cosine to the history's centroid
    got = rank._scores(Echo(), ref, rows, index, items, rank._item_matrices(items))
    assert got.tolist() == pytest.approx([0.707107, 0.0, 0.0])
    # without it, it refuses instead of scoring with zeros
    with pytest.raises(ValueError, match="m9 reads user_text_affinity: score with the item table"):
        rank._scores(Echo(), ref, rows, None, None)
