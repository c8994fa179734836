"""Leakage check: no training example may carry features computed from its own or later events.

An example at ``event_ts`` leaks when ``feature_ts`` (the latest event behind its features) is at
or after ``event_ts``, or when it joined features dated after its day (cutoff ``as_of_date 00:00``
later than ``event_ts``). Either fails the job before anything is written.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.features.build import cutoff_ts
from recpipe.frames import one_row


class LeakageError(RuntimeError):
    """Examples whose features saw events at or after the example; the message names one."""


def leaking() -> Column:
    """True for examples whose features are not strictly before the example."""
    ts = F.col(C.EVENT_TS)
    by_event = F.col(C.FEATURE_TS).isNotNull() & (F.col(C.FEATURE_TS) >= ts)
    by_cutoff = cutoff_ts(F.col(C.AS_OF_DATE)) > ts
    return F.coalesce(by_event | by_cutoff, by_event, F.lit(False))


def check_leakage(examples: DataFrame) -> dict[str, Any]:
    """Raise :class:`LeakageError` naming the count and one example row; else return the counts."""
    bad = examples.where(leaking())
    n = bad.count()
    if n:
        ex = one_row(
            bad.select(C.EXAMPLE_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TS, C.FEATURE_TS, C.AS_OF_DATE).orderBy(
                C.EVENT_TS, C.EXAMPLE_ID
            )
        )
        raise LeakageError(
            f"leakage check failed: {n} training examples use features computed from events at or "
            f"after the example's event_ts, e.g. {ex.asDict()}. Nothing was written."
        )
    return {"checked": True, "leaking_examples": n}
