"""Deletion on request removes a user from every table and nobody else."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.datasets.synthetic import generate
from recpipe.events.ingest import run_ingest
from recpipe.events.transforms import pseudonymize_py
from recpipe.lake import open_lake
from recpipe.privacy import forget_user, request_digest
from tests.conftest import make_config

pytestmark = pytest.mark.integration


def test_forget_user_deletes_their_rows_everywhere(spark, tmp_path):
    generate(tmp_path / "raw", events=3000, seed=5)
    cfg = make_config(tmp_path / "lake", tmp_path / "raw")
    lake = open_lake(cfg, spark)
    run_ingest(cfg, spark, input_dir=str(tmp_path / "raw"), batch_id="p1", lake=lake)
    events = lake.read(C.SILVER_EVENTS)
    # the most active non-bot user
    victim_p = events.groupBy(C.USER_ID).count().orderBy(F.desc("count")).collect()[5][C.USER_ID]
    raw_lines = lake.read(C.BRONZE_EVENTS_RAW)
    victim = next(
        u
        for u in {r[0] for r in raw_lines.select(F.get_json_object(C.RAW, "$.user_id")).collect() if r[0]}
        if pseudonymize_py(u, cfg.pseudonym_key()) == victim_p
    )
    n_events, n_total = events.where(F.col(C.USER_ID) == victim_p).count(), events.count()
    n_raw = raw_lines.where(F.instr(C.RAW, f'"{victim}"') > 0).count()
    # when
    out = forget_user(cfg, spark, victim, lake=lake, vacuum=True)
    # then
    assert out["rows_removed"][C.SILVER_EVENTS] == n_events > 0
    assert out["rows_removed"][C.BRONZE_EVENTS_RAW] == n_raw
    after = lake.read(C.SILVER_EVENTS)
    assert after.where(F.col(C.USER_ID) == victim_p).count() == 0
    assert after.count() == n_total - n_events
    assert lake.read(C.BRONZE_EVENTS_RAW).where(F.instr(C.RAW, f'"{victim}"') > 0).count() == 0
    assert lake.read("ops.deletions").first()["request_digest"] == request_digest(
        victim_p, cfg.pseudonym_key()
    )


# -- issue 9: erasure by the parsed id, vacuum of every table that held the user, no copies ------

DAY_MS = 1790899200000  # 2026-10-02T00:00:00Z
USERS = [f"U{n:07d}" for n in range(300, 330)]


def _small_lake(spark, tmp_path):
    """~300 events of 30 users in two hour files; the victim also appears padded, escaped,
    quarantined and in a malformed line. The victim is the user with the smallest pseudonym, and
    its padded line sorts first among the raw lines, so it is a file's min value in silver and bronze.
    """
    cfg = make_config(tmp_path / "lake", tmp_path / "raw")
    key = cfg.pseudonym_key()
    victim = min(USERS, key=lambda u: pseudonymize_py(u, key))
    lines: dict[str, list[str]] = {"10": [], "11": []}
    for n in range(300):
        user = USERS[n % len(USERS)]
        hour = "10" if n < 150 else "11"
        ev = {"user_id": user, "item_id": f"N{n % 17}", "event_type": "click", "ts": DAY_MS + n * 60_000}
        lines[hour].append(json.dumps(ev))
    escaped = "\\u0055" + victim[1:]  # "U" written as a JSON escape

    def line(user, item, etype, ts):
        return json.dumps({"user_id": user, "item_id": item, "event_type": etype, "ts": DAY_MS + ts})

    lines["10"].append(line(victim, "N1", "like", 1).replace(f'"{victim}"', f'"{escaped}"'))
    lines["10"].append(line(f" {victim} ", "N2", "share", 2))
    lines["11"].append(line(f"  {victim}", "N3", "bogus", 3))  # quarantined: unknown event type
    lines["11"].append(line(victim, "N4", "click", 4)[:-12])  # quarantined: malformed
    day = tmp_path / "raw" / "events" / "2026-10-02"
    day.mkdir(parents=True)
    for hour, ls in lines.items():
        (day / f"{hour}.jsonl").write_text("\n".join(ls) + "\n")
    lake = open_lake(cfg, spark)
    run_ingest(cfg, spark, input_dir=str(tmp_path / "raw"), batch_id="b1", lake=lake)
    return cfg, lake, victim, pseudonymize_py(victim, key), escaped


def _parsed_user(raw: str) -> str | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj.get("user_id").strip(" ") if isinstance(obj, dict) and obj.get("user_id") else None


def test_forget_removes_raw_lines_written_padded_or_escaped(spark, tmp_path):
    # given: ingest accepted the padded and the escaped line as the victim's events
    cfg, lake, victim, pseud, _ = _small_lake(spark, tmp_path)
    assert lake.read(C.SILVER_EVENTS).where(F.col(C.USER_ID) == pseud).count() == 12  # 10 + escaped + padded
    raw = [r[C.RAW] for r in lake.read(C.BRONZE_EVENTS_RAW).collect()]
    victim_lines = [r for r in raw if _parsed_user(r) == victim or victim in r]
    assert len(victim_lines) == 14 and len(raw) == 304
    others_silver = lake.read(C.SILVER_EVENTS).where(F.col(C.USER_ID) != pseud).count()
    # when
    out = forget_user(cfg, spark, victim, lake=lake)
    # then: every raw line of the victim is gone (bronze and quarantine), nobody else's
    assert out["rows_removed"][C.BRONZE_EVENTS_RAW] == 14
    assert out["rows_removed"][C.BRONZE_QUARANTINE] == 2  # unknown event type + malformed
    assert out["rows_removed"][C.SILVER_EVENTS] == 12
    left = [r[C.RAW] for r in lake.read(C.BRONZE_EVENTS_RAW).collect()]
    assert len(left) == 290 and not [r for r in left if _parsed_user(r) == victim or victim in r]
    assert lake.read(C.BRONZE_QUARANTINE).count() == 0
    assert lake.read(C.SILVER_EVENTS).count() == others_silver


def _data_files(lake, table):
    root = Path(lake.path(table))
    return {p for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


def test_forget_twice_then_vacuum_erases_the_files(spark, tmp_path):
    # given: a first forget deleted the rows but kept the old files (time travel)
    cfg, lake, victim, _, _ = _small_lake(spark, tmp_path)
    forget_user(cfg, spark, victim, lake=lake)
    stale = {t: _data_files(lake, t) - _live_files(lake, t) for t in (C.SILVER_EVENTS, C.BRONZE_EVENTS_RAW)}
    assert all(stale.values())
    # when: the second call deletes nothing but vacuums
    out = forget_user(cfg, spark, victim, lake=lake, vacuum=True)
    # then
    assert out["total_removed"] == 0
    for table, files in stale.items():
        assert not [f for f in files if f.exists()], table
        assert _data_files(lake, table) == _live_files(lake, table)
        assert out["files_erased"][table] >= len(files)


def _live_files(lake, table):
    from deltalake import DeltaTable

    return {Path(u.removeprefix("file://")) for u in DeltaTable(lake.path(table)).file_uris()}


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def _scan(root: Path, needles: list[str]) -> list[str]:
    """Every file under ``root`` holding a needle: raw bytes, decoded Parquet values, JSON text."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        texts = [data.decode("latin-1")]
        if data[:4] == b"PAR1":
            table = pq.read_table(path)
            texts += list(_strings(table.to_pylist()))
            meta = pq.ParquetFile(path).metadata  # footer statistics
            for rg in range(meta.num_row_groups):
                for ci in range(meta.num_columns):
                    st = meta.row_group(rg).column(ci).statistics
                    if st is not None and st.has_min_max:
                        texts += [str(st.min), str(st.max)]
        elif path.suffix == ".json" or path.name.startswith("_last_checkpoint"):
            for line in data.decode("utf-8", errors="replace").splitlines():
                try:
                    texts += list(_strings(json.loads(line)))
                except ValueError:
                    pass
        found = [n for n in needles if any(n in t for t in texts)]
        if found:
            hits.append(f"{path.relative_to(root)}: {found}")
    return hits


def test_no_byte_under_the_lake_root_holds_the_user_after_forget_vacuum(spark, tmp_path):
    # given: the victim is a data file's min value in silver (pseudonym) and bronze (raw line)
    cfg, lake, victim, pseud, escaped = _small_lake(spark, tmp_path)
    root = Path(cfg.lake.root)
    needles = [victim, pseud, escaped]
    mins = set()
    for table in (C.SILVER_EVENTS, C.BRONZE_EVENTS_RAW):
        for f in _data_files(lake, table):
            meta = pq.ParquetFile(f).metadata
            for rg in range(meta.num_row_groups):
                for ci in range(meta.num_columns):
                    st = meta.row_group(rg).column(ci).statistics
                    if st is not None and st.has_min_max:
                        mins |= {str(st.min), str(st.max)}
    assert pseud in mins and any(victim in m for m in mins)
    assert _scan(root, needles)  # the scanner finds the user before the erasure
    # and an ops.deletions written by an older version recorded an earlier request by pseudonym
    legacy = [(pseud, dt.datetime(2026, 11, 1), 3, False)]
    schema = "user_pseudonym string, requested_at timestamp, rows_removed long, vacuumed boolean"
    lake.append("ops.deletions", spark.createDataFrame(legacy, schema))
    # when
    out = forget_user(cfg, spark, victim, lake=lake, vacuum=True)
    # then: neither the raw id nor the pseudonym anywhere: data, logs, checkpoints, ops tables
    assert _scan(root, needles) == []
    assert out["total_removed"] > 0
    rec = sorted(lake.read("ops.deletions").collect(), key=lambda r: r["requested_at"])
    digest = request_digest(pseud, cfg.pseudonym_key())
    assert [r["request_digest"] for r in rec] == [digest, digest]  # the old record converted
    assert rec[1]["files_erased_at"] is not None and rec[1]["rows_removed"][C.SILVER_EVENTS] == 12
    # the table still works after the log expiry
    assert lake.read(C.SILVER_EVENTS).count() == 290


def test_personal_columns_are_left_out_of_delta_file_statistics(spark, tmp_path):
    # given: a new table with a user id, a raw record and an ordinary column
    lake = open_lake(make_config(tmp_path / "lake", tmp_path / "raw"), spark)
    df = spark.createDataFrame(
        [("p_a", '{"user_id": "A"}', 1), ("p_b", '{"user_id": "B"}', 2)], "user_id string, raw string, n long"
    )
    # when
    lake.append("silver.t", df)
    # then: stats for n only, and the table tells other writers so
    log = (Path(lake.path("silver.t")) / "_delta_log" / f"{0:020d}.json").read_text().splitlines()
    actions = [json.loads(a) for a in log]
    stats = [json.loads(a["add"]["stats"]) for a in actions if "add" in a]
    assert stats and all(set(s["minValues"]) == set(s["nullCount"]) == {"n"} for s in stats)
    config = next(a["metaData"]["configuration"] for a in actions if "metaData" in a)
    assert config == {"delta.dataSkippingStatsColumns": "n"}
    assert "p_a" not in "\n".join(log) and '\\"A\\"' not in "\n".join(log)


def test_forget_finds_a_padded_id_in_a_csv_source_through_the_column_mapping(spark, tmp_path):
    # given: a CSV source whose user column is "uid"; bronze keeps each row as JSON with that key
    src = tmp_path / "csv" / "events" / "2026-10-02"
    src.mkdir(parents=True)
    (src / "part1.csv").write_text(
        "uid,article,kind,when\n"
        " U7 ,a1,click,2026-10-02T10:00:00Z\n"
        "U7,a2,click,2026-10-02T10:00:01Z\n"
        "U8,a1,click,2026-10-02T10:00:02Z\n"
        "U77,a3,click,2026-10-02T10:00:03Z\n"
    )
    mapping = {"user_id": "uid", "item_id": "article", "event_type": "kind", "ts": "when"}
    cfg = make_config(
        tmp_path / "lake", tmp_path / "csv", ingest={"format": "csv", "column_mapping": mapping}
    )
    lake = open_lake(cfg, spark)
    run_ingest(cfg, spark, input_dir=str(tmp_path / "csv"), batch_id="csv-1", lake=lake)
    # when
    out = forget_user(cfg, spark, "U7", lake=lake)
    # then: both raw rows of U7 are gone (the padded one too), U8 and U77 stay
    assert out["rows_removed"][C.BRONZE_EVENTS_RAW] == 2
    assert out["rows_removed"][C.SILVER_EVENTS] == 2
    left = sorted(json.loads(r[C.RAW])["uid"] for r in lake.read(C.BRONZE_EVENTS_RAW).collect())
    assert left == ["U77", "U8"]
