"""Expected clicks of recommendation lists under a TRUE click model (:mod:`recpipe.evaluation.truth`).

Only for lakes ingested from data whose click model is known (``recpipe generate``: the caller
passes the generator's model, ``recpipe.datasets.synthetic:SyntheticClickModel``; this module does
not import the generator): pseudonymized user ids are mapped back to the model's raw ids with the
pseudonymization key, and every list slot (0-based position = rank-1) is scored with the model's
click probability at ``run_date 00:00 UTC + serve_hours``.

Three lists per (human) user, all from allowed items the user has not consumed:

- ``published``: ``gold.recommendations`` of the run date (the pipeline, exploration included);
- ``popularity``: the globally most popular items (time-decayed feedback, as the trending source);
- ``als_only``: the implicit ALS top-N (the day's model stored by recommend, else fitted here);
  padded with the popularity list where ALS has fewer than N items (users unknown to ALS);
- any ``extra`` lists the caller passes (the evaluate job: ``fallback_ranker``, the popularity
  ranker's lists of the run's own candidates and re-rank).

Bots (probability 0.9 on anything) are left out. Reported: mean expected clicks per list.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.candidates import sources as S
from recpipe.candidates.als import day_factors
from recpipe.candidates.run import as_of_time
from recpipe.config import Config
from recpipe.evaluation.truth import ClickModel, FloatArray
from recpipe.events.transforms import pseudonymize_py
from recpipe.lake import Lake


def expected_clicks(
    lists: pd.DataFrame, model: ClickModel, raw_user_of: dict[str, str], ts_ms: int
) -> FloatArray:
    """Per-row true click probability of ``lists`` (user_id pseudonym, item_id, rank)."""
    users = [raw_user_of[u] for u in lists[C.USER_ID]]
    return model.click_probability(users, lists[C.ITEM_ID].tolist(), lists[C.RANK].to_numpy() - 1, ts_ms)


def _top_n(df: DataFrame, score: str, n: int) -> DataFrame:
    w = Window.partitionBy(C.USER_ID).orderBy(F.desc(score), F.asc(C.ITEM_ID))
    ranked = df.withColumn(C.RANK, F.row_number().over(w)).where(F.col(C.RANK) <= n)
    return ranked.select(C.USER_ID, C.ITEM_ID, C.RANK)


def evaluate_lists(
    cfg: Config,
    lake: Lake,
    run_date: dt.date,
    model: ClickModel,
    serve_hours: float = 12.0,
    als_factors: S.AlsFactors | None = None,
    extra: dict[str, DataFrame] | None = None,
) -> dict[str, Any]:
    """Mean expected clicks per list of the published, popularity and ALS-only top-N under the true
    click ``model``. ``als_factors``: the day's ALS model when the caller has it (else :func:`day_factors`);
    ``extra``: more lists by name (rows user_id, item_id, rank), valued the same way."""
    n = cfg.recommend.top_n
    as_of = as_of_time(run_date)
    key = cfg.pseudonym_key()
    raw_user_of = {pseudonymize_py(u, key): u for u in model.user_ids()}
    bots = {pseudonymize_py(u, key) for u in model.bot_ids()}

    published = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(run_date))
    users_pdf: pd.DataFrame = published.select(C.USER_ID).distinct().toPandas()
    users_pdf = users_pdf[users_pdf[C.USER_ID].isin(raw_user_of) & ~users_pdf[C.USER_ID].isin(bots)]
    spark = lake.spark
    users = spark.createDataFrame(users_pdf, f"{C.USER_ID} string")

    events = S.history(lake.read(C.SILVER_EVENTS), as_of)
    allowed = S.allowed_items(lake.read(C.SILVER_ITEMS), as_of, cfg.recommend.max_item_age_days)
    consumed = S.consumed(events)
    inter = S.interactions(events).cache()
    pop = S.trending(inter.join(allowed.select(C.ITEM_ID), C.ITEM_ID), as_of, 24.0, None)
    pop_lists = _top_n(users.crossJoin(pop).join(consumed, [C.USER_ID, C.ITEM_ID], "left_anti"), "score", n)
    if als_factors is None:
        params = S.AlsParams.of(cfg.candidates, cfg.recommend.seed)
        als_factors, _ = day_factors(lake, inter, run_date, params)
    als = S.score_als(als_factors, users, 5 * n, allowed=allowed.select(C.ITEM_ID))
    als = S.filter_candidates(als, allowed, consumed)
    # pad with popularity (ranked after every ALS item)
    pad = users.crossJoin(pop.select(C.ITEM_ID, (F.col("score") - 10.0).alias(C.SOURCE_SCORE)))
    pad = pad.join(consumed, [C.USER_ID, C.ITEM_ID], "left_anti")
    als_pool = S.best_per_pair(
        als.select(C.USER_ID, C.ITEM_ID, C.SOURCE_SCORE, C.DETAIL).unionByName(
            pad.withColumn(C.DETAIL, F.lit("pad"))
        )
    )
    als_lists = _top_n(als_pool, C.SOURCE_SCORE, n)

    ts_ms = int((as_of + dt.timedelta(hours=serve_hours)).timestamp() * 1000)
    out: dict[str, Any] = {
        "run_date": run_date.isoformat(),
        "users": len(users_pdf),
        "top_n": n,
        "serve_time": (as_of + dt.timedelta(hours=serve_hours)).isoformat(),
    }
    for name, lists in (
        ("published", published.join(users, C.USER_ID, "left_semi").select(C.USER_ID, C.ITEM_ID, C.RANK)),
        ("popularity", pop_lists),
        ("als_only", als_lists),
        *(
            (name, rows.join(users, C.USER_ID, "left_semi").select(C.USER_ID, C.ITEM_ID, C.RANK))
            for name, rows in (extra or {}).items()
        ),
    ):
        pdf = lists.toPandas()
        p = expected_clicks(pdf, model, raw_user_of, ts_ms)
        out[f"{name}_expected_clicks_per_list"] = round(float(p.sum()) / max(1, len(users_pdf)), 4)
        out[f"{name}_slots"] = int(len(pdf))
    inter.unpersist()
    return out
