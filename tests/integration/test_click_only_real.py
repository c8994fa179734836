"""A real click log end to end: the MIND sample's clicks as a bare click-only CSV log.

The log is what a news portal exports: one row per click with user, article, session and an
epoch-ms time, plus the users' earlier clicks flagged as history; no impressions, no item
catalog, no titles or categories. It is mapped by config
alone (``ingest.column_mapping`` with a constant event type and an epoch unit), and ``recpipe run``
takes it through evaluate with every quality gate on. The published lists are then compared with
the popularity and ALS lists on the next day's clicks (NDCG@10).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from tests.conftest import make_config, shared_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEHAVIORS = shared_data_dir() / "mind_small_subset" / "behaviors.tsv"
RUN_DATE = dt.date(2019, 11, 14)
# The last 10 history clicks per user: the users of the run date's clicks are known before it
# (the sample's 5,000 impressions come from 4,637 users: without any history only ~100 of the
# ~950 users clicking on Nov 14 have a list, too few to compare anything).
HISTORY_K = 10


def write_click_log(behaviors: Path, out: Path, history_k: int = HISTORY_K) -> int:
    """MIND ``behaviors.tsv`` -> ``out/events/<day>/clicks.csv``: ``user, article, session,
    time_ms, history``. Rows are the impressions' clicks (``-1`` entries, ``history`` false) and
    the last ``history_k`` entries of each user's click history (``history`` true, timed before
    the user's first impression as the MIND importer does: MIND gives no time for them). No
    impressions, no titles, no categories, no item file. Returns the row count."""
    by_day: dict[dt.date, list[tuple[str, str, str, int, str]]] = {}
    history: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    for line in behaviors.read_text().splitlines():
        imp_id, user, time, hist, shown = line.split("\t")
        ts = dt.datetime.strptime(time, "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=dt.UTC)
        ms = int(ts.timestamp() * 1000)
        first[user] = min(first.get(user, ms), ms)
        if len(hist.split()) > len(history.get(user, [])):
            history[user] = hist.split()
        for token in shown.split():
            article, label = token.rsplit("-", 1)
            if label == "1":
                by_day.setdefault(ts.date(), []).append((user, article, f"s{imp_id}", ms, "false"))
    for user, items in history.items():
        items = items[-history_k:]
        for i, article in enumerate(items):
            ms = first[user] - 86_400_000 - (len(items) - i) * 1000
            day = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()
            by_day.setdefault(day, []).append((user, article, "", ms, "true"))
    n = 0
    for day, rows in sorted(by_day.items()):
        folder = out / "events" / day.isoformat()
        folder.mkdir(parents=True)
        with open(folder / "clicks.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["user", "article", "session", "time_ms", "history"])
            w.writerows(rows)
        n += len(rows)
    return n


def click_log_config(base: Path, **overrides):
    return make_config(
        base / "lake",
        base / "raw",
        ingest={
            "format": "csv",
            "column_mapping": {
                "user_id": "user",
                "item_id": "article",
                "session_id": "session",
                "is_history": "history",
                "event_type": {"const": "click"},
                "ts": {"column": "time_ms", "unit": "ms"},
            },
            "min_event_ts": "2015-01-01T00:00:00Z",
        },
        # backtest: train on Nov 9-12, validate on Nov 13, lists for Nov 14 against its clicks
        examples={"validation_start": "2019-11-13", "test_start": str(RUN_DATE)},
        # no text: the item text vector is all zeros, keep it small (the test session has the
        # default 1 GiB driver heap; 256-dim vectors on every candidate ran out of it). News
        # clicks fade within hours: a 1-hour half-life for item_trend and the trending source.
        features={"text_features": 8, "trend_half_life_hours": 1.0},
        train={"epochs": 3, "num_proc": 2},
        recommend={"candidates_per_user": 50},
        evaluate={"horizon_days": 1},
        **overrides,
    )


@pytest.fixture(scope="module")
def mind_clicks_run(spark, tmp_path_factory):
    if not BEHAVIORS.exists():
        pytest.skip(f"{BEHAVIORS} not found: the MIND sample lives in ../shared/data (not in the repo)")
    from recpipe.pipeline import run_pipeline

    base = tmp_path_factory.mktemp("mind_clicks")
    n = write_click_log(BEHAVIORS, base / "raw")
    cfg = click_log_config(base)
    assert cfg.quality.fail_on_critical  # every gate on
    cwd = base / "cwd"
    cwd.mkdir()
    old = Path.cwd()
    os.chdir(cwd)  # nothing may be written to the working directory
    try:
        summary = run_pipeline(cfg)
    finally:
        os.chdir(old)
    from recpipe.lake import open_lake

    return cfg, open_lake(cfg, spark), summary, n, cwd


def _metrics(lake, run_date: dt.date) -> dict[tuple[str, str], float]:
    rows = (
        lake.read("ops.evaluations")
        .where((F.col("run_date") == F.lit(run_date)) & (F.col("segment") == "all"))
        .collect()
    )
    return {(r["policy"], r["metric"]): r["value"] for r in rows}


def test_click_log_mapped_by_config_runs_every_stage_with_gates_on(mind_clicks_run):
    cfg, lake, _summary, n, cwd = mind_clicks_run
    # every row accepted (the sample's 7,542 clicks plus history), no catalog table
    events = lake.read(C.SILVER_EVENTS)
    assert events.count() == n
    assert events.where(~F.col(C.IS_HISTORY)).count() == 7542
    assert {r[0] for r in events.select(C.EVENT_TYPE).distinct().collect()} == {"click"}
    assert not lake.exists(C.SILVER_ITEMS)
    # every quality suite that ran passed (the gates were on, so a failure would have stopped it)
    dq = lake.read("ops.data_quality")
    suites = {r[0] for r in dq.select("suite").distinct().collect()}
    assert {"silver_events", "item_features", "user_features", "training_examples"} <= suites
    # click-only features: item "CTR" is a click share, never above 1, impressions all zero
    feats = lake.read(C.GOLD_ITEM_FEATURES)
    row = feats.agg(F.max("item_ctr_1d"), F.max("item_impressions_28d"), F.max("item_clicks_1d")).first()
    assert 0 < row[0] <= 1 and row[1] == 0 and row[2] > 1
    # recency-aware popularity (1-hour half-life): well below the day's click counts
    trend = feats.where(F.col(C.AS_OF_DATE) == F.lit(RUN_DATE)).agg(
        F.max("item_trend"), F.max("item_clicks_1d")
    )
    top_trend, top_clicks = trend.first()
    assert 0 < top_trend < top_clicks
    # lists published for the run date, none from the content source (no text)
    recs = lake.read(C.GOLD_RECOMMENDATIONS).where(F.col(C.RUN_DATE) == F.lit(RUN_DATE))
    assert recs.select(C.USER_ID).distinct().count() > 1000
    assert recs.where(F.col(C.REASON) == C.REASON_SIMILAR_CONTENT).count() == 0
    # models and reports under the lake's artifact root, nothing in the working directory
    art = Path(cfg.lake.root) / "_artifacts"
    assert any((art / "models" / "runs").iterdir())
    assert (art / "reports" / f"evaluation-{RUN_DATE}.json").exists()
    assert list(cwd.iterdir()) == []


def test_published_lists_beat_popularity_on_next_day_clicks(mind_clicks_run):
    _cfg, lake, _summary, _n, _cwd = mind_clicks_run
    m = _metrics(lake, RUN_DATE)
    pub, pop, als = (m[(p, "ndcg@10")] for p in ("published", "popularity", "als"))
    hits = {p: m[(p, "hit_rate@10")] for p in ("published", "popularity", "als")}
    print(f"next-day NDCG@10: published {pub:.4f} popularity {pop:.4f} ALS {als:.4f}; HitRate@10 {hits}")
    users = m[("published", "users_evaluated")]
    assert users > 800
    # Measured 2026-12-02 over 935 users with the 1-hour item_trend / trending half-life, three
    # runs: published NDCG@10 0.0063 / 0.0076 (popularity-weighted train negatives, this config,
    # 21 / 20 hits) and 0.0053 (uniform negatives, 16 hits); popularity 0.0 and ALS 0.0005
    # (1 hit) every time. Run-to-run spread of the published NDCG: 0.0023; the lead over the best
    # baseline 0.0048-0.0071. Before item_trend (24-hour trending, no trend feature): 0.0020-0.0046.
    # 2026-12-03, same code: 0.0090 (21 hits) in one run, 0.0034 against ALS 0.0007 (lead 0.0027)
    # in a fresh-clone CI run: two-rank training is not deterministic, and the lead spread
    # 0.0027-0.0083 over five runs. The bound is half the smallest lead seen; the baselines'
    # NDCG has never reached 0.001.
    lead = pub - max(pop, als)
    assert lead > 0.0013, (pub, pop, als)
    hit_lead = round(hits["published"] * users) - round(max(hits["popularity"], hits["als"]) * users)
    assert hit_lead >= 5, hits
