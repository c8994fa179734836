"""whole_groups: re-cut key-sorted batches so that no key is split between frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recpipe.batches import whole_groups

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("min_rows", [1, 5, 40, 10_000])
@pytest.mark.parametrize("batch", [1, 3, 7, 50])
def test_every_key_lands_in_exactly_one_frame_with_all_its_rows(min_rows, batch):
    rng = np.random.default_rng(min_rows * 100 + batch)
    keys = np.sort(rng.choice([f"k{i:03d}" for i in range(60)], size=300))
    df = pd.DataFrame({"key": keys, "n": np.arange(len(keys))})
    batches = [df.iloc[i : i + batch] for i in range(0, len(df), batch)]
    batches.insert(2, df.iloc[:0])  # an empty batch in between
    frames = list(whole_groups(iter(batches), "key", min_rows=min_rows))
    assert pd.concat(frames)["n"].tolist() == list(range(len(df)))  # nothing lost, order kept
    owner: dict[str, int] = {}
    for i, f in enumerate(frames):
        for k in f["key"].unique():
            assert owner.setdefault(k, i) == i, f"key {k} split between frames {owner[k]} and {i}"
    largest = int(df.groupby("key").size().max())  # the held-back key is not in the frame
    assert all(len(f) >= min_rows - largest for f in frames[:-1])  # big frames: few kernel calls
    if min_rows == 1:  # small frames are yielded as the batches come, not all at the end
        assert len(frames) >= min(df["key"].nunique(), len(df) // batch) // 2


def test_no_batches_no_frames():
    assert list(whole_groups(iter([]), "key")) == []


def test_gathered_keeps_order_and_rows_and_reaches_the_minimum():
    import pyarrow as pa

    from recpipe.batches import gathered

    sizes = [3, 0, 4, 10, 1, 1, 2]
    start = [sum(sizes[:i]) for i in range(len(sizes))]
    batches = [pa.record_batch({"x": list(range(s, s + n))}) for s, n in zip(start, sizes)]
    tables = list(gathered(iter(batches), 5))
    assert [t.num_rows for t in tables] == [7, 10, 4]
    assert sum((t.column("x").to_pylist() for t in tables), []) == list(range(sum(sizes)))
    assert list(gathered(iter([]), 5)) == []


@pytest.mark.parametrize("min_rows", [1, 5, 40, 10_000])
@pytest.mark.parametrize("batch", [1, 3, 7, 50])
def test_arrow_tables_never_split_a_key_and_keep_every_row(min_rows, batch):
    """whole_groups_arrow (the mapInArrow twin): the same guarantees over Arrow batches."""
    import pyarrow as pa

    from recpipe.batches import whole_groups_arrow

    rng = np.random.default_rng(min_rows * 100 + batch + 7)
    keys = np.sort(rng.choice([f"k{i:03d}" for i in range(60)], size=300))
    table = pa.table({"key": keys, "n": np.arange(len(keys))})
    batches = [b for i in range(0, len(keys), batch) for b in table.slice(i, batch).to_batches()]
    batches.insert(2, batches[0].slice(0, 0))  # an empty batch in between
    tables = list(whole_groups_arrow(iter(batches), "key", min_rows=min_rows))
    got = pa.concat_tables(tables)
    assert got.column("n").to_pylist() == list(range(len(keys)))  # nothing lost, order kept
    owner: dict[str, int] = {}
    for i, t in enumerate(tables):
        for k in set(t.column("key").to_pylist()):
            assert owner.setdefault(k, i) == i, f"key {k} split between tables {owner[k]} and {i}"
    largest = int(pd.Series(keys).value_counts().max())
    assert all(t.num_rows >= min_rows - largest for t in tables[:-1])
    assert all(t.num_rows > 0 for t in tables)
