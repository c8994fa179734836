"""Arrow/pandas batches regrouped by a key, for ``mapInPandas`` over key-sorted partitions."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd


def whole_groups(batches: Iterator[pd.DataFrame], key: str) -> Iterator[pd.DataFrame]:
    """Re-cut batches of a partition sorted by ``key`` (every key's rows in this partition,
    contiguous) so that no key is split between two yielded frames: the last key of a batch is
    held back and joined to the next batch."""
    pending: pd.DataFrame | None = None
    for pdf in batches:
        if pending is not None and not pending.empty:
            pdf = pd.concat([pending, pdf], ignore_index=True)
        if pdf.empty:
            continue
        tail = (pdf[key] == pdf[key].iloc[-1]).to_numpy()
        pending = pdf[tail]
        if not tail.all():
            yield pdf[~tail]
    if pending is not None and not pending.empty:
        yield pending
