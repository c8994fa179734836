"""The Airflow DAG really runs: ``airflow dags test recpipe_daily D`` for two consecutive days.

Airflow 2.10 runs from its own venv (build/airflow-venv, the ``airflow_python`` fixture of
test_airflow_dag.py) with a temporary AIRFLOW_HOME (SQLite metadata database, ``airflow db
migrate``). Nothing of the DAG is replaced: each of its six tasks is the provider's
SparkSubmitOperator running a real ``spark-submit jobs/<stage>.py --conf C --date D``, through:

- the ``spark_default`` connection (``AIRFLOW_CONN_SPARK_DEFAULT``) with master ``local[2]``;
- the ``recpipe_config`` Variable (``AIRFLOW_VAR_RECPIPE_CONFIG``): ``jobs_dir`` this checkout's
  jobs/, ``conf_path`` a temporary config whose lake and landing folder are temporary folders;
- ``spark-submit`` of the project venv's pyspark (first on PATH, SPARK_HOME set).

Packed environment: not used here. In local mode Spark's Python workers start in the driver's
working folder, so ``--archives recpipe-env.tar.gz#environment`` cannot provide
``./environment/bin/python`` (deploy/spark-submit.sh), and building the packed venv takes minutes;
the Variable sets ``archives`` to "" and ``spark.pyspark.python`` (and the driver's) to the project
venv's python, which holds the same packages (test_packaging.py runs a job from a clean venv built
from the wheel).

The landing folder gets the logs as they would arrive: before day D1 every event file of the days
before D1, before D2 = D1 + 1 also D1's. Both DAG runs must succeed with all six tasks, and the
second day's stages must read what the first day's wrote (``ops.runs`` input and output versions,
the model, the evaluated lists).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tests.integration.test_airflow_dag import airflow_python  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "deploy" / "airflow" / "dags"
STAGES = ["ingest", "features", "examples", "train", "recommend", "evaluate"]
DAY1 = dt.date(2026, 10, 8)
DAY2 = DAY1 + dt.timedelta(days=1)
FIRST = DAY1 - dt.timedelta(days=3)  # first day of the logs: DAY1 ingests three day folders

CONF = """
mode: local
spark:
  master: local[2]
  log_level: ERROR
  show_progress: false
  conf:
    spark.sql.shuffle.partitions: 2
    spark.default.parallelism: 2
    spark.ui.enabled: false
    spark.sql.session.timeZone: UTC
lake:
  root: {lake}
data:
  source: raw
  raw_dir: {landing}
privacy:
  allow_dev_key: true
examples:
  window_days: 4
  validation_start: "{validation_start}"
  test_start: "{test_start}"
train:
  epochs: 1
  num_proc: 1
  batch_size: 256
  every_days: 2
evaluate:
  horizon_days: 1
"""


def land(generated: Path, landing: Path, until: dt.date) -> None:
    """Copy the catalog and every day's event folder before ``until`` into the landing folder."""
    landing.mkdir(parents=True, exist_ok=True)
    shutil.copy2(generated / "items.jsonl", landing / "items.jsonl")
    for day in sorted((generated / "events").iterdir()):
        if dt.date.fromisoformat(day.name) < until and not (landing / "events" / day.name).exists():
            shutil.copytree(day, landing / "events" / day.name)


def airflow_env(tmp: Path, conf: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    project_python = str(venv_bin / "python")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "PYSPARK", "SPARK_HOME", "RECPIPE_FAULT"))
    }
    import pyspark

    variable = {
        "conn_id": "spark_default",
        "jobs_dir": str(REPO / "jobs"),
        "conf_path": str(conf),
        "archives": "",
        "spark_conf": {
            "spark.pyspark.python": project_python,
            "spark.pyspark.driver.python": project_python,
        },
        "retries": 0,
        "execution_timeout_hours": 0.5,
    }
    env.update(
        AIRFLOW_HOME=str(tmp / "airflow-home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="120",
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        AIRFLOW_VAR_RECPIPE_CONFIG=json.dumps(variable),
        PATH=f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        SPARK_HOME=os.path.dirname(pyspark.__file__),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def airflow(python: Path, env: dict[str, str], *args: str, log: Path) -> float:
    """``airflow ARGS`` from the Airflow venv; output to ``log``; asserts success; returns seconds."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [str(python), "-m", "airflow", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            timeout=1800,
        )
    took = time.perf_counter() - t0
    print(f"airflow {' '.join(args)}: {took:.1f}s", file=sys.stderr)
    if proc.returncode != 0:
        lines = log.read_text().splitlines()
        errors = [ln for ln in lines if " error: " in ln or "(daily): failed" in ln]
        pytest.fail(
            f"airflow {' '.join(args)} failed (log {log}):\n" + "\n".join(errors[-20:] or lines[-60:])
        )
    return took


def task_states(airflow_home: Path) -> dict[str, dict[str, str]]:
    """{run date: {task: state}} from the metadata database."""
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rows = db.execute(
            "SELECT dr.execution_date, ti.task_id, ti.state FROM task_instance ti JOIN dag_run dr "
            "ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id WHERE ti.dag_id = 'recpipe_daily'"
        ).fetchall()
    out: dict[str, dict[str, str]] = {}
    for when, task, state in rows:
        out.setdefault(str(when)[:10], {})[task] = state
    return out


def test_dag_runs_two_consecutive_days_on_local_spark(airflow_python, spark, tmp_path):  # noqa: F811
    from recpipe.datasets.synthetic import generate
    from recpipe.lake.deltars import DeltaRsLake
    from recpipe.stages.runs import read_runs

    # given: eight days of logs, the days before DAY1 in the landing folder; a fresh lake
    generated, landing, lake = tmp_path / "generated", tmp_path / "landing", tmp_path / "lake"
    generate(generated, events=3000, seed=11, start=FIRST, days=(DAY2 - FIRST).days)
    land(generated, landing, DAY1)
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        CONF.format(
            lake=lake,
            landing=landing,
            # DAY1's examples: train FIRST, validation DAY1 - 2, test DAY1 - 1
            validation_start=DAY1 - dt.timedelta(days=2),
            test_start=DAY1 - dt.timedelta(days=1),
        )
    )
    env = airflow_env(tmp_path, conf)
    airflow(airflow_python, env, "db", "migrate", log=tmp_path / "db-migrate.log")

    # when: the DAG runs for DAY1, then DAY1's logs land and it runs for DAY2
    airflow(airflow_python, env, "dags", "test", "recpipe_daily", DAY1.isoformat(), log=tmp_path / "day1.log")
    land(generated, landing, DAY2)
    airflow(airflow_python, env, "dags", "test", "recpipe_daily", DAY2.isoformat(), log=tmp_path / "day2.log")

    # then: both runs, all six tasks succeeded, each through a real spark-submit on local[2]
    states = task_states(tmp_path / "airflow-home")
    assert states == {d.isoformat(): {s: "success" for s in STAGES} for d in (DAY1, DAY2)}
    for day, date in (("day1", DAY1), ("day2", DAY2)):
        submitted = [
            line.split("Spark-Submit cmd: ", 1)[1]
            for line in (tmp_path / f"{day}.log").read_text().splitlines()
            if "Spark-Submit cmd: " in line
        ]
        for stage in STAGES:
            want = f"{REPO / 'jobs' / stage}.py --conf {conf} --date {date}"
            assert any(c.startswith("spark-submit --master local[2] ") and want in c for c in submitted), (
                f"{day}: no spark-submit of {want} in {submitted}"
            )

    # and ops.runs holds one attempt per stage per day, none failed
    lake_api = DeltaRsLake(spark, str(lake))
    runs = [r.asDict(recursive=True) for r in read_runs(lake_api).collect()]
    staged = [r for r in runs if r["run_date"] is not None]
    assert sorted((r["job"], r["run_date"]) for r in staged) == sorted(
        (s, d) for s in STAGES for d in (DAY1, DAY2)
    )
    at = {(r["job"], r["run_date"]): r for r in staged}
    assert all(r["status"] in ("ok", "skipped") for r in staged), [(r["job"], r["reason"]) for r in staged]
    skipped = {(s, d) for (s, d), r in at.items() if r["status"] == "skipped"}
    # DAY1's evaluation has no lists of DAY1 - 1; DAY2 keeps DAY1's model (train.every_days=2)
    assert skipped == {("evaluate", DAY1), ("train", DAY2)}, {k: at[k]["reason"] for k in skipped}

    # and DAY2's stages read what DAY1's wrote
    def out(stage, day, table):
        return at[(stage, day)]["table_versions"][table]

    def read(stage, day, table):
        return at[(stage, day)]["input_versions"][table]

    assert at[("ingest", DAY1)]["counts"]["batches"] == 3  # the day folders before DAY1
    assert at[("ingest", DAY2)]["counts"] == {**at[("ingest", DAY2)]["counts"], "batches": 1}
    assert out("ingest", DAY2, "silver.events") > out("ingest", DAY1, "silver.events")
    assert read("features", DAY2, "silver.events") == out("ingest", DAY2, "silver.events")
    model = out("train", DAY1, "ops.model_registry")
    assert read("recommend", DAY1, "ops.model_registry") == model
    assert read("recommend", DAY2, "ops.model_registry") == model  # DAY1's model, not retrained
    recs = lake_api.read("gold.recommendations")
    by_date = {
        r["run_date"]: r["model_versions"]
        for r in recs.groupBy("run_date")
        .agg(F.collect_set("model_version").alias("model_versions"))
        .collect()
    }
    assert set(by_date) == {DAY1, DAY2}
    assert by_date[DAY1] == by_date[DAY2] and None not in by_date[DAY1], by_date
    # DAY2 evaluated the lists DAY1 published (evaluate.horizon_days=1)
    assert json.loads(at[("evaluate", DAY2)]["summary_json"])["plan"] == {"lists_date": DAY1.isoformat()}
    assert read("evaluate", DAY2, "gold.recommendations") >= out("recommend", DAY1, "gold.recommendations")
    evaluated = lake_api.read("ops.evaluations").select("run_date").distinct().collect()
    assert [r[0] for r in evaluated] == [DAY1]
