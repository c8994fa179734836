"""The filter/budget kernel on Arrow tables (recpipe.candidates.kernel), without Spark: the
Spark-level equality with the plain references is in test_candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recpipe import constants as C
from recpipe.candidates import kernel as K

SCHEMA = pa.schema(
    [
        (C.USER_ID, pa.string()),
        (C.ITEM_ID, pa.string()),
        (C.SOURCE, pa.string()),
        (C.SOURCE_SCORE, pa.float64()),
        (C.DETAIL, pa.string()),
    ]
)


def table(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r)) for r in rows], schema=SCHEMA)


def rows_of(t: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in t.to_pylist())


def lists(ids, global_trend=(), country_trend=(), category_trend=(), fresh=(), k_fresh=3) -> K.ItemCodes:
    return K.ItemCodes.of(
        list(ids),
        pd.DataFrame(list(global_trend), columns=[C.ITEM_ID, "score"]),
        pd.DataFrame(list(country_trend), columns=[C.COUNTRY, C.ITEM_ID, "score"]),
        pd.DataFrame(list(category_trend), columns=["category", C.ITEM_ID, "score"]),
        pd.DataFrame(list(fresh), columns=[C.ITEM_ID, "category", "recency"]),
        k_fresh,
    )


def test_one_row_per_user_item_and_source_its_best():
    t = table([("u", "a", "als", 0.2, "x"), ("u", "a", "als", 0.9, "y"), ("u", "a", "trending", 0.1, "z")])
    got = K.budget_table(t, K.ItemCodes.allowed_only(["a"]), 5, {"als": 0.5, "trending": 0.5}, False)
    assert got.schema == SCHEMA
    assert rows_of(got) == [("u", "a", "als", 0.9, "y"), ("u", "a", "trending", 0.1, "z")]


def test_items_not_allowed_and_consumed_pairs_are_dropped_other_users_kept():
    t = table(
        [
            ("u1", "a", "als", 0.9, "x"),
            ("u1", "b", "als", 0.8, "x"),
            ("u1", "gone", "als", 0.7, "x"),
            ("u1", "a", K.CONSUMED_MARK, None, None),
            ("u1", "gone", K.CONSUMED_MARK, None, None),
            ("u2", "a", "als", 0.5, "y"),
            ("u2", "zz", K.CONSUMED_MARK, None, None),
        ]
    )
    got = K.budget_table(t, K.ItemCodes.allowed_only(["b", "a"]), 5, {"als": 1.0}, False)
    assert rows_of(got) == [("u1", "b", "als", 0.8, "x"), ("u2", "a", "als", 0.5, "y")]
    assert K.budget_table(t.slice(0, 0), K.ItemCodes.allowed_only(["a"]), 5, {}, False).num_rows == 0


def test_budget_takes_each_source_in_proportion_to_its_share_ties_by_item_id():
    """Budget 3, shares 2:1: als's best two and co_visit's best one (norm ranks 0.5, 1.0, 1.0;
    the tie between als's 2nd and co_visit's 1st goes to the smaller item id)."""
    t = table(
        [("u", i, "als", s, "") for i, s in (("a3", 0.9), ("a1", 0.8), ("a2", 0.7))]
        + [("u", i, "co_visit", s, "") for i, s in (("c9", 0.5), ("c1", 0.5), ("c5", 0.1))]
    )
    ids = ["a1", "a2", "a3", "c1", "c5", "c9"]
    got = K.budget_table(t, K.ItemCodes.allowed_only(ids), 3, {"als": 2.0, "co_visit": 1.0}, False)
    assert sorted(r[1] for r in rows_of(got)) == ["a1", "a3", "c1"]


def test_trending_ties_go_to_the_smaller_detail_and_fresh_keeps_the_best_k():
    """u1 (country DE, affinity 1.0 to "x") gets item a from global (0.4 * 0.8), its country
    (0.32) and category (0.32 * 1.0): one row, the detail "category:x" (the smallest of the
    tied); u2 (no country) only the global row. Fresh: the newest 2 for everyone, new items
    of the user's categories weighted by affinity, the best 2 per user."""
    codes = lists(
        ["a", "b", "f1", "f2", "f3"],
        global_trend=[("a", 0.4)],
        country_trend=[("DE", "a", 0.32), ("FR", "b", 1.0)],
        category_trend=[("x", "a", 0.32)],
        fresh=[("f1", "x", 0.9), ("f2", None, 0.8), ("f3", "x", 0.3)],
        k_fresh=2,
    )
    t = table(
        [
            ("u1", None, K.USER_MARK, None, "DE"),
            ("u1", "profile", K.AFFINITY_MARK, 1.0, "x"),
            ("u2", None, K.USER_MARK, None, None),
        ]
    )
    got = rows_of(K.budget_table(t, codes, 10, {}, True))
    assert got == [
        ("u1", "a", "trending", 0.32, "category:x (profile)"),
        ("u1", "f1", "fresh", 1.35, "new in x (profile)"),
        ("u1", "f3", "fresh", 0.45, "new in x (profile)"),
        ("u2", "a", "trending", 0.32, "global"),
        ("u2", "f1", "fresh", 0.45, "new"),
        ("u2", "f2", "fresh", 0.4, "new"),
    ]


def test_ragged_join_is_every_matching_pair():
    rng = np.random.default_rng(0)
    left, right = rng.integers(-1, 6, 40), rng.integers(0, 6, 30)
    li, rj = K.ragged_join(left, right)
    want = sorted((i, j) for i in range(40) for j in range(30) if left[i] >= 0 and left[i] == right[j])
    assert sorted(zip(li.tolist(), rj.tolist())) == want and len(want) > 50


@pytest.mark.parametrize("n", [0, 1, 500])
def test_order_is_a_stable_lexicographic_sort(n):
    rng = np.random.default_rng(n)
    keys = [rng.integers(0, 7, n), rng.integers(0, 3, n)]
    assert K.order(*keys).tolist() == np.lexsort(tuple(reversed(keys))).tolist()
