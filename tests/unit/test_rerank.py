"""Re-ranking: diversity, list length, determinism and EXACT exploration propensities."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from recpipe import constants as C
from recpipe.scoring.rerank import (
    OUT_COLUMNS,
    RerankParams,
    rerank_frame,
    rerank_partitions,
    rerank_user,
    user_rng,
)

pytestmark = pytest.mark.unit


def candidates(n: int = 12, fresh: tuple[int, ...] = (9, 10, 11)) -> pd.DataFrame:
    """Given: one user's 12 scored candidates in 4 categories; items 9-11 are fresh."""
    return pd.DataFrame(
        {
            C.USER_ID: ["u1"] * n,
            C.ITEM_ID: [f"i{j:02d}" for j in range(n)],
            C.SCORE: [1.0 - 0.05 * j for j in range(n)],
            "category": ["a", "a", "a", "a", "b", "b", "c", "c", "d", "d", "a", "b"][:n],
            "freshness": [0.5 if j in fresh else 0.0 for j in range(n)],
            "is_fresh": [j in fresh for j in range(n)],
            "impressions": [100] * n,
            C.REASON: ["co_visit"] * n,
            C.REASON_DETAIL: ["N1"] * n,
        }
    )


def test_no_exploration_is_greedy_with_category_cap():
    params = RerankParams(top_n=6, max_per_category=2, explore_share=0.0, fresh_boost=0.0)
    out = rerank_user(candidates(), params, np.random.default_rng(0))
    assert out[C.ITEM_ID].tolist() == ["i00", "i01", "i04", "i05", "i06", "i07"]
    assert out[C.RANK].tolist() == [1, 2, 3, 4, 5, 6]
    assert (out[C.PROPENSITY] == 1.0).all()
    assert out[C.REASON].eq("co_visit").all()


def test_cap_is_relaxed_only_when_candidates_run_out():
    """Given only two categories, the list is still filled to N."""
    df = candidates().iloc[:6]  # categories a,a,a,a,b,b
    out = rerank_user(
        df, RerankParams(top_n=6, max_per_category=2, explore_share=0.0), np.random.default_rng(0)
    )
    assert len(out) == 6 and out[C.ITEM_ID].is_unique


def test_freshness_boost_moves_fresh_items_up():
    df = candidates()
    boosted = rerank_user(
        df,
        RerankParams(top_n=12, max_per_category=12, explore_share=0.0, fresh_boost=2.0),
        np.random.default_rng(0),
    )
    plain = rerank_user(
        df,
        RerankParams(top_n=12, max_per_category=12, explore_share=0.0, fresh_boost=0.0),
        np.random.default_rng(0),
    )
    assert boosted[C.ITEM_ID].tolist().index("i09") < plain[C.ITEM_ID].tolist().index("i09")


def test_same_seed_same_list_and_propensities_in_range():
    params = RerankParams(top_n=8, max_per_category=3, explore_share=0.5)
    a = rerank_user(candidates(), params, user_rng(11, "u1", "2026-10-15"))
    b = rerank_user(candidates(), params, user_rng(11, "u1", "2026-10-15"))
    pd.testing.assert_frame_equal(a, b)
    assert ((a[C.PROPENSITY] > 0) & (a[C.PROPENSITY] <= 1)).all()
    assert a[C.ITEM_ID].is_unique and len(a) == 8


def test_exploration_propensities_match_empirical_frequencies():
    """Given eps=0.3 and 3 fresh items, when the policy runs with 6k seeds, then the frequency of
    each item in slot 1 (unconditional) and in slot 2 given the slot-1 item equals the stored
    propensity (within 4 standard errors)."""
    params = RerankParams(top_n=3, max_per_category=3, explore_share=0.3, fresh_boost=0.0)
    df = candidates()
    runs = 6_000
    slot1, slot2_given_greedy = Counter(), Counter()
    p1: dict[str, float] = {}
    p2: dict[str, float] = {}
    n_greedy_first = 0
    for s in range(runs):
        out = rerank_user(df, params, np.random.default_rng(s))
        first, second = out.iloc[0], out.iloc[1]
        slot1[first[C.ITEM_ID]] += 1
        assert p1.setdefault(first[C.ITEM_ID], first[C.PROPENSITY]) == first[C.PROPENSITY]
        if first[C.ITEM_ID] == "i00":
            n_greedy_first += 1
            slot2_given_greedy[second[C.ITEM_ID]] += 1
            assert p2.setdefault(second[C.ITEM_ID], second[C.PROPENSITY]) == second[C.PROPENSITY]
    # exact values from the derivation: greedy 1 - eps, each of the 3 pool items eps / 3
    assert p1 == pytest.approx({"i00": 0.7, "i09": 0.1, "i10": 0.1, "i11": 0.1})
    assert sum(p1.values()) == pytest.approx(1.0)
    for item, p in p1.items():
        se = np.sqrt(p * (1 - p) / runs)
        assert abs(slot1[item] / runs - p) < 4 * se, (item, slot1[item] / runs, p)
    # slot 2 given i00 in slot 1: greedy is i01 (category a still below the cap of 3)
    assert p2["i01"] == pytest.approx(0.7)
    assert sum(p2.values()) == pytest.approx(1.0)
    for item, p in p2.items():
        se = np.sqrt(p * (1 - p) / n_greedy_first)
        assert abs(slot2_given_greedy[item] / n_greedy_first - p) < 4 * se, (item, p)
    explored = [r for r in (rerank_user(df, params, np.random.default_rng(s)) for s in range(50))]
    reasons = pd.concat(explored)[C.REASON]
    assert set(reasons) <= {"co_visit", "explore"} and (reasons == "explore").any()


def test_user_rng_depends_on_seed_user_and_date():
    draws = {
        k: user_rng(*k).random()
        for k in [
            (1, "u", "2026-10-15"),
            (2, "u", "2026-10-15"),
            (1, "v", "2026-10-15"),
            (1, "u", "2026-10-16"),
        ]
    }
    assert len(set(draws.values())) == 4
    assert user_rng(1, "u", "2026-10-15").random() == draws[(1, "u", "2026-10-15")]


def _world(n_users: int = 120, seed: int = 3) -> pd.DataFrame:
    """Given: many users' candidates shaped unlike the generator's: 1-40 candidates each, tied
    scores, missing categories, fresh and little-shown items mixed in."""
    rng = np.random.default_rng(seed)
    frames = []
    for u in range(n_users):
        n = int(rng.integers(1, 41))
        frames.append(
            pd.DataFrame(
                {
                    C.USER_ID: f"user-{u:04d}@x",
                    C.ITEM_ID: [f"it{j}" for j in rng.choice(500, n, replace=False)],
                    C.SCORE: np.round(rng.random(n), 1),  # many ties: order by item id
                    "category": rng.choice(np.array(["a", "b", "c", None], dtype=object), n),
                    "freshness": np.where(rng.random(n) < 0.3, rng.random(n), 0.0),
                    "is_fresh": rng.random(n) < 0.3,
                    "impressions": rng.integers(0, 60, n),
                    C.REASON: rng.choice(["als", "co_visit", "trending"], n),
                    C.REASON_DETAIL: [f"d{j}" for j in range(n)],
                }
            )
        )
    world = pd.concat(frames, ignore_index=True)
    return world.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # users interleaved


def _reference(world: pd.DataFrame, params: RerankParams, run_date: str) -> pd.DataFrame:
    out = [
        rerank_user(g.reset_index(drop=True), params, user_rng(params.seed, str(u), run_date))
        for u, g in world.groupby(C.USER_ID, sort=True)
    ]
    return pd.concat(out, ignore_index=True)


def _same_lists(got: pd.DataFrame, want: pd.DataFrame) -> None:
    key = [C.USER_ID, C.RANK]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True).astype({C.RANK: "int32"})
    pd.testing.assert_frame_equal(got[OUT_COLUMNS], want[OUT_COLUMNS], check_dtype=False)


def test_batch_kernel_gives_the_reference_lists_reasons_and_propensities():
    params = RerankParams(top_n=8, max_per_category=2, explore_share=0.3, fresh_boost=0.2, pool_size=5)
    world = _world()
    want = _reference(world, params, "2026-10-15")
    got = rerank_frame(world, params, "2026-10-15")
    assert len(want) > 500 and (want[C.REASON] == C.REASON_EXPLORE).sum() > 50
    _same_lists(got, want)


def test_partition_kernel_carries_users_split_across_arrow_batches():
    params = RerankParams(top_n=5, explore_share=0.2)
    world = _world(40, seed=9).sort_values(C.USER_ID, kind="mergesort").reset_index(drop=True)
    batches = [world.iloc[i : i + 7] for i in range(0, len(world), 7)]  # splits most users
    got = pd.concat(list(rerank_partitions(params, "2026-10-16")(iter(batches))), ignore_index=True)
    assert got[C.USER_ID].nunique() == 40
    _same_lists(got, _reference(world, params, "2026-10-16"))


def test_batch_kernel_takes_columns_that_are_all_missing():
    """Given a batch whose categories and fresh flags are all missing (an all-None pandas column
    is Arrow's null type), the kernel reads them as no category and not fresh, as the reference
    does."""
    params = RerankParams(top_n=6, explore_share=0.3)
    world = _world(30, seed=5).assign(category=None, is_fresh=None)
    got = rerank_frame(world, params, "2026-10-17")
    assert (got[C.REASON] == C.REASON_EXPLORE).sum() > 0
    _same_lists(got, _reference(world, params, "2026-10-17"))
