"""Ingest transforms on tiny literal inputs: parsing, classification, pseudonyms, dedupe."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe import constants as C
from recpipe.config import ColumnSpec, ConfigError, config_from_dict
from recpipe.events import transforms as T

pytestmark = pytest.mark.unit

UTC = dt.UTC
ALLOWED = ["impression", "click", "read", "like", "share", "hide"]
MAX_DT = dt.datetime(2026, 11, 1, tzinfo=UTC)


def max_ts():
    return F.lit(MAX_DT).cast("timestamp")


def test_parse_jsonl_keeps_every_line_with_its_number_and_error():
    # given: good, truncated, non-object and invalid UTF-8 lines
    data = (
        b'{"user_id":"U1","item_id":"N1","event_type":"click","ts":1791036309123,"position":2}\n'
        b'{"user_id":"U1","item_id":\n'
        b"[1,2,3]\n"
        b'\xff\xfe{"x":1}\n'
    )
    # when
    cols = T.parse_jsonl_bytes("f.jsonl", data)
    # then
    assert cols["line"] == [1, 2, 3, 4]
    assert cols["parse_error"][0] is None
    assert cols["ts"][0] == "1791036309123" and cols["position"][0] == "2"
    assert cols["parse_error"][1].startswith("invalid JSON")
    assert cols["parse_error"][2] == "not a JSON object (list)"
    assert cols["parse_error"][3] == "invalid UTF-8"


def test_parse_jsonl_quarantines_lines_python_parses_but_cannot_store():
    """A 5,000-digit integer (over Python's int-to-text limit) and an unpaired surrogate escape
    in a read field each failed the whole file before (ValueError without ``msg``; Arrow refusing
    the string); now each is its line's parse error and the other lines stay good."""
    import pyarrow as pa

    good = b'{"user_id":"U1","item_id":"N1","event_type":"click","ts":"2026-10-03T14:05:09Z"}'
    data = b"\n".join(
        [
            good,
            b'{"user_id":"U2","position":' + b"7" * 5000 + b"}",
            b'{"user_id":"\\ud800","item_id":"N2","is_history":true}',
            b'{"user_id":"U3","note":"\\ud800 in a key not read"}',
            good,
        ]
    )
    cols = T.parse_jsonl_bytes("f.jsonl", data)
    pa.RecordBatch.from_pydict(cols, schema=T.PARSED_ARROW)  # storable
    assert cols["line"] == [1, 2, 3, 4, 5]
    err = cols["parse_error"]
    assert err[0] is None and err[3] is None and err[4] is None
    assert err[1].startswith("invalid JSON: ") and "4300" in err[1]
    assert err[2] == "invalid JSON: unpaired surrogate escape in 'user_id'"
    assert cols["user_id"][1:4] == [None, None, "U3"] and cols["is_history"][2] is None
    assert cols["user_id"][4] == "U1"


def _parsed(spark, records):
    rows = []
    for i, r in enumerate(records, start=1):
        rows.append(
            {
                "source_file": "f.jsonl",
                "line": i,
                "raw": str(r),
                "parse_error": r.pop("_error", None),
                **{f: r.get(f) for f in C.RAW_FIELDS if f != "is_history"},
                "is_history": r.get("is_history"),
            }
        )
    return spark.createDataFrame(rows, T.PARSED_DDL)


def base(**kw):
    rec = {"user_id": "U1", "item_id": "N1", "event_type": "click", "ts": "2026-10-03T14:05:09.123Z"}
    rec.update(kw)
    return rec


def test_classify_assigns_the_first_applicable_reason(spark):
    # given
    records = [
        base(),  # valid
        base(_error="invalid JSON"),  # malformed
        base(user_id="  "),  # missing_field
        base(event_type="Hover"),  # unknown_event_type
        base(ts="2026-13-45T99:00:00Z"),  # bad_timestamp (unparseable)
        base(ts="1999-12-31T23:59:59.999Z"),  # bad_timestamp (too early)
        base(ts="2099-01-01T00:00:00Z"),  # future_timestamp
        base(position="-1"),  # invalid_field
        base(event_type=" IMPRESSION ", ts="2026-10-03T16:05:09.123+02:00"),  # valid, normalized
        base(event_type="view", ts="1791036309123"),  # alias, epoch ms
        base(item_id=None, ts="yesterday"),  # missing_field wins over bad ts
    ]
    # when
    out = T.classify(
        _parsed(spark, records), ALLOWED, {"view": "impression"}, "2000-01-01T00:00:00Z", max_ts()
    )
    got = [(r.line, r.reason, r.event_type_norm) for r in out.orderBy("line").collect()]
    # then
    assert [g[1] for g in got] == [
        None,
        C.MALFORMED,
        C.MISSING_FIELD,
        C.UNKNOWN_EVENT_TYPE,
        C.BAD_TIMESTAMP,
        C.BAD_TIMESTAMP,
        C.FUTURE_TIMESTAMP,
        C.INVALID_FIELD,
        None,
        None,
        C.MISSING_FIELD,
    ]
    assert got[8][2] == "impression" and got[9][2] == "impression"


def test_timestamp_formats_parse_to_the_same_instant(spark):
    df = spark.createDataFrame(
        [
            ("2026-10-03T14:05:09.123Z",),
            ("2026-10-03T16:05:09.123+02:00",),
            ("1791036309123",),
            ("2026-10-03 14:05:09.123",),
            ("03/10/2026 xx",),
            ("2026",),
        ],
        "ts string",
    )
    got = [r[0] for r in df.select(T.parse_timestamp(F.col("ts"))).collect()]
    want = dt.datetime(2026, 10, 3, 14, 5, 9, 123000)
    assert got[:4] == [want] * 4
    assert got[4] is None
    # a bare integer is epoch milliseconds (1970 here), which classify() rejects as too early
    assert got[5] == dt.datetime(1970, 1, 1, 0, 0, 2, 26000)


def test_pseudonymize_in_spark_is_hmac_sha256(spark):
    key = "a secret key"
    df = spark.createDataFrame([("U0001234",), ("ü-user",), (None,)], "u string")
    got = [r[0] for r in df.select(T.pseudonymize(F.col("u"), key)).collect()]
    assert got == [T.pseudonymize_py("U0001234", key), T.pseudonymize_py("ü-user", key), None]
    assert got[0] != T.pseudonymize_py("U0001234", "another key")


def test_to_silver_derives_stable_event_ids_and_dedupe_keeps_first_delivery(spark):
    # given: the same event delivered twice in different formats, and a distinct one
    records = [
        base(event_type="Click", ts="2026-10-03T14:05:09.123Z", request_id="R1", position="0"),
        base(event_type="click", ts="1791036309123", request_id="R1", position="0"),
        base(event_type="click", ts="2026-10-03T14:05:10.000Z", request_id="R1", position="0"),
    ]
    classified = T.classify(_parsed(spark, records), ALLOWED, {}, "2000-01-01T00:00:00Z", max_ts())
    ingested = F.lit(dt.datetime(2026, 10, 4, tzinfo=UTC)).cast("timestamp")
    # when
    silver = T.to_silver(classified, "k", "b1", ingested)
    ranked = T.dedupe_within_batch(silver)
    # then
    rows = ranked.orderBy(C.LINE).collect()
    assert rows[0].event_id == rows[1].event_id != rows[2].event_id
    assert [r._rank for r in rows] == [1, 2, 1]
    assert rows[0].user_id == T.pseudonymize_py("U1", "k")
    expected = spark.createDataFrame(
        [(dt.date(2026, 10, 3), "click", 0, False)],
        "event_date date, event_type string, position int, h boolean",
    )
    assertDataFrameEqual(
        ranked.where("_rank = 1 and line = 1").select(
            C.EVENT_DATE, C.EVENT_TYPE, C.POSITION, F.col(C.IS_HISTORY).alias("h")
        ),
        expected,
    )


def test_decompress_gunzips_by_name_and_reports_a_corrupt_gzip():
    data = b'{"user_id":"U1"}\n'
    packed = gzip.compress(data)
    assert T.decompress("a.jsonl", data) == data
    assert T.decompress("a/b.JSONL.GZ", packed) == data
    with pytest.raises(T.UnreadableFile, match="unreadable gzip"):
        T.decompress("t.jsonl.gz", packed[:-10])  # truncated
    with pytest.raises(T.UnreadableFile, match="unreadable gzip"):
        T.decompress("plain.jsonl.gz", data)  # not gzip at all


def test_parse_jsonl_reads_each_field_from_its_mapped_key():
    data = b'{"uid":" 00123 ","article":"N1","kind":"click","t":1791036309,"sess":"S9"}\n'
    sources = {"user_id": "uid", "item_id": "article", "event_type": "kind", "ts": "t"}
    cols = T.parse_jsonl_bytes("f.jsonl", data, {**sources, "session_id": "sess", "request_id": "sess"})
    assert (cols["user_id"], cols["item_id"], cols["event_type"], cols["ts"]) == (
        [" 00123 "],
        ["N1"],
        ["click"],
        ["1791036309"],
    )
    assert cols["session_id"] == cols["request_id"] == ["S9"]


def test_read_jsonl_files_reports_files_without_records(spark):
    # given: a good gzip file, a truncated one and a gzip of nothing
    good = b'{"user_id":"U1","item_id":"N1","event_type":"click","ts":"2026-10-03T14:05:09Z"}\n' * 2
    blobs = {
        "d/10.jsonl.gz": gzip.compress(good),
        "d/11.jsonl.gz": gzip.compress(good)[:-12],
        "d/12.jsonl.gz": gzip.compress(b""),
    }
    paths = spark.createDataFrame([(p,) for p in blobs], "path string")
    # when
    rows = T.read_jsonl_files(paths, blobs.__getitem__).orderBy("source_file", "line").collect()
    # then: two records of the good file, one file row (line 0) for each of the others
    got = [(r.source_file, r.line, r.user_id, (r.parse_error or "")[:16]) for r in rows]
    assert got == [
        ("d/10.jsonl.gz", 1, "U1", ""),
        ("d/10.jsonl.gz", 2, "U1", ""),
        ("d/11.jsonl.gz", T.FILE_ROW_LINE, None, "unreadable gzip:"),
        ("d/12.jsonl.gz", T.FILE_ROW_LINE, None, "empty file (no r"),
    ]


def test_column_specs_fill_constants_and_turn_epoch_numbers_into_timestamps(spark):
    # given: the same instant as epoch s, ms (with a fraction) and us, and an ISO string
    df = spark.createDataFrame(
        [("1791036309.123",), ("1791036309123",), ("1791036309123000",), ("2026-10-03T14:05:09.123Z",)],
        "ts string",
    ).withColumn("event_type", F.lit(None).cast("string"))
    units = ["s", "ms", "us", "ms"]
    want = dt.datetime(2026, 10, 3, 14, 5, 9, 123000)
    for i, unit in enumerate(units):
        row = df.collect()[i]
        one = spark.createDataFrame([row], df.schema)
        # when
        out = T.apply_column_specs(one, {"event_type": "click"}, {"ts": unit})
        # then
        got = out.select("event_type", T.parse_timestamp(F.col("ts")).alias("t")).first()
        assert (got.event_type, got.t) == ("click", want), (unit, row.ts)
    # a value that is not a number is left as it is (classify quarantines it as bad_timestamp)
    bad = spark.createDataFrame([("yesterday",)], "ts string")
    assert T.apply_column_specs(bad, {}, {"ts": "s"}).first().ts == "yesterday"


def test_column_mapping_specs_are_checked_at_load_naming_the_key():
    def load(mapping):
        return config_from_dict(
            {"mode": "local", "lake": {"root": "/tmp/x"}, "ingest": {"column_mapping": mapping}}
        )

    specs = load(
        {"user_id": "uid", "event_type": {"const": "click"}, "ts": {"column": "t", "unit": "ms"}}
    ).ingest.column_specs()
    assert specs == {
        "user_id": ColumnSpec(column="uid"),
        "event_type": ColumnSpec(const="click"),
        "ts": ColumnSpec(column="t", unit="ms"),
    }
    bad = {
        "when": ("'ingest.column_mapping.when': not a canonical field", "x"),
        "ts": ("'ingest.column_mapping.ts': unknown spec key 'units'", {"column": "t", "units": "ms"}),
        "item_id": ("'ingest.column_mapping.item_id.unit': only a 'ts'", {"column": "a", "unit": "ms"}),
        "event_type": ("exactly one of 'column' or 'const'", {"column": "k", "const": "click"}),
    }
    for name, (message, spec) in bad.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            load({name: spec})
    with pytest.raises(ConfigError, match=re.escape("'ingest.column_mapping.ts.unit' must be one of")):
        load({"ts": {"column": "t", "unit": "h"}})


# -- the serving-log contract (README "Serving-log contract") ---------------------------------------
SERVED = "served list (list_run_id set) without: "


def served_imp(**kw):
    """A served impression with every field of the contract; ``kw`` overrides (None removes)."""
    rec = base(
        event_type="impression",
        list_run_id="recommend-2026-10-03-ab12cd34",
        request_id="R1",
        position="0",
        arm="model",
        propensity="0.8",
        reason="co_visit",
    )
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


def test_parse_jsonl_reads_the_serving_log_fields():
    line = json.dumps(served_imp()).encode()
    cols = T.parse_jsonl_bytes("f.jsonl", line)
    assert (cols[C.LIST_RUN_ID], cols[C.ARM], cols[C.REASON]) == (
        ["recommend-2026-10-03-ab12cd34"],
        ["model"],
        ["co_visit"],
    )


def test_served_records_need_the_serving_log_fields(spark):
    # given: served impressions and clicks, good and each missing or breaking one rule
    records = [
        served_imp(),  # 1 valid
        served_imp(request_id=None),  # 2
        served_imp(position=None),  # 3
        served_imp(arm="  "),  # 4 blank = missing
        served_imp(propensity=None),  # 5
        served_imp(propensity="0"),  # 6 out of (0, 1]
        served_imp(position="-1"),  # 7 the position rule of every record (>= 0)
        served_imp(request_id=None, position=None, arm=None, propensity=None),  # 8
        served_imp(propensity="1.5", arm=None),  # 9 both kinds in one detail
        served_imp(event_type="View", arm=None),  # 10 an alias of impression is an impression
        served_imp(arm=None, ts="yesterday"),  # 11 an earlier reason wins
        base(list_run_id="L1", request_id="R1"),  # 12 valid served click (arm, reason optional)
        base(list_run_id="L1"),  # 13 a served click must name its request
        base(event_type="read", list_run_id="L1", dwell_ms="5"),  # 14 so must any feedback
        served_imp(reason="editorial"),  # 15 valid: reason codes are free text
        base(event_type="impression", list_run_id="  "),  # 16 valid: blank list_run_id = not served
        base(event_type="impression", arm="model", reason="als"),  # 17 valid: unserved, fields kept
    ]
    # when
    out = T.classify(
        _parsed(spark, records), ALLOWED, {"view": "impression"}, "2000-01-01T00:00:00Z", max_ts()
    )
    got = {r.line: (r.reason, r.detail) for r in out.collect()}
    # then
    bad = C.INVALID_FIELD
    assert got == {
        1: (None, None),
        2: (bad, f"impression from a {SERVED}request_id"),
        3: (bad, f"impression from a {SERVED}position"),
        4: (bad, f"impression from a {SERVED}arm"),
        5: (bad, f"impression from a {SERVED}propensity"),
        6: (bad, "invalid value in: propensity"),
        7: (bad, "invalid value in: position"),
        8: (bad, f"impression from a {SERVED}request_id,position,arm,propensity"),
        9: (bad, f"invalid value in: propensity; impression from a {SERVED}arm"),
        10: (bad, f"impression from a {SERVED}arm"),
        11: (C.BAD_TIMESTAMP, "unparseable ts=yesterday"),
        12: (None, None),
        13: (bad, f"click from a {SERVED}request_id"),
        14: (bad, f"read from a {SERVED}request_id"),
        15: (None, None),
        16: (None, None),
        17: (None, None),
    }


def test_to_silver_keeps_the_serving_log_fields(spark):
    # given: a served impression, its click, an unserved impression
    records = [
        served_imp(arm=" model ", reason=" editorial "),
        base(list_run_id="recommend-2026-10-03-ab12cd34", request_id="R1", ts="2026-10-03T14:06:00Z"),
        base(event_type="impression", list_run_id=""),
    ]
    classified = T.classify(_parsed(spark, records), ALLOWED, {}, "2000-01-01T00:00:00Z", max_ts())
    ingested = F.lit(dt.datetime(2026, 10, 4, tzinfo=UTC)).cast("timestamp")
    # when
    silver = T.to_silver(classified.where(F.col(C.REASON).isNull()), "k", "b1", ingested)
    # then: the full silver schema, the fields trimmed, blank = null
    assert silver.drop(C.SOURCE_FILE, C.LINE).schema.fieldNames() == C.SILVER_EVENTS_FULL_SCHEMA.fieldNames()
    cols = [C.LINE, C.EVENT_TYPE, C.REQUEST_ID, C.POSITION, C.PROPENSITY, C.LIST_RUN_ID, C.ARM, C.REASON]
    expected = spark.createDataFrame(
        [
            (1, "impression", "R1", 0, 0.8, "recommend-2026-10-03-ab12cd34", "model", "editorial"),
            (2, "click", "R1", None, None, "recommend-2026-10-03-ab12cd34", None, None),
            (3, "impression", None, None, None, None, None, None),
        ],
        "line long, event_type string, request_id string, position int, propensity double, "
        "list_run_id string, arm string, reason string",
    )
    assertDataFrameEqual(silver.select(*cols), expected)
