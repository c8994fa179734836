"""The lake contract, run against every backend that can start on this machine."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from recpipe.lake import ConcurrentCommitError, LakeError, SchemaMismatchError, Txn, delta_spark_available
from recpipe.lake.deltars import DeltaRsLake

pytestmark = pytest.mark.integration

SCHEMA = "id string, event_date date, ts timestamp, n int"
D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def rows(*specs):
    return [(i, d, dt.datetime(d.year, d.month, d.day, 12, n % 60), n) for i, d, n in specs]


@pytest.fixture(params=["delta-rs", "delta-spark"])
def lake(request, spark, tmp_path):
    if request.param == "delta-spark":
        ok, why = delta_spark_available(spark)
        if not ok:
            pytest.skip(f"delta-spark backend cannot start here: {why}")
        from recpipe.lake.deltaspark import DeltaSparkLake

        return DeltaSparkLake(spark, str(tmp_path / "lake"))
    return DeltaRsLake(spark, str(tmp_path / "lake"))


def test_partition_columns_survive_a_round_trip(spark, lake):
    # given
    df = spark.createDataFrame(rows(("a", D1, 1), ("b", D2, 2)), SCHEMA)
    # when
    lake.append("silver.t", df, partition_by=["event_date"])
    # then
    back = lake.read("silver.t")
    assert back.schema["event_date"].dataType.simpleString() == "date"
    assertDataFrameEqual(back, df)
    assert sorted(DeltaTable(lake.path("silver.t")).metadata().partition_columns) == ["event_date"]


def test_tables_are_readable_by_delta_rs(spark, lake):
    df = spark.createDataFrame(rows(("a", D1, 1), ("b", D2, 2), ("c", D2, 3)), SCHEMA)
    lake.append("silver.t", df, partition_by=["event_date"])
    table = DeltaTable(lake.path("silver.t")).to_pyarrow_table()
    assert sorted(table.column("id").to_pylist()) == ["a", "b", "c"]
    assert lake.row_count("silver.t") == 3


def test_read_a_given_version(spark, lake):
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1)), SCHEMA))
    lake.append("silver.t", spark.createDataFrame(rows(("b", D1, 2)), SCHEMA))
    assert lake.version("silver.t") == 1
    assert [r.id for r in lake.read("silver.t", version=0).collect()] == ["a"]
    assert lake.read("silver.t").count() == 2


def test_commit_with_the_same_txn_is_applied_once(spark, lake):
    df = spark.createDataFrame(rows(("a", D1, 1)), SCHEMA)
    first = lake.append("silver.t", df, txn=Txn("ingest/batch-1", 1))
    second = lake.append("silver.t", df, txn=Txn("ingest/batch-1", 1))
    assert first.committed and not second.committed
    assert lake.version("silver.t") == first.version
    assert lake.read("silver.t").count() == 1
    assert lake.txn_version("silver.t", "ingest/batch-1") == 1


def test_insert_new_adds_only_unseen_keys(spark, lake):
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1), ("b", D2, 2)), SCHEMA), ["event_date"])
    incoming = spark.createDataFrame(rows(("a", D1, 1), ("c", D1, 3), ("b", D2, 2)), SCHEMA)
    lake.insert_new("silver.t", incoming, keys=["id"], partition_by=["event_date"])
    expected = spark.createDataFrame(rows(("a", D1, 1), ("b", D2, 2), ("c", D1, 3)), SCHEMA)
    assertDataFrameEqual(lake.read("silver.t"), expected)


def test_overwrite_replaces_only_the_given_partitions(spark, lake):
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1), ("b", D2, 2)), SCHEMA), ["event_date"])
    lake.overwrite(
        "silver.t", spark.createDataFrame(rows(("z", D1, 9)), SCHEMA), partitions={"event_date": [D1]}
    )
    assertDataFrameEqual(
        lake.read("silver.t"), spark.createDataFrame(rows(("z", D1, 9), ("b", D2, 2)), SCHEMA)
    )


def test_overwrite_refuses_rows_outside_the_named_partitions(spark, lake):
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1)), SCHEMA), ["event_date"])
    with pytest.raises(LakeError, match="outside the partitions"):
        lake.overwrite(
            "silver.t", spark.createDataFrame(rows(("z", D2, 9)), SCHEMA), partitions={"event_date": [D1]}
        )
    assert lake.version("silver.t") == 0


def test_delete_by_predicate_and_history(spark, lake):
    lake.append(
        "silver.t",
        spark.createDataFrame(rows(("a", D1, 1), ("b", D1, 2), ("c", D2, 3)), SCHEMA),
        ["event_date"],
    )
    result = lake.delete("silver.t", "id = 'b'")
    assert result.rows_removed == 1
    assertDataFrameEqual(
        lake.read("silver.t"), spark.createDataFrame(rows(("a", D1, 1), ("c", D2, 3)), SCHEMA)
    )
    assert [h["version"] for h in lake.history("silver.t")][:2] == [1, 0]
    # the old version is still there for time travel
    assert lake.read("silver.t", version=0).count() == 3


def test_upsert_replaces_existing_keys(spark, lake):
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1), ("b", D1, 2)), SCHEMA))
    lake.upsert("silver.t", spark.createDataFrame(rows(("b", D1, 20), ("c", D1, 3)), SCHEMA), keys=["id"])
    assertDataFrameEqual(
        lake.read("silver.t"), spark.createDataFrame(rows(("a", D1, 1), ("b", D1, 20), ("c", D1, 3)), SCHEMA)
    )


def test_append_with_mismatched_schema_is_refused(spark, lake):
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1)), SCHEMA))
    bad = spark.createDataFrame(
        [("b", D1, dt.datetime(2026, 10, 1), "2")], "id string, event_date date, ts timestamp, n string"
    )
    with pytest.raises(SchemaMismatchError, match="column 'n' is int in the table but string in the data"):
        lake.append("silver.t", bad)
    extra = spark.createDataFrame(rows(("b", D1, 2)), SCHEMA).withColumn("x", F.lit(1))
    with pytest.raises(SchemaMismatchError, match="unexpected columns"):
        lake.append("silver.t", extra)
    assert lake.version("silver.t") == 0
    assert lake.read("silver.t").count() == 1


def test_invalid_table_name_is_refused(lake):
    with pytest.raises(LakeError, match="invalid table name"):
        lake.path("events")


# --- delta-rs specifics: crashes and concurrent writers -------------------------------------


def test_crash_between_write_and_commit_leaves_readers_unaffected(spark, tmp_path):
    lake = DeltaRsLake(spark, str(tmp_path / "lake"))
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1)), SCHEMA), ["event_date"])
    batch = spark.createDataFrame(rows(("b", D1, 2)), SCHEMA)
    # given: a writer that wrote its data files and died before committing
    orphans, _ = lake._write_files("silver.t", batch, ["event_date"])
    assert orphans
    # then: readers do not see them
    assert [r.id for r in lake.read("silver.t").collect()] == ["a"]
    # and a rerun succeeds, once
    assert lake.append("silver.t", batch, txn=Txn("batch-2")).committed
    assert not lake.append("silver.t", batch, txn=Txn("batch-2")).committed
    assert sorted(r.id for r in lake.read("silver.t").collect()) == ["a", "b"]
    # and vacuum removes the orphaned files, not the live ones
    removed = lake.vacuum("silver.t", retention_hours=0)
    assert {o.path for o in orphans} <= {r.split("/silver/t/")[-1] for r in removed}
    assert sorted(r.id for r in lake.read("silver.t").collect()) == ["a", "b"]


def _racing_lake(spark, root, other_write, retries):
    """A lake whose first commit attempt is overtaken by ``other_write`` (a competing writer)."""
    lake = DeltaRsLake(spark, root, commit_retries=retries)
    real = lake._write_files
    state = {"raced": False}

    def write_files(table, df, pcols):
        out = real(table, df, pcols)
        if not state["raced"]:
            state["raced"] = True
            other_write()
        return out

    lake._write_files = write_files
    return lake


def test_concurrent_insert_new_one_wins_other_retries_without_duplicates(spark, tmp_path):
    root = str(tmp_path / "lake")
    base = DeltaRsLake(spark, root)
    base.append("silver.t", spark.createDataFrame(rows(("a", D1, 1)), SCHEMA), ["event_date"])
    other = spark.createDataFrame(rows(("b", D1, 2), ("c", D1, 3)), SCHEMA)
    mine = spark.createDataFrame(rows(("c", D1, 3), ("d", D1, 4)), SCHEMA)
    lake = _racing_lake(
        spark, root, lambda: DeltaRsLake(spark, root).insert_new("silver.t", other, ["id"]), 3
    )
    result = lake.insert_new("silver.t", mine, ["id"])
    assert result.committed and result.rows_written == 1  # 'c' was inserted by the other writer
    ids = [r.id for r in base.read("silver.t").collect()]
    assert sorted(ids) == ["a", "b", "c", "d"]
    assert base.version("silver.t") == 2


def test_concurrent_writer_without_retries_fails_cleanly(spark, tmp_path):
    root = str(tmp_path / "lake")
    base = DeltaRsLake(spark, root)
    base.append("silver.t", spark.createDataFrame(rows(("a", D1, 1)), SCHEMA), ["event_date"])
    other = spark.createDataFrame(rows(("b", D1, 2)), SCHEMA)
    lake = _racing_lake(
        spark, root, lambda: DeltaRsLake(spark, root).insert_new("silver.t", other, ["id"]), 0
    )
    with pytest.raises(ConcurrentCommitError, match="Nothing was committed"):
        lake.insert_new("silver.t", spark.createDataFrame(rows(("b", D1, 2)), SCHEMA), ["id"])
    assert sorted(r.id for r in base.read("silver.t").collect()) == ["a", "b"]
    assert base.version("silver.t") == 1


def test_two_threads_appending_at_once_both_land(spark, tmp_path):
    root = str(tmp_path / "lake")
    DeltaRsLake(spark, root).append("silver.t", spark.createDataFrame(rows(("a", D1, 1)), SCHEMA))
    errors = []

    def go(i):
        try:
            DeltaRsLake(spark, root).append("silver.t", spark.createDataFrame(rows((f"t{i}", D1, i)), SCHEMA))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert DeltaRsLake(spark, root).read("silver.t").count() == 4


def test_overwrite_may_add_columns_when_asked(spark, lake):
    """A new feature column: the rewritten partition has it, the others read it as null; a
    missing column is still refused, and without ``add_columns`` so is the new one."""
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1), ("b", D2, 2)), SCHEMA), ["event_date"])
    wider = spark.createDataFrame(rows(("z", D1, 9)), SCHEMA).withColumn("x", F.lit(0.5))
    with pytest.raises(SchemaMismatchError, match="unexpected columns"):
        lake.overwrite("silver.t", wider, partitions={"event_date": [D1]})
    narrower = spark.createDataFrame(rows(("z", D1, 9)), SCHEMA).drop("n")
    with pytest.raises(SchemaMismatchError, match="missing columns"):
        lake.overwrite("silver.t", narrower, partitions={"event_date": [D1]}, add_columns=True)
    assert lake.version("silver.t") == 0
    lake.overwrite("silver.t", wider, partitions={"event_date": [D1]}, add_columns=True)
    assert lake.schema("silver.t").fieldNames() == ["id", "event_date", "ts", "n", "x"]
    got = {r["id"]: r["x"] for r in lake.read("silver.t").collect()}
    assert got == {"z": 0.5, "b": None}


def test_insert_new_may_add_columns_when_asked(spark, lake):
    """A new optional field (the serving-log columns of silver.events): the new rows have it, the
    stored ones read it as null; without ``add_columns`` the new column is refused."""
    lake.append("silver.t", spark.createDataFrame(rows(("a", D1, 1), ("b", D2, 2)), SCHEMA), ["event_date"])
    wider = spark.createDataFrame(rows(("a", D1, 1), ("c", D1, 3)), SCHEMA).withColumn("x", F.lit("s"))
    with pytest.raises(SchemaMismatchError, match="unexpected columns"):
        lake.insert_new("silver.t", wider, keys=["id"], partition_by=["event_date"])
    assert lake.version("silver.t") == 0
    lake.insert_new("silver.t", wider, keys=["id"], partition_by=["event_date"], add_columns=True)
    assert lake.schema("silver.t").fieldNames() == ["id", "event_date", "ts", "n", "x"]
    got = {r["id"]: r["x"] for r in lake.read("silver.t").collect()}
    assert got == {"a": None, "b": None, "c": "s"}


def test_a_read_of_many_files_lists_them_without_a_spark_job(spark, tmp_path):
    # given: a table of 40 data files (more than Spark's 32-path threshold for a listing job)
    lake = DeltaRsLake(spark, str(tmp_path / "lake"))
    df = spark.range(400).selectExpr("cast(id as string) as id", "cast(id as int) as n").repartition(40)
    lake.overwrite("silver.many", df)
    assert len(DeltaTable(lake.path("silver.many")).file_uris()) == 40
    sc = spark.sparkContext
    # when: the table is read (recpipe.spark.LOCAL_DEFAULT_CONF, as the session's conf)
    sc.setJobGroup("many-files-read", "lake.read of 40 files")
    try:
        read = lake.read("silver.many")
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    # then: no Spark job listed the files (one task per file: ~8 s per read of a 4,000-file
    # silver.events in local mode), and every row is there
    assert list(sc.statusTracker().getJobIdsForGroup("many-files-read")) == []
    assert read.count() == 400
