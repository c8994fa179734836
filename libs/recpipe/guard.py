"""Refuse a write that would replace stored data with an empty or much smaller result.

One rule for every stage that replaces a partition or a table (feature tables, training
examples, published recommendations): an empty result is never written, and a count that falls
by more than the stage's ``max_drop_share`` against what is stored is written only with
``--force``. The check runs before the commit, so a refusal leaves the stored data as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recpipe.lake import Lake


class DestructiveWriteError(RuntimeError):
    """A replacement was refused before its commit; the stored data stays as it was."""


def shrink_problems(
    what: str,
    new: Mapping[str, int],
    old: Mapping[str, int],
    *,
    against: str,
    max_drop_share: float,
    setting: str,
    force: bool = False,
) -> list[str]:
    """Why replacing ``old`` counts by ``new`` ones is refused (empty list = allowed).

    ``new``/``old`` map a label (a measure such as ``lists``, or a partition value) to a count;
    ``against`` says what ``old`` is (for the message), ``setting`` names the config key of
    ``max_drop_share``. Refused: a result whose counts are all 0 (even with ``force``); a label
    whose stored count is > 0 and falls by more than ``max_drop_share`` of it (unless ``force``).
    """
    if not any(new.values()):
        measures = ", ".join(sorted(new)) or "rows"
        return [f"{what}: the result is empty (0 {measures}); an empty result is never written"]
    problems = []
    for label, before in sorted(old.items()):
        after = new.get(label, 0)
        if before <= 0 or force:
            continue
        drop = (before - after) / before
        if drop > max_drop_share:
            problems.append(
                f"{what}: {label} fall from {before} to {after} (-{drop:.0%}) against {against}, "
                f"more than {setting}={max_drop_share:g}; pass --force to write it anyway"
            )
    return problems


def refuse(problems: list[str]) -> None:
    """Raise :class:`DestructiveWriteError` with every problem, when there are any."""
    if problems:
        raise DestructiveWriteError(
            "refused, nothing committed (the stored data stays): " + "; ".join(problems)
        )


def counts_by(df: DataFrame, column: str) -> dict[str, int]:
    """Row counts of ``df`` per value of ``column`` (values as ISO/str labels)."""
    return {_label(column, r[0]): r[1] for r in df.groupBy(column).count().collect()}


def guard_partition_replace(
    lake: Lake,
    table: str,
    df: DataFrame,
    column: str,
    values: Iterable[Any],
    *,
    max_drop_share: float,
    setting: str,
    force: bool = False,
) -> dict[str, dict[str, int]]:
    """Check that overwriting the ``column`` partitions ``values`` of ``table`` with ``df``
    loses no partition and shrinks none beyond ``max_drop_share`` (see :func:`shrink_problems`).

    Raises :class:`DestructiveWriteError`; returns the row counts per partition, stored and new.
    """
    vals = list(values)
    new = counts_by(df, column)
    old: dict[str, int] = {}
    if lake.exists(table) and vals:
        old = counts_by(lake.read(table).where(F.col(column).isin(vals)), column)
    refuse(
        shrink_problems(
            table,
            new,
            old,
            against="the stored partitions",
            max_drop_share=max_drop_share,
            setting=setting,
            force=force,
        )
    )
    return {"stored_rows": old, "new_rows": new}


def _label(column: str, value: Any) -> str:
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return f"rows of {column}={text}"
