"""Daily recpipe run: one spark-submit per stage, in pipeline order, for the run date ``{{ ds }}``.

Each task submits ``jobs/<stage>.py`` with the packed environment (``deploy/spark-submit.sh`` builds
it) and passes ``--conf``, ``--date`` and the optional ``--set`` overrides: the same arguments as
``recpipe <stage>``, ``deploy/spark-submit.sh`` and the Kubernetes manifests. Each stage applies its
date plan for run date D = ``ds`` (recpipe.stages.daily) and records its attempt in ``ops.runs``
(``recpipe status``); a task that reruns a finished stage is skipped (skip-if-done).

Settings come from the Airflow Variable ``recpipe_config`` (JSON), merged over ``DEFAULTS``; set it
in the UI, or as ``AIRFLOW_VAR_RECPIPE_CONFIG`` in the environment (no database read). Example::

    {"conn_id": "spark_k8s", "conf_path": "/opt/recpipe/conf/cluster.yaml",
     "archives": "s3://recpipe-artifacts/recpipe-env.tar.gz#environment"}

Written for Airflow 2.10 with apache-airflow-providers-apache-spark 5.x.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow import DAG
from airflow.models import Variable
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

# Pipeline order: each stage reads only tables the previous ones published.
STAGES = ("ingest", "features", "examples", "train", "recommend", "evaluate")

DEFAULTS: dict[str, Any] = {
    # Airflow connection of the Spark master (host: k8s://..., yarn, spark://...; extra: deploy-mode).
    "conn_id": "spark_default",
    # Where the Airflow worker finds the repository's jobs/ and the config (our Docker image layout).
    "jobs_dir": "/opt/recpipe/jobs",
    "conf_path": "/opt/recpipe/conf/cluster.yaml",
    # Packed environment (venv-pack), unpacked as ./environment on the driver and every executor.
    "archives": "/opt/recpipe/dist/recpipe-env.tar.gz#environment",
    # Extra Python files for the executors (comma-separated); the packed env already holds recpipe.
    "py_files": "",
    "spark_conf": {"spark.pyspark.python": "./environment/bin/python"},
    # Config overrides passed to every stage as `--set key=value`, e.g. ["train.every_days=7"].
    "overrides": [],
    "retries": 2,
    "retry_delay_minutes": 5,
    "max_retry_delay_minutes": 60,
    "execution_timeout_hours": 6,
}


def load_settings() -> dict[str, Any]:
    """``DEFAULTS`` updated with the ``recpipe_config`` Variable (one lookup per parse)."""
    overrides = Variable.get("recpipe_config", default_var={}, deserialize_json=True)
    return {**DEFAULTS, **overrides}


def stage_arguments(settings: dict[str, Any]) -> list[str]:
    """``--conf <conf_path> --date {{ ds }}`` and ``--set`` per override (tests parse these with the
    real ``recpipe`` argument parser, so keep this function free of Airflow imports)."""
    args = ["--conf", settings["conf_path"], "--date", "{{ ds }}"]
    for override in settings.get("overrides") or []:
        args += ["--set", str(override)]
    return args


def stage_task(stage: str, settings: dict[str, Any]) -> SparkSubmitOperator:
    """The spark-submit task of one stage: ``jobs/<stage>.py`` with :func:`stage_arguments`."""
    return SparkSubmitOperator(
        task_id=stage,
        name=f"recpipe-{stage}-{{{{ ds_nodash }}}}",
        conn_id=settings["conn_id"],
        application=f"{settings['jobs_dir'].rstrip('/')}/{stage}.py",
        application_args=stage_arguments(settings),
        archives=settings["archives"] or None,
        py_files=settings["py_files"] or None,
        conf=dict(settings["spark_conf"]),
        retries=int(settings["retries"]),
        retry_delay=dt.timedelta(minutes=float(settings["retry_delay_minutes"])),
        retry_exponential_backoff=True,
        max_retry_delay=dt.timedelta(minutes=float(settings["max_retry_delay_minutes"])),
        execution_timeout=dt.timedelta(hours=float(settings["execution_timeout_hours"])),
    )


with DAG(
    dag_id="recpipe_daily",
    description="Daily batch recommendations: ingest -> features -> examples -> train -> recommend -> evaluate",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "recpipe", "depends_on_past": False},
    tags=["recpipe", "spark"],
    doc_md=__doc__,
) as dag:
    _settings = load_settings()
    _tasks = [stage_task(stage, _settings) for stage in STAGES]
    for upstream, downstream in zip(_tasks, _tasks[1:]):
        upstream >> downstream
