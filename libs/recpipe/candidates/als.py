"""The day's ALS model, fitted once: recommend fits it and stores the factors in
``gold.als_factors`` (one partition per run date); evaluation scores its ALS baselines with the
stored factors of the lists' date instead of fitting again.

The factors are stored by id (``user_id`` on user rows, ``item_id`` on item rows), so the id map
of the fit travels with them and deletion on request finds a user's row like any other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.candidates import sources as S
from recpipe.lake import CommitResult, Lake

log = logging.getLogger(__name__)

USER, ITEM = "user", "item"


def params_text(params: S.AlsParams) -> str:
    return json.dumps(dataclasses.asdict(params), sort_keys=True)


def save_factors(lake: Lake, factors: S.AlsFactors, run_date: dt.date, params: S.AlsParams) -> CommitResult:
    """Replace the run date's partition of ``gold.als_factors`` (one commit)."""
    day, text = F.lit(run_date).cast("date"), F.lit(params_text(params))
    none = F.lit(None).cast("string")
    rows = factors.users.select(
        day.alias(C.RUN_DATE), F.lit(USER).alias("side"), C.USER_ID, none.alias(C.ITEM_ID), "features"
    ).unionByName(
        factors.items.select(
            day.alias(C.RUN_DATE), F.lit(ITEM).alias("side"), none.alias(C.USER_ID), C.ITEM_ID, "features"
        )
    )
    rows = rows.withColumn("params", text).select(*C.ALS_FACTORS_SCHEMA.fieldNames())
    return lake.overwrite(
        C.GOLD_ALS_FACTORS, rows, partition_by=[C.RUN_DATE], partitions={C.RUN_DATE: [run_date.isoformat()]}
    )


def load_factors(lake: Lake, run_date: dt.date) -> tuple[S.AlsFactors, str] | None:
    """The factors stored for ``run_date`` and the settings they were fitted with (else None)."""
    if not lake.exists(C.GOLD_ALS_FACTORS):
        return None
    day = lake.read(C.GOLD_ALS_FACTORS).where(F.col(C.RUN_DATE) == F.lit(run_date))
    stored = [r["params"] for r in day.select("params").distinct().collect()]
    if len(stored) != 1:  # none; several cannot happen (one overwrite per date)
        return None
    factors = S.AlsFactors(
        users=day.where(F.col("side") == USER).select(C.USER_ID, "features"),
        items=day.where(F.col("side") == ITEM).select(C.ITEM_ID, "features"),
    )
    return factors, stored[0]


def fit_and_save(lake: Lake, inter: DataFrame, run_date: dt.date, params: S.AlsParams) -> S.AlsFactors:
    """Fit the day's model, store it, and return the stored factors (read back: later steps
    score from the table, not from the fit's lineage)."""
    save_factors(lake, S.fit_als(inter, params), run_date, params)
    stored = load_factors(lake, run_date)
    if stored is None:
        raise RuntimeError(
            f"{C.GOLD_ALS_FACTORS}: the factors of {run_date} just written cannot be read back"
        )
    return stored[0]


def day_factors(
    lake: Lake, inter: DataFrame, run_date: dt.date, params: S.AlsParams
) -> tuple[S.AlsFactors, dict[str, object]]:
    """The ALS model of ``run_date`` for a reader (evaluation): the one recommend stored for
    that date (whatever its settings: the baseline is the model the day's lists came from),
    else a fit on ``inter`` with ``params``, not stored (evaluation writes no gold table).
    The dict says which (``model``: ``stored`` or ``fitted``) and the settings."""
    stored = load_factors(lake, run_date)
    if stored is not None:
        return stored[0], {"model": "stored", "params": json.loads(stored[1])}
    log.info("als: no factors stored for %s in %s; fitting the baseline here", run_date, C.GOLD_ALS_FACTORS)
    return S.fit_als(inter, params), {"model": "fitted", "params": json.loads(params_text(params))}
