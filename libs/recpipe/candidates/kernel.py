"""The candidate step's filter/budget kernel on Arrow tables and integer codes.

:func:`recpipe.candidates.sources.filter_and_budget` shuffles the source rows of a run by user
together with marker rows (each user's consumed items, country and category affinities) and
hands each batch of whole users to :func:`budget_table`. The batch never becomes Python objects:
user ids are dictionary-encoded, item ids looked up in the sorted allowed ids (a code per item in
id order; an item that is not allowed has none and is dropped), the trending and fresh
candidates are generated from the day's item lists (:class:`ItemCodes`) as code arrays, and the
kept rows are taken from the input's own Arrow arrays. The plain Spark references are
``filter_candidates`` + ``apply_budget`` and ``trending_candidates`` / ``fresh_candidates``;
tests keep them equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import constants as C

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

# The candidate columns (every source returns them; gold.candidates adds run_date).
CAND_COLS = [C.USER_ID, C.ITEM_ID, C.SOURCE, C.SOURCE_SCORE, C.DETAIL]
# Source scores are rounded so reruns on the same inputs give bit-identical candidates.
SCORE_DECIMALS = 6
# The marker rows that travel with a user's candidates through the shuffle (their ``source``):
# its consumed pairs and, with item lists, its country and category affinities.
CONSUMED_MARK, USER_MARK, AFFINITY_MARK = "~consumed~", "~user~", "~affinity~"
MARKS = (CONSUMED_MARK, USER_MARK, AFFINITY_MARK)
# The budget share of a source the configuration does not name.
DEFAULT_SHARE = 0.1


def group_starts(keys: npt.NDArray[Any]) -> Ints:
    """For a sorted key array: each position's offset within its run of equal keys."""
    idx = np.arange(len(keys))
    new = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, dtype=bool)
    starts: Ints = idx - np.maximum.accumulate(np.where(new, idx, 0))
    return starts


def dense(values: npt.NDArray[Any]) -> Ints:
    """Dense ranks (0..) of ``values`` in ascending order: equal values, equal ranks."""
    ranks: Ints = np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return ranks


def order(*keys: npt.NDArray[Any]) -> Ints:
    """Stable order by non-negative integer keys, most significant first: one argsort of a
    combined int64 key when the ranges fit (several times faster than ``np.lexsort``)."""
    spans = [int(k.max()) + 1 if len(k) else 1 for k in keys]
    if float(np.prod([float(x) for x in spans])) < 2.0**62:
        combined = np.zeros(len(keys[0]), dtype=np.int64)
        for k, span in zip(keys, spans):
            combined = combined * span + k
        return np.argsort(combined, kind="stable")
    out: Ints = np.lexsort(tuple(reversed(keys)))
    return out


def budget_order(user: Ints, item: Ints, src: Ints, score: Floats, share: Floats, budget: int) -> Ints:
    """Positions of the rows ``apply_budget`` keeps: per (user, source, item) the best-scored
    row; per user the ``budget`` items with the best (rank within source / ``share[src]``), then
    item code; ranks within a source by score desc, item code asc. Ordered by user, source,
    score. Item codes must follow item id order."""
    if not len(user):
        return np.zeros(0, dtype=np.int64)
    n_items, n_src = int(item.max()) + 1, int(src.max()) + 1
    worse = dense(-score)  # 0 = best score
    o = order(user, src, item, worse)
    o = o[group_starts((user[o] * n_src + src[o]) * n_items + item[o]) == 0]
    o = o[order(user[o], src[o], worse[o], item[o])]
    rank = group_starts(user[o] * n_src + src[o]) + 1
    norm = rank / share[src[o]]
    # per (user, item) the best norm, then each user's first `budget` items by (best, item)
    pair = user[o] * n_items + item[o]
    p = order(pair, dense(norm))
    first = p[group_starts(pair[p]) == 0]
    q = first[order(user[o][first], dense(norm[first]), item[o][first])]
    kept = pair[q[group_starts(user[o][q]) < budget]]
    out: Ints = o[np.isin(pair, kept)]
    return out


def ragged_join(left: Ints, right: Ints) -> tuple[Ints, Ints]:
    """Every (i, j) with ``left[i] == right[j]`` (codes; a negative code matches nothing), in
    ``left`` order, then ``right`` order."""
    by = np.argsort(right, kind="stable")
    keys = right[by]
    lo = np.searchsorted(keys, left, "left")
    n = np.where(left >= 0, np.searchsorted(keys, left, "right") - lo, 0)
    li = np.repeat(np.arange(len(left)), n)
    within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return li, by[np.repeat(lo, n) + within]


def _codes(values: pa.Array, vocabulary: pa.Array) -> Ints:
    """Position of each value in ``vocabulary`` (-1: absent or null)."""
    idx = pc.index_in(values, value_set=vocabulary)
    codes: Ints = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes


def _strings(values: Any) -> pa.Array:
    arr = pa.array(values, pa.string()) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.string())


@dataclass(frozen=True)
class ItemCodes:
    """The day's allowed item ids (sorted: codes follow id order) and the trending and fresh
    lists as codes into them, shipped once to every Python worker."""

    ids: pa.Array  # allowed item ids, ascending, distinct
    global_item: Ints
    global_score: Floats
    countries: pa.Array  # vocabulary of country_*
    country: Ints
    country_item: Ints
    country_score: Floats
    categories: pa.Array  # vocabulary of category_* and fresh_category
    category: Ints
    category_item: Ints
    category_score: Floats
    newest_item: Ints
    newest_recency: Floats
    fresh_category: Ints
    fresh_item: Ints
    fresh_recency: Floats
    k_fresh: int

    @staticmethod
    def allowed_only(ids: Any) -> ItemCodes:
        """No lists: the allowed ids alone (filter and budget only)."""
        empty = pd.DataFrame({C.ITEM_ID: [], "score": [], "recency": []})
        return ItemCodes.of(ids, empty, empty.assign(country=[]), empty.assign(category=[]), None, 0)

    @staticmethod
    def of(
        ids: Any,
        global_trend: pd.DataFrame,
        country_trend: pd.DataFrame,
        category_trend: pd.DataFrame,
        fresh: pd.DataFrame | None,
        k_fresh: int,
    ) -> ItemCodes:
        """From the allowed ids and the collected lists (pandas frames: item_id, score;
        country, item_id, score; category, item_id, score; fresh: item_id, category, recency)."""
        vocab = pc.unique(_strings(ids).drop_null())
        vocab = vocab.take(pc.sort_indices(vocab))
        fresh = fresh if fresh is not None else pd.DataFrame({C.ITEM_ID: [], "category": [], "recency": []})
        newest = fresh.sort_values(["recency", C.ITEM_ID], ascending=[False, True], kind="mergesort")
        newest = newest.head(k_fresh)

        def item(df: pd.DataFrame) -> Ints:
            return _codes(_strings(df[C.ITEM_ID].astype(object).tolist()), vocab)

        def floats(s: pd.Series) -> Floats:
            return np.asarray(s, dtype=np.float64)

        countries = pc.unique(_strings(country_trend["country"].dropna().astype(str).tolist()))
        cats = pd.concat([category_trend["category"], fresh["category"]]).dropna().astype(str)
        categories = pc.unique(_strings(cats.tolist()))

        def of_vocab(s: pd.Series, v: pa.Array) -> Ints:
            return _codes(_strings([None if pd.isna(x) else str(x) for x in s]), v)

        return ItemCodes(
            ids=vocab,
            global_item=item(global_trend),
            global_score=floats(global_trend["score"]),
            countries=countries,
            country=of_vocab(country_trend["country"], countries),
            country_item=item(country_trend),
            country_score=floats(country_trend["score"]),
            categories=categories,
            category=of_vocab(category_trend["category"], categories),
            category_item=item(category_trend),
            category_score=floats(category_trend["score"]),
            newest_item=item(newest),
            newest_recency=floats(newest["recency"]),
            fresh_category=of_vocab(fresh["category"], categories),
            fresh_item=item(fresh),
            fresh_recency=floats(fresh["recency"]),
            k_fresh=k_fresh,
        )


@dataclass
class _Rows:
    """Candidate rows as codes: ``det`` indexes the batch's detail strings (the input's detail
    column, then the generated details)."""

    user: Ints
    item: Ints
    src: Ints
    score: Floats
    det: Ints

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        return _Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Rows.__dataclass_fields__))

    def take(self, idx: Ints) -> _Rows:
        return _Rows(self.user[idx], self.item[idx], self.src[idx], self.score[idx], self.det[idx])


class _Details:
    """The details generated for a batch's trending and fresh rows, as indexes after the
    input's ``n`` detail values."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.texts)
            self.texts.append(text)
        return self.n + self._index[text]

    def rank(self, det: Ints) -> Ints:
        """Ascending string order of generated details (for ties between rows of one pair)."""
        ranks = np.argsort(np.argsort(np.array(self.texts, dtype=object), kind="stable"))
        out: Ints = ranks[det - self.n] if len(self.texts) else np.zeros(len(det), dtype=np.int64)
        return out


def _rounded(score: Floats) -> Floats:
    out: Floats = np.round(score, SCORE_DECIMALS)
    return out


def _best_pairs(rows: _Rows, details: _Details) -> _Rows:
    """Per (user, item) the best-scored row, ties by detail ascending."""
    if not len(rows.user):
        return rows
    o = order(rows.user, rows.item, dense(-rows.score), details.rank(rows.det))
    pair = rows.user[o] * (int(rows.item.max()) + 1) + rows.item[o]
    return rows.take(o[np.r_[True, pair[1:] != pair[:-1]]])


@dataclass
class _Users:
    """A batch's users from their marker rows: countries, category affinities."""

    user: Ints  # user codes with a ~user~ row
    country: Ints  # country code into ItemCodes.countries (-1: none)
    country_text: list[str | None]
    aff_user: Ints
    aff_category: Ints  # category code into ItemCodes.categories (-1: no list has it)
    affinity: Floats
    aff_suffix: list[str]  # per affinity row: "" or " (<basis>)"
    aff_name: list[str]


def _users(table: pa.Table, user: Ints, src_is: dict[str, npt.NDArray[np.bool_]], lists: ItemCodes) -> _Users:
    u = np.flatnonzero(src_is[USER_MARK])
    # one ~user~ row per user: the first
    u = u[np.r_[True, user[u][1:] != user[u][:-1]]] if len(u) else u
    country = table.column(C.DETAIL).take(pa.array(u))
    a = np.flatnonzero(src_is[AFFINITY_MARK])
    cats = table.column(C.DETAIL).take(pa.array(a))
    basis = table.column(C.ITEM_ID).take(pa.array(a)).to_pylist()
    score = table.column(C.SOURCE_SCORE).take(pa.array(a)).to_numpy(zero_copy_only=False)
    keep = pc.is_valid(cats).to_numpy(zero_copy_only=False).astype(bool)
    a, cats, basis, score = (
        a[keep],
        cats.filter(pa.array(keep)),
        [b for b, k in zip(basis, keep) if k],
        score[keep],
    )
    countries, categories = _strings(country), _strings(cats)
    return _Users(
        user=user[u],
        country=_codes(countries, lists.countries),
        country_text=countries.to_pylist(),
        aff_user=user[a],
        aff_category=_codes(categories, lists.categories),
        affinity=np.asarray(score, dtype=np.float64),
        aff_suffix=["" if b is None else f" ({b})" for b in basis],
        aff_name=categories.to_pylist(),
    )


def _list_rows(us: _Users, lists: ItemCodes, names: list[str], details: _Details) -> list[_Rows]:
    """The trending and fresh rows of a batch's users (``trending_candidates`` and
    ``fresh_candidates``' rows, before the filter)."""
    tr, fr = names.index(C.REASON_TRENDING), names.index(C.REASON_FRESH)

    def rows(user: Ints, item: Ints, src: int, score: Floats, det: Ints) -> _Rows:
        return _Rows(user, item, np.full(len(user), src, dtype=np.int64), _rounded(score), det)

    def cross(item: Ints, score: Floats, text: str, src: int) -> _Rows:
        n = len(us.user)
        return rows(
            np.repeat(us.user, len(item)),
            np.tile(item, n),
            src,
            np.tile(score, n),
            np.full(n * len(item), details.code(text), dtype=np.int64),
        )

    def per_affinity(cat: Ints, prefix: str) -> tuple[Ints, Ints, Ints]:
        li, rj = ragged_join(us.aff_category, cat)
        codes = np.array(
            [details.code(f"{prefix}{us.aff_name[i]}{us.aff_suffix[i]}") for i in range(len(us.aff_name))],
            dtype=np.int64,
        )
        return li, rj, codes[li] if len(codes) else np.zeros(0, dtype=np.int64)

    # trending: global, the user's country, the user's categories
    g = cross(lists.global_item, lists.global_score * 0.8, "global", tr)
    ui, cj = ragged_join(us.country, lists.country)
    c_codes = np.array(
        [-1 if c is None else details.code(f"country:{c}") for c in us.country_text], dtype=np.int64
    )
    c = rows(us.user[ui], lists.country_item[cj], tr, lists.country_score[cj], c_codes[ui] if len(ui) else ui)
    ai, kj, a_codes = per_affinity(lists.category, "category:")
    cat = rows(
        us.aff_user[ai], lists.category_item[kj], tr, lists.category_score[kj] * us.affinity[ai], a_codes
    )
    trending = _best_pairs(_Rows.concat([g, c, cat]), details)

    # fresh: the newest for everyone, new items of the user's categories; the best k per user
    n = cross(lists.newest_item, lists.newest_recency * 0.5, "new", fr)
    ai, fj, f_codes = per_affinity(lists.fresh_category, "new in ")
    fc = rows(
        us.aff_user[ai], lists.fresh_item[fj], fr, lists.fresh_recency[fj] * (0.5 + us.affinity[ai]), f_codes
    )
    fresh = _best_pairs(_Rows.concat([n, fc]), details)
    if len(fresh.user):
        o = order(fresh.user, dense(-fresh.score), fresh.item)
        fresh = fresh.take(o[group_starts(fresh.user[o]) < lists.k_fresh])
    return [trending, fresh]


def budget_table(
    table: pa.Table, lists: ItemCodes, budget: int, shares: dict[str, float], with_lists: bool
) -> pa.Table:
    """One batch of whole users (CAND_COLS rows sorted by user, marker rows included) ->
    the candidate rows kept: allowed, not consumed, within each user's budget; with
    ``with_lists``, the users' trending and fresh rows generated and budgeted with the rest."""
    schema = table.schema
    n = table.num_rows
    if not n:
        return table.select(CAND_COLS).cast(_out_schema(schema))
    table = table.combine_chunks()
    users = table.column(C.USER_ID).chunk(0).dictionary_encode()
    user = users.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    item = _codes(_strings(table.column(C.ITEM_ID)), lists.ids)
    sources = _strings(table.column(C.SOURCE)).dictionary_encode()
    names = [str(s) for s in sources.dictionary.to_pylist()]
    src = sources.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    for extra in (C.REASON_TRENDING, C.REASON_FRESH):
        if extra not in names:
            names.append(extra)
    src_is = {m: (src == names.index(m)) if m in names else np.zeros(n, dtype=bool) for m in MARKS}
    score = table.column(C.SOURCE_SCORE).to_numpy(zero_copy_only=False).astype(np.float64)

    n_items = len(lists.ids)
    marked = src_is[CONSUMED_MARK] | src_is[USER_MARK] | src_is[AFFINITY_MARK]
    cand = np.flatnonzero(~marked & (item >= 0))
    parts = [_Rows(user[cand], item[cand], src[cand], score[cand], cand.astype(np.int64))]
    details = _Details(n)
    if with_lists:
        parts += _list_rows(_users(table, user, src_is, lists), lists, names, details)
    rows = _Rows.concat(parts)
    done = np.flatnonzero(src_is[CONSUMED_MARK] & (item >= 0))
    if len(done):
        rows = rows.take(
            np.flatnonzero(~np.isin(rows.user * n_items + rows.item, user[done] * n_items + item[done]))
        )
    share = np.array([float(shares.get(s, DEFAULT_SHARE)) for s in names])
    kept = rows.take(budget_order(rows.user, rows.item, rows.src, rows.score, share, budget))

    detail = _strings(table.column(C.DETAIL))
    all_details = pa.concat_arrays([detail, pa.array(details.texts, pa.string())])
    out = pa.table(
        {
            C.USER_ID: users.dictionary.take(pa.array(kept.user)),
            C.ITEM_ID: lists.ids.take(pa.array(kept.item)),
            C.SOURCE: pa.array(names, pa.string()).take(pa.array(kept.src)),
            C.SOURCE_SCORE: pa.array(kept.score, pa.float64()),
            C.DETAIL: all_details.take(pa.array(kept.det)),
        }
    )
    return out.cast(_out_schema(schema))


def _out_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([schema.field(c) for c in CAND_COLS])
