"""Typed helpers over Spark DataFrames."""

from __future__ import annotations

from pyspark.sql import DataFrame, Row


def one_row(df: DataFrame) -> Row:
    """The first row of a frame that is never empty: a global aggregate (``df.agg(...)`` without
    ``groupBy`` returns exactly one row), ``spark.range(1)``, a frame just counted non-empty.

    ``DataFrame.first()`` is typed ``Row | None`` (None for an empty frame); this states the
    invariant once instead of at every call site, and names it if it is ever broken."""
    row = df.first()
    if row is None:
        raise ValueError("expected a non-empty frame (a global aggregate), got an empty one")
    return row
