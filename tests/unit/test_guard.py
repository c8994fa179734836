"""Issue 9: no stage replaces stored data with an empty or much smaller result (recpipe.guard),
and a bad Spark conf value is a one-line error naming the key, not a Java stack trace."""

from __future__ import annotations

import datetime as dt

import pytest

from recpipe.cli import build_parser, main
from recpipe.config import ConfigError, load_config
from recpipe.guard import DestructiveWriteError, guard_partition_replace, shrink_problems
from recpipe.scoring.publish import degenerate_problems
from recpipe.spark import REQUIRED_CONF, check_launch_conf, check_spark_conf
from tests.conftest import REPO, make_config

pytestmark = pytest.mark.unit

SHARE = dict(max_drop_share=0.5, setting="x.max_drop_share")


def test_shrink_beyond_the_share_is_refused_unless_forced():
    old = {"lists": 1000, "rows": 10_000}
    assert shrink_problems("t", {"lists": 500, "rows": 5000}, old, against="last", **SHARE) == []
    problems = shrink_problems("t", {"lists": 499, "rows": 5000}, old, against="the last publish", **SHARE)
    assert problems == [
        "t: lists fall from 1000 to 499 (-50%) against the last publish, more than "
        "x.max_drop_share=0.5; pass --force to write it anyway"
    ]
    assert shrink_problems("t", {"lists": 1, "rows": 10}, old, against="last", force=True, **SHARE) == []
    # a label stored with 0 rows, or not stored, cannot shrink; a stored label missing from the new
    # result falls to 0
    assert shrink_problems("t", {"a": 5}, {"a": 0}, against="last", **SHARE) == []
    assert shrink_problems("t", {"a": 5}, {}, against="last", **SHARE) == []
    assert (
        "b fall from 4 to 0 (-100%)"
        in shrink_problems("t", {"a": 5}, {"a": 5, "b": 4}, against="x", **SHARE)[0]
    )


def test_an_empty_result_is_refused_even_when_forced_and_with_nothing_stored():
    for old in ({"lists": 10, "rows": 100}, {}):
        problems = shrink_problems("t", {"lists": 0, "rows": 0}, old, against="x", force=True, **SHARE)
        assert problems == ["t: the result is empty (0 lists, rows); an empty result is never written"]
    assert "empty" in shrink_problems("t", {}, {}, against="x", **SHARE)[0]


def test_degenerate_lists_empty_drop_and_short_share():
    prev = ("the last published lists (2026-10-14)", {"lists": 1000, "rows": 10_000})
    ok = {"lists": 990, "rows": 9900, "users": 1000, "short": 10}
    assert degenerate_problems(ok, prev, 10, 0.5, 0.05) == []
    # the defect 1: 0 lists replacing 1000 published ones
    empty = {"lists": 0, "rows": 0, "users": 0, "short": 0}
    assert "result is empty" in degenerate_problems(empty, prev, 10, 0.5, 0.05, force=True)[0]
    drop = {"lists": 300, "rows": 3000, "users": 300, "short": 0}
    (lists, rows) = degenerate_problems(drop, prev, 10, 0.5, 0.05)
    assert "lists fall from 1000 to 300 (-70%) against the last published lists (2026-10-14)" in lists
    assert "recommend.max_drop_share=0.5; pass --force" in lists and "rows fall from 10000 to 3000" in rows
    assert degenerate_problems(drop, prev, 10, 0.5, 0.05, force=True) == []
    assert degenerate_problems(drop, None, 10, 0.5, 0.05) == []  # first publish: nothing to compare
    short = {"lists": 1000, "rows": 9000, "users": 1000, "short": 60}
    (problem,) = degenerate_problems(short, prev, 10, 0.5, 0.05, force=True)
    assert problem == (
        "60 of 1000 users (6.0%) have a list shorter than N=10, more than recommend.max_short_share=0.05"
    )
    assert degenerate_problems(short, prev, 10, 0.5, 0.06) == []


def _part(spark, counts: dict[dt.date, int]):
    rows = [(d, f"u{i}") for d, n in counts.items() for i in range(n)]
    return spark.createDataFrame(rows, "as_of_date date, user_id string")


def test_partition_guard_compares_each_replaced_partition_with_the_stored_one(spark, tmp_path):
    from recpipe.lake import open_lake

    lake = open_lake(make_config(tmp_path / "lake", tmp_path / "raw"), spark)
    d1, d2, d3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)
    table = "gold.guard_test"
    lake.overwrite(table, _part(spark, {d1: 10, d2: 10}), partition_by=["as_of_date"])
    args = dict(max_drop_share=0.5, setting="lake.max_drop_share")
    # d2 shrinks by 60% while d1 grows: refused, naming the partition
    with pytest.raises(
        DestructiveWriteError, match=r"rows of as_of_date=2026-10-02 fall from 10 to 4 \(-60%\)"
    ):
        guard_partition_replace(lake, table, _part(spark, {d1: 12, d2: 4}), "as_of_date", [d1, d2], **args)
    # a replaced partition the result no longer holds falls to 0
    with pytest.raises(DestructiveWriteError, match=r"as_of_date=2026-10-02 fall from 10 to 0"):
        guard_partition_replace(lake, table, _part(spark, {d1: 10}), "as_of_date", [d1, d2], **args)
    # forced, or within the share, or a new partition: allowed
    out = guard_partition_replace(
        lake, table, _part(spark, {d1: 12, d2: 4}), "as_of_date", [d1, d2], force=True, **args
    )
    assert out["stored_rows"] == {"rows of as_of_date=2026-10-01": 10, "rows of as_of_date=2026-10-02": 10}
    guard_partition_replace(lake, table, _part(spark, {d1: 5, d2: 5}), "as_of_date", [d1, d2], **args)
    guard_partition_replace(lake, table, _part(spark, {d3: 1}), "as_of_date", [d3], **args)
    # an empty result: never, even forced, even where nothing is stored
    for values in ([d1], [d3]):
        with pytest.raises(DestructiveWriteError, match="the result is empty"):
            guard_partition_replace(lake, table, _part(spark, {}), "as_of_date", values, force=True, **args)


def test_spark_conf_values_are_checked_with_sparks_own_definitions(spark):
    jvm = spark.sparkContext._jvm
    shipped = load_config(REPO / "conf/local.yaml").spark.conf
    check_spark_conf(jvm, {**shipped, **REQUIRED_CONF, "spark.some.plugin.key": "anything"}, "f.yaml")
    for key, value, reason in [
        ("spark.sql.shuffle.partitions", "abc", "It should be a/an 'int' value"),
        ("spark.sql.shuffle.partitions", "-3", "must be positive"),
        ("spark.sql.session.timeZone", "Mars/Olympus", "Cannot resolve the given timezone"),
        ("spark.sql.ansi.enabled", "nah", "'boolean' value"),
        ("spark.driver.memory", "lots", "bytes in MiB"),
    ]:
        with pytest.raises(ConfigError) as err:
            check_spark_conf(jvm, {**shipped, key: value}, "f.yaml")
        msg = str(err.value)
        assert msg.startswith(f"f.yaml: key 'spark.conf.{key}': Spark rejects {value!r}: ") and reason in msg
        assert "\n" not in msg and "SQLSTATE" not in msg


def test_launch_memory_is_checked_before_the_jvm_starts(capsys, tmp_path):
    check_launch_conf({"spark.driver.memory": "4g", "spark.executor.memory": "whatever"}, "f.yaml")
    for bad in ("lots", "4gb", "1024", "0g", " 4g"):
        with pytest.raises(
            ConfigError, match=r"key 'spark\.conf\.spark\.driver\.memory' must be a JVM memory"
        ):
            check_launch_conf({"spark.driver.memory": bad}, "f.yaml")
    # the CLI: exit 2, one line naming the key (no JVM is started, so this runs in-process)
    rc = main(["tables", "--set", "spark.conf.spark.driver.memory=lots", "--set", f"lake.root={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "key 'spark.conf.spark.driver.memory' must be a JVM memory size such as 512m or 4g" in err


def test_force_flags_on_the_stages_that_replace_data():
    parser = build_parser()
    assert parser.parse_args(["recommend", "--force"]).force is True
    assert parser.parse_args(["recommend"]).force is False
    assert parser.parse_args(["features", "--date", "2026-10-15", "--force"]).force is True
    assert parser.parse_args(["examples", "--start", "2026-10-01", "--end", "2026-10-02", "--force"]).force
