"""Deletion on request removes a user from every table and nobody else."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.datasets.synthetic import generate
from recpipe.events.ingest import run_ingest
from recpipe.events.transforms import pseudonymize_py
from recpipe.lake import open_lake
from recpipe.privacy import forget_user
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
    assert lake.read("ops.deletions").first()["user_pseudonym"] == victim_p
