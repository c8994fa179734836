"""Publish the run date's lists to ``gold.recommendations`` in one atomic commit, after checks.

- Checks run BEFORE the commit (:func:`check_recommendations`, :func:`degenerate_problems`);
  any failure raises :class:`PublishCheckError` and nothing is written, so the last good lists
  stay. Besides broken lists, a degenerate result is refused: no lists, a list or row count that
  falls by more than ``recommend.max_drop_share`` against the last publish (unless ``force``),
  or more than ``recommend.max_short_share`` of the users with a list shorter than N.
- Idempotent per date: the lists' content fingerprint (every column but run_id/generated_at) is
  compared with the stored partition's; when equal the commit is skipped and the table version
  does not change. Otherwise the date's partition is replaced (``overwrite`` with ``partitions``),
  earlier dates are kept.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.frames import one_row
from recpipe.guard import shrink_problems
from recpipe.lake import Lake

log = logging.getLogger(__name__)

CONTENT_COLUMNS = [*C.LIST_COLUMNS, C.MODEL_VERSION]


class PublishCheckError(RuntimeError):
    """The lists failed a publish check; nothing was committed."""


def _list_shape_problems(
    recs: DataFrame, candidate_counts: DataFrame, top_n: int, examples: int
) -> list[str]:
    """The problems of :func:`check_recommendations` seen in each list's length, items and ranks:
    shorter than N although the candidates sufficed, an item twice, ranks that are not 1..len."""
    problems: list[str] = []
    lengths = recs.groupBy(C.USER_ID).agg(
        F.count("*").alias("n"),
        F.countDistinct(C.ITEM_ID).alias("distinct_items"),
        F.countDistinct(C.RANK).alias("distinct_ranks"),
        F.min(C.RANK).alias("min_rank"),
        F.max(C.RANK).alias("max_rank"),
    )
    short = (
        candidate_counts.join(lengths, C.USER_ID, "left")
        .where(F.coalesce("n", F.lit(0)) < F.least(F.col("n_candidates"), F.lit(top_n)))
        .select(C.USER_ID, F.coalesce("n", F.lit(0)).alias("n"), "n_candidates")
    )
    rows = short.limit(examples).collect()
    if rows:
        problems.append(
            f"{short.count()} lists shorter than N={top_n} although enough candidates existed, e.g. "
            + ", ".join(f"{r[C.USER_ID]}: {r['n']} items of {r['n_candidates']} candidates" for r in rows)
        )
    dup = lengths.where(F.col("distinct_items") < F.col("n"))
    rows = dup.limit(examples).collect()
    if rows:
        problems.append(
            f"{dup.count()} lists hold an item twice, e.g. " + ", ".join(r[C.USER_ID] for r in rows)
        )
    bad_rank = lengths.where(
        (F.col("distinct_ranks") < F.col("n")) | (F.col("min_rank") != 1) | (F.col("max_rank") != F.col("n"))
    )
    rows = bad_rank.limit(examples).collect()
    if rows:
        problems.append(
            f"{bad_rank.count()} lists have ranks that are not 1..len, e.g. "
            + ", ".join(r[C.USER_ID] for r in rows)
        )
    return problems


def check_recommendations(
    recs: DataFrame,
    items: DataFrame,
    candidate_counts: DataFrame,
    as_of: dt.datetime,
    top_n: int,
    examples: int = 3,
) -> list[str]:
    """Problems that forbid publishing (empty list = OK).

    - a user whose list is shorter than N although at least N (allowed) candidates existed
      (``candidate_counts``: user_id, n_candidates; a missing list counts as length 0);
    - an item twice in one list, or ranks that are not 1..len;
    - a blocked or expired item (``items``: silver.items), a reason outside the codes, a
      propensity outside (0, 1].
    """
    problems = _list_shape_problems(recs, candidate_counts, top_n, examples)
    ts = F.lit(as_of).cast("timestamp")
    bad_items = (
        recs.join(items.select(C.ITEM_ID, "status", "expires_ts"), C.ITEM_ID, "left")
        .where(
            (F.coalesce(F.col("status"), F.lit("active")) == "blocked")
            | (F.col("expires_ts").isNotNull() & (F.col("expires_ts") < ts))
        )
        .select(C.USER_ID, C.ITEM_ID, "status", "expires_ts")
    )
    rows = bad_items.limit(examples).collect()
    if rows:
        problems.append(
            f"{bad_items.count()} recommended items are blocked or expired, e.g. "
            + ", ".join(f"{r[C.ITEM_ID]} ({r['status']}, expires {r['expires_ts']})" for r in rows)
        )
    bad_rows = recs.where(
        ~F.col(C.REASON).isin(C.REASON_CODES)
        | F.col(C.REASON).isNull()
        | F.col(C.REASON_DETAIL).isNull()
        | F.col(C.PROPENSITY).isNull()
        | (F.col(C.PROPENSITY) <= 0)
        | (F.col(C.PROPENSITY) > 1)
    )
    rows = bad_rows.limit(examples).collect()
    if rows:
        problems.append(
            f"{bad_rows.count()} rows have a reason outside {C.REASON_CODES}, no reason detail or a "
            "propensity outside (0, 1], e.g. "
            + ", ".join(f"{r[C.USER_ID]}/{r[C.ITEM_ID]} {r[C.REASON]} p={r[C.PROPENSITY]}" for r in rows)
        )
    return problems


def list_counts(recs: DataFrame, users: DataFrame, top_n: int) -> dict[str, int]:
    """``lists``, ``rows``, ``users`` (with a list or in ``users``: one ``user_id`` column) and
    ``short`` (users whose list is shorter than ``top_n``; a missing list counts as length 0)."""
    lengths = recs.groupBy(C.USER_ID).agg(F.count("*").alias("n"))
    row = one_row(
        lengths.join(users.select(C.USER_ID).distinct(), C.USER_ID, "full").agg(
            F.count(F.col("n")).alias("lists"),
            F.coalesce(F.sum("n"), F.lit(0)).alias("rows"),
            F.count("*").alias("users"),
            F.sum(F.when(F.coalesce(F.col("n"), F.lit(0)) < top_n, 1).otherwise(0)).alias("short"),
        )
    )
    return {k: int(row[k] or 0) for k in ("lists", "rows", "users", "short")}


def last_publish(lake: Lake, run_date: dt.date) -> tuple[str, dict[str, int]] | None:
    """What a publish for ``run_date`` is compared with: the lists already published for that
    date when republishing, else those of the most recent earlier run date (None: no publish)."""
    if not lake.exists(C.GOLD_RECOMMENDATIONS):
        return None
    table = lake.read(C.GOLD_RECOMMENDATIONS)
    for where, label in (
        (F.col(C.RUN_DATE) == F.lit(run_date), f"the lists already published for {run_date}"),
        (F.col(C.RUN_DATE) < F.lit(run_date), "the last published lists"),
    ):
        latest = one_row(table.where(where).agg(F.max(C.RUN_DATE)))[0]
        if latest is None:
            continue
        row = one_row(
            table.where(F.col(C.RUN_DATE) == F.lit(latest)).agg(
                F.countDistinct(C.USER_ID).alias("lists"), F.count("*").alias("rows")
            )
        )
        if row["rows"]:
            return (label if latest == run_date else f"{label} ({latest})"), {
                "lists": row["lists"],
                "rows": row["rows"],
            }
    return None


def degenerate_problems(
    counts: dict[str, int],
    previous: tuple[str, dict[str, int]] | None,
    top_n: int,
    max_drop_share: float,
    max_short_share: float,
    force: bool = False,
) -> list[str]:
    """Problems of a result that would replace good lists with an empty or degenerate one:
    no lists; a list or row count down by more than ``max_drop_share`` against ``previous``
    (:func:`last_publish`) unless ``force``; more than ``max_short_share`` of the users
    (:func:`list_counts`) with a list shorter than ``top_n``."""
    against, old = previous or ("", {})
    new = {k: counts[k] for k in ("lists", "rows")}
    problems = shrink_problems(
        "gold.recommendations",
        new,
        old,
        against=against,
        max_drop_share=max_drop_share,
        setting="recommend.max_drop_share",
        force=force,
    )
    users, short = counts["users"], counts["short"]
    if users and short / users > max_short_share:
        problems.append(
            f"{short} of {users} users ({short / users:.1%}) have a list shorter than N={top_n}, "
            f"more than recommend.max_short_share={max_short_share:g}"
        )
    return problems


def fingerprint(recs: DataFrame) -> str:
    """An order-insensitive fingerprint of the lists' content (run_id/generated_at excluded)."""
    cols = [F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in CONTENT_COLUMNS]
    row = one_row(
        recs.agg(
            F.count("*").alias("n"),
            F.sum(F.hash(*cols).cast("long")).alias("h1"),
            F.sum(F.pmod(F.xxhash64(*cols), F.lit(2_147_483_647)).cast("long")).alias("h2"),
        )
    )
    return f"{row['n']}-{row['h1'] or 0:x}-{row['h2'] or 0:x}"


def publish_recommendations(
    lake: Lake,
    recs: DataFrame,
    run_date: dt.date,
    items: DataFrame,
    candidate_counts: DataFrame,
    as_of: dt.datetime,
    top_n: int,
    *,
    max_drop_share: float,
    max_short_share: float,
    force: bool = False,
) -> dict[str, Any]:
    """Check, then replace ``gold.recommendations`` for ``run_date`` in one commit (or skip when
    the stored lists for that date are identical). Raises :class:`PublishCheckError`.

    ``force`` publishes a result whose list or row count fell by more than ``max_drop_share``
    against the last publish; it never publishes an empty or otherwise failing result."""
    other_dates = recs.where(F.col(C.RUN_DATE) != F.lit(run_date)).limit(1).count()
    if other_dates:
        raise PublishCheckError(f"recommendations hold rows of another run date than {run_date}")
    problems = check_recommendations(recs, items, candidate_counts, as_of, top_n)
    counts = list_counts(recs, candidate_counts, top_n)
    previous = last_publish(lake, run_date)
    problems += degenerate_problems(counts, previous, top_n, max_drop_share, max_short_share, force)
    if problems:
        raise PublishCheckError(
            f"publish of gold.recommendations for {run_date} refused, nothing committed (the last "
            "published lists stay): " + "; ".join(problems)
        )
    new_fp = fingerprint(recs)
    if lake.exists(C.GOLD_RECOMMENDATIONS):
        stored = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(run_date))
        if fingerprint(stored) == new_fp:
            version = lake.version(C.GOLD_RECOMMENDATIONS)
            log.info(
                "gold.recommendations for %s unchanged (fingerprint %s): commit skipped", run_date, new_fp
            )
            return {
                "committed": False,
                "version": version,
                "fingerprint": new_fp,
                "skipped_reason": "identical lists already published for this date",
            }
    res = lake.overwrite(
        C.GOLD_RECOMMENDATIONS,
        recs.select(*C.RECOMMENDATIONS_SCHEMA.fieldNames()),
        partition_by=[C.RUN_DATE],
        partitions={C.RUN_DATE: [run_date.isoformat()]},
    )
    return {
        "committed": res.committed,
        "version": res.version,
        "fingerprint": new_fp,
        "counts": counts,
        "previous": previous and {"against": previous[0], **previous[1]},
        "rows_written": res.rows_written,
        "skipped_reason": res.skipped_reason,
    }
