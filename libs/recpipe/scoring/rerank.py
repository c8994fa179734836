"""Re-ranking of one user's scored candidates into the published top-N (pure pandas/numpy).

Policy, slot by slot (k = 1..N), with ``eps = explore_share``:

1. ``adjusted = score * (1 + fresh_boost * freshness)`` (freshness in [0, 1], 0 outside the fresh
   window); items sorted by (adjusted desc, item_id asc).
2. Eligible items E_k: not shown yet and whose category has fewer than ``max_per_category`` items
   in slots 1..k-1. If E_k is empty but items remain, the category cap is relaxed (the list is
   filled before diversity is enforced beyond what the candidates allow).
3. Greedy pick G_k = first item of E_k. Exploration pool P_k = the first ``pool_size`` items of
   E_k \\ {G_k} that are fresh or uncertain (few impressions).
4. With probability eps (when P_k is not empty) show a uniform draw from P_k, else show G_k.

Propensity (stored per row): the exact probability that the policy shows item i in slot k given
what it showed in slots 1..k-1 (E_k, G_k, P_k are deterministic functions of that prefix)::

    p_k(i) = (1 - eps') * 1[i = G_k] + eps' * 1[i in P_k] / |P_k|,   eps' = eps if P_k else 0

Because G_k is never in P_k, a greedy slot has p = 1 - eps (or 1 when the pool is empty) and an
explored slot has p = eps / |P_k|; both are in (0, 1]. The probability of the whole list is the
product over slots. The draws come from a generator seeded by hash(seed, user, run date), so a
rerun gives the same lists.

:func:`rerank_user` is the plain reference, one user at a time; :func:`rerank_table` is the
kernel the job runs: the same policy and the same draws over an Arrow batch of many users (sorted
once on integer codes, numpy per slot, ids and reasons taken only for the shown rows). A test
keeps the two identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from recpipe import constants as C
from recpipe.batches import whole_groups

if TYPE_CHECKING:
    from recpipe.config import RecommendConfig

# The rows a re-ranking returns: one schema, the Spark and pandas forms derived from it.
OUT_ARROW = to_arrow_schema(StructType(C.LIST_FIELDS))
OUT_COLUMNS = OUT_ARROW.names
OUT_DDL = from_arrow_schema(OUT_ARROW)
_OUT_DTYPES = {f.name: f.type.to_pandas_dtype() for f in OUT_ARROW}
# The columns the re-ranking reads (:func:`rerank_user`, :func:`rerank_frame`).
INPUT_COLUMNS = [
    C.USER_ID,
    C.ITEM_ID,
    C.SCORE,
    "category",
    "freshness",
    "is_fresh",
    "impressions",
    C.REASON,
    C.REASON_DETAIL,
]


@dataclass(frozen=True)
class RerankParams:
    """The re-ranking policy's settings: ``recommend`` (and ``candidates.uncertain_impressions``)
    in the config (:meth:`from_config`); the defaults are the config's."""

    top_n: int = 10
    max_per_category: int = 4
    explore_share: float = 0.1
    seed: int = 11
    fresh_boost: float = 0.05
    pool_size: int = 20
    uncertain_impressions: int = 20

    @classmethod
    def from_config(cls, rc: RecommendConfig, uncertain_impressions: int = 20) -> RerankParams:
        return cls(
            top_n=rc.top_n,
            max_per_category=rc.max_per_category,
            fresh_boost=rc.fresh_boost,
            explore_share=rc.explore_share,
            seed=rc.seed,
            pool_size=rc.explore_pool_size,
            uncertain_impressions=uncertain_impressions,
        )


def user_rng(seed: int, user_id: str, run_date: str) -> np.random.Generator:
    """A generator that depends only on (seed, user, run date): stable across runs and workers."""
    digest = hashlib.sha256(f"{seed}|{user_id}|{run_date}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def rerank_user(pdf: pd.DataFrame, params: RerankParams, rng: np.random.Generator) -> pd.DataFrame:
    """One user's candidates -> top-N rows (``OUT_COLUMNS``).

    ``pdf`` columns: user_id, item_id, score, category, freshness (0..1), is_fresh (bool),
    impressions, reason, reason_detail.
    """
    if pdf.empty:
        return pd.DataFrame(columns=OUT_COLUMNS)
    user = pdf[C.USER_ID].iloc[0]
    df = pdf.drop_duplicates(C.ITEM_ID).copy()
    df["_adj"] = df[C.SCORE].astype(float) * (1.0 + params.fresh_boost * df["freshness"].astype(float))
    df = df.sort_values(["_adj", C.ITEM_ID], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    n = len(df)
    items = df[C.ITEM_ID].to_numpy()
    cats = df["category"].fillna("").to_numpy()
    explorable = (df["is_fresh"].fillna(False).to_numpy(bool)) | (
        df["impressions"].fillna(0).to_numpy() < params.uncertain_impressions
    )
    shown = np.zeros(n, dtype=bool)
    per_cat: dict[str, int] = {}
    eps = float(params.explore_share)
    rows = []
    for slot in range(1, min(params.top_n, n) + 1):
        capped = np.array([per_cat.get(c, 0) >= params.max_per_category for c in cats])
        eligible = np.flatnonzero(~shown & ~capped)
        if len(eligible) == 0:
            eligible = np.flatnonzero(~shown)  # relax the cap rather than return a short list
        g = eligible[0]
        pool = [j for j in eligible[1:] if explorable[j]][: params.pool_size]
        e = eps if pool else 0.0
        u = rng.random()
        j_pick = int(rng.integers(len(pool))) if pool else 0
        if u < e:
            i = pool[j_pick]
            prop = e / len(pool)
            kind = "fresh" if df.at[i, "is_fresh"] else "uncertain"
            reason = C.REASON_EXPLORE
            detail = f"{kind}; via {df.at[i, C.REASON]}:{df.at[i, C.REASON_DETAIL]}"
        else:
            i = g
            prop = 1.0 - e
            reason = df.at[i, C.REASON]
            detail = df.at[i, C.REASON_DETAIL]
        shown[i] = True
        per_cat[cats[i]] = per_cat.get(cats[i], 0) + 1
        rows.append((user, slot, items[i], float(df.at[i, C.SCORE]), float(prop), reason, detail))
    return pd.DataFrame(rows, columns=OUT_COLUMNS)


def rerank_frame(pdf: pd.DataFrame, params: RerankParams, run_date: str) -> pd.DataFrame:
    """Many users' candidates (the :func:`rerank_user` columns, one row per user and item) ->
    their top-N rows (``OUT_COLUMNS``): :func:`rerank_table` on pandas frames."""
    if pdf.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _OUT_DTYPES.items()})
    table = pa.Table.from_pandas(pdf[INPUT_COLUMNS], preserve_index=False)
    out: pd.DataFrame = rerank_table(table, params, run_date).to_pandas()
    return out.astype(_OUT_DTYPES)


def _codes_in_order(values: pa.Array) -> npt.NDArray[np.int64]:
    """Integer codes of string ``values`` whose order is the strings' order (equal, equal)."""
    enc = values.dictionary_encode()
    rank = np.empty(len(enc.dictionary), dtype=np.int64)
    rank[pc.array_sort_indices(enc.dictionary).to_numpy()] = np.arange(len(enc.dictionary))
    out: npt.NDArray[np.int64] = rank[enc.indices.to_numpy(zero_copy_only=False)]
    return out


def _column(table: pa.Table, name: str, kind: pa.DataType, fill: Any = None) -> pa.Array:
    """``name`` as one array of ``kind`` (an all-null pandas column arrives as Arrow's null
    type), nulls replaced by ``fill`` when given."""
    col = table.column(name).combine_chunks().cast(kind)
    return pc.fill_null(col, fill) if fill is not None else col


def rerank_table(table: pa.Table, params: RerankParams, run_date: str) -> pa.Table:
    """Many users' candidates (Arrow; the :func:`rerank_user` columns, one row per user and
    item) -> their top-N rows (``OUT_ARROW``), each user's draws from :func:`user_rng` as in
    :func:`rerank_user`, whose lists and propensities this reproduces exactly. Sorted once on
    integer codes (users, items and categories in id order); only the shown rows' ids and
    reasons are taken from the input's arrays."""
    if table.num_rows == 0:
        return OUT_ARROW.empty_table()
    user_col = _column(table, C.USER_ID, pa.string())
    users = _codes_in_order(user_col)
    item_col = _column(table, C.ITEM_ID, pa.string())
    items = _codes_in_order(item_col)
    score = _column(table, C.SCORE, pa.float64()).to_numpy(zero_copy_only=False)
    freshness = _column(table, "freshness", pa.float64()).to_numpy(zero_copy_only=False)
    adj = score * (1.0 + params.fresh_boost * freshness)
    order = np.lexsort((items, -adj, users))  # per user: adjusted score desc, item id asc
    users = users[order]
    cats = _column(table, "category", pa.string(), "").dictionary_encode().indices
    cats = cats.to_numpy(zero_copy_only=False).astype(np.int64)[order]
    fresh = _column(table, "is_fresh", pa.bool_(), False).to_numpy(zero_copy_only=False).astype(bool)[order]
    shown_few = (
        _column(table, "impressions", pa.float64(), 0.0).to_numpy(zero_copy_only=False)
        < params.uncertain_impressions
    )
    explorable = fresh | shown_few[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    names = user_col.take(pa.array(order[starts])).to_pylist()
    n_cats = int(cats.max()) + 1 if len(cats) else 0
    eps = float(params.explore_share)
    picked: list[int] = []  # positions in the sorted order
    slots: list[int] = []
    props: list[float] = []
    explored: list[tuple[int, str]] = []  # (output row, "fresh" | "uncertain")
    for name, lo, hi in zip(names, starts, ends):
        rng = user_rng(params.seed, name, run_date)
        cat = cats[lo:hi]
        expl = explorable[lo:hi]
        shown = np.zeros(hi - lo, dtype=bool)
        per_cat = np.zeros(n_cats, dtype=np.int64)
        for slot in range(1, min(params.top_n, hi - lo) + 1):
            free = ~shown
            eligible = np.flatnonzero(free & (per_cat[cat] < params.max_per_category))
            if len(eligible) == 0:
                eligible = np.flatnonzero(free)  # relax the cap rather than return a short list
            rest = eligible[1:]
            pool = rest[expl[rest]][: params.pool_size]
            e = eps if len(pool) else 0.0
            u = rng.random()
            j_pick = int(rng.integers(len(pool))) if len(pool) else 0
            if u < e:
                i = int(pool[j_pick])
                props.append(e / len(pool))
                explored.append((len(picked), "fresh" if fresh[lo + i] else "uncertain"))
            else:
                i = int(eligible[0])
                props.append(1.0 - e)
            shown[i] = True
            per_cat[cat[i]] += 1
            picked.append(lo + i)
            slots.append(slot)
    rows = pa.array(order[np.asarray(picked, dtype=np.int64)])
    reasons = _column(table, C.REASON, pa.string()).take(rows).to_pylist()
    details = _column(table, C.REASON_DETAIL, pa.string()).take(rows).to_pylist()
    for k, kind in explored:
        details[k] = f"{kind}; via {reasons[k]}:{details[k]}"
        reasons[k] = C.REASON_EXPLORE
    columns = {
        C.USER_ID: user_col.take(rows),
        C.RANK: pa.array(slots),
        C.ITEM_ID: item_col.take(rows),
        C.SCORE: pa.array(score).take(rows),
        C.PROPENSITY: pa.array(props, pa.float64()),
        C.REASON: pa.array(reasons, pa.string()),
        C.REASON_DETAIL: pa.array(details, pa.string()),
    }
    return pa.table([columns[c].cast(OUT_ARROW.field(c).type) for c in OUT_COLUMNS], schema=OUT_ARROW)


def rerank_partitions(
    params: RerankParams, run_date: str
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function over partitions sorted by user (every user's rows in one
    partition, contiguous): re-ranks whole Arrow batches with :func:`rerank_frame`, carrying a
    user whose rows continue into the next batch. The job scores and re-ranks in one pass
    (``scoring.rank.score_and_rerank``); this re-rank alone is the step-wise reference a test
    keeps it equal to."""

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in whole_groups(batches, C.USER_ID):
            yield rerank_frame(pdf, params, run_date)

    return fn
