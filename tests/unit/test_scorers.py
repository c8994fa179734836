"""Scorers: the fallback popularity scorer, the per-process cache and mapInPandas scoring."""

from __future__ import annotations

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
