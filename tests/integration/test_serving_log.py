"""The serving-log contract end to end: served impressions and clicks ingested into a lake whose
silver.events predates the contract (the schema evolves), then attributed as training labels."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe.events.ingest import run_ingest
from recpipe.events.transforms import pseudonymize_py
from recpipe.examples import labels as E
from recpipe.features import build as B
from recpipe.lake import open_lake
from tests.conftest import make_config

pytestmark = pytest.mark.integration

UTC = dt.UTC
LIST = "recommend-2026-10-03-ab12cd34"
SERVED = "served list (list_run_id set) without: "


def at(hour: int, minute: int) -> str:
    return f"2026-10-03T{hour:02d}:{minute:02d}:00Z"


def imp(user, item, request, position, propensity, reason, t, **kw):
    rec = {"user_id": user, "item_id": item, "event_type": "impression", "ts": t, "request_id": request}
    rec |= {"position": position, "propensity": propensity, "list_run_id": LIST, "arm": "model"}
    return rec | {"reason": reason} | kw


def click(user, item, request, t, **kw):
    rec = {"user_id": user, "item_id": item, "event_type": "click", "ts": t, "request_id": request}
    return rec | {"list_run_id": LIST} | kw


# One hour file of served logs, line by line.
LINES = [
    imp("U1", "A", "R1", 0, 0.6, "co_visit", at(10, 0)),  # 1
    imp("U1", "B", "R1", 1, 0.3, "trending", at(10, 0)),  # 2
    imp("U1", "C", "R1", 2, 0.1, "explore", at(10, 0)),  # 3
    click("U1", "A", "R1", at(10, 5)),  # 4 attributed to line 1
    click("U1", "B", "R9", at(10, 5)),  # 5 a request that served no impression
    click("U1", "Z", "R1", at(10, 6)),  # 6 an item not in the served list
    imp("U1", "D", "R2", 0, 0.5, "als", at(11, 0)),  # 7
    click("U1", "D", "R2", at(10, 59)),  # 8 before its impression
    click("U2", "C", "R1", at(10, 5)),  # 9 another user than the one served
    imp("U1", "E", "R1", 3, 0.05, "fresh", at(10, 0), arm=None),  # 10 quarantined: no arm
    click("U1", "A", None, at(10, 7)),  # 11 quarantined: no request_id
    {"user_id": "U3", "item_id": "A", "event_type": "impression", "ts": at(10, 0)},  # 12 unserved
]


def raw_user(cfg):
    """The raw user id of the test's pseudonyms, as column ``u``."""
    key = cfg.pseudonym_key()
    pairs = [x for u in ("U1", "U2", "U3") for x in (F.lit(pseudonymize_py(u, key)), F.lit(u))]
    return F.create_map(*pairs)[F.col(C.USER_ID)].alias("u")


@pytest.fixture(scope="module")
def served_lake(spark, tmp_path_factory):
    """A lake whose silver.events has the columns from before the contract and one stored event;
    then one batch of served logs ingested. Returns ``(cfg, lake, summary)``."""
    tmp = tmp_path_factory.mktemp("serving_log")
    cfg = make_config(tmp / "lake", tmp / "raw")
    lake = open_lake(cfg, spark)
    t0 = dt.datetime(2026, 10, 2, 9, 0, tzinfo=UTC)
    old = (
        "old-1",
        "p_old",
        "N0",
        "click",
        t0,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        False,
        "old",
        t0,
        t0.date(),
    )
    lake.append(C.SILVER_EVENTS, spark.createDataFrame([old], C.SILVER_EVENTS_SCHEMA), [C.EVENT_DATE])
    day = tmp / "raw" / "events" / "2026-10-03"
    day.mkdir(parents=True)
    (day / "10.jsonl").write_text("".join(json.dumps(r) + "\n" for r in LINES))
    summary = run_ingest(cfg, spark, input_dir=str(tmp / "raw"), batch_id="served-1")
    return cfg, lake, summary


def test_ingest_adds_the_serving_log_columns_and_keeps_the_fields(spark, served_lake):
    cfg, lake, summary = served_lake
    # the counts: two served records without a field of the contract are quarantined
    assert (summary["input_records"], summary["accepted"], summary["duplicates"]) == (12, 10, 0)
    assert summary["quarantined_by_reason"] == {C.INVALID_FIELD: 2}
    q = {r[C.LINE]: (r[C.REASON], r[C.DETAIL]) for r in lake.read(C.BRONZE_QUARANTINE).collect()}
    assert q == {
        10: (C.INVALID_FIELD, f"impression from a {SERVED}arm"),
        11: (C.INVALID_FIELD, f"click from a {SERVED}request_id"),
    }
    # the table gained the columns; the row stored before reads them as null
    assert lake.schema(C.SILVER_EVENTS).fieldNames() == C.SILVER_EVENTS_FULL_SCHEMA.fieldNames()
    silver = lake.read(C.SILVER_EVENTS)
    old = silver.where(F.col(C.EVENT_ID) == "old-1").select(*C.SERVING_LOG_FIELDS).collect()
    assert [tuple(r) for r in old] == [(None, None, None)]
    # the new rows keep the served fields
    cols = [C.ITEM_ID, C.EVENT_TYPE, C.REQUEST_ID, C.POSITION, C.PROPENSITY, *C.SERVING_LOG_FIELDS]
    got = silver.where(F.col(C.BATCH_ID) == "served-1").select(raw_user(cfg), *cols)
    expected = spark.createDataFrame(
        [
            ("U1", "A", "impression", "R1", 0, 0.6, LIST, "model", "co_visit"),
            ("U1", "B", "impression", "R1", 1, 0.3, LIST, "model", "trending"),
            ("U1", "C", "impression", "R1", 2, 0.1, LIST, "model", "explore"),
            ("U1", "A", "click", "R1", None, None, LIST, None, None),
            ("U1", "B", "click", "R9", None, None, LIST, None, None),
            ("U1", "Z", "click", "R1", None, None, LIST, None, None),
            ("U1", "D", "impression", "R2", 0, 0.5, LIST, "model", "als"),
            ("U1", "D", "click", "R2", None, None, LIST, None, None),
            ("U2", "C", "click", "R1", None, None, LIST, None, None),
            ("U3", "A", "impression", None, None, None, None, None, None),
        ],
        "u string, item_id string, event_type string, request_id string, position int, "
        "propensity double, list_run_id string, arm string, reason string",
    )
    assertDataFrameEqual(got, expected)
    # a rerun of the batch commits nothing (the column change is not repeated either)
    version = lake.version(C.SILVER_EVENTS)
    again = run_ingest(cfg, spark, batch_id="served-1")
    assert again["already_ingested"] and lake.version(C.SILVER_EVENTS) == version


def test_a_click_is_only_attributed_to_an_impression_served_to_it(spark, served_lake):
    """Same user, same item, same request, the impression at or before the click within the
    window: only line 4 labels its impression (line 1); the click of another request (5), of an
    item not in the list (6), before its impression (8) or by another user (9) label nothing."""
    cfg, lake, _ = served_lake
    events = B.prepare_events(lake.read(C.SILVER_EVENTS))
    labelled = E.label_impressions(events, cfg.examples.attribution_window_minutes)
    got = labelled.select(raw_user(cfg), C.ITEM_ID, C.REQUEST_ID, C.POSITION, C.PROPENSITY, C.LABEL)
    expected = spark.createDataFrame(
        [
            ("U1", "A", "R1", 0, 0.6, 1),
            ("U1", "B", "R1", 1, 0.3, 0),
            ("U1", "C", "R1", 2, 0.1, 0),
            ("U1", "D", "R2", 0, 0.5, 0),
            ("U3", "A", None, None, None, 0),
        ],
        "u string, item_id string, request_id string, position int, propensity double, label int",
    )
    assertDataFrameEqual(got, expected)
