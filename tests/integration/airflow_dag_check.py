"""Load deploy/airflow/dags with Airflow's DagBag and print what the DAG test asserts on, as JSON.

Runs inside build/airflow-venv (not the project's venv): ``python airflow_dag_check.py DAGS_DIR``.
"""

from __future__ import annotations

import json
import sys

from airflow.models import DagBag


def main(dags_dir: str) -> int:
    bag = DagBag(dag_folder=dags_dir, include_examples=False)
    out: dict = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": bag.dag_ids}
    dag = bag.dags.get("recpipe_daily")  # get_dag() would query the metadata database
    if dag is not None:
        env = dag.get_template_env()
        out.update(
            catchup=dag.catchup,
            schedule=str(dag.schedule_interval),
            max_active_runs=dag.max_active_runs,
            topological=[t.task_id for t in dag.topological_sort()],
            tasks={
                t.task_id: {
                    "type": type(t).__name__,
                    "upstream": sorted(t.upstream_task_ids),
                    "downstream": sorted(t.downstream_task_ids),
                    "retries": t.retries,
                    "exponential_backoff": t.retry_exponential_backoff,
                    "conn_id": t._conn_id,
                    "application": t.application,
                    "archives": t._archives,
                    "conf": t.conf,
                    "application_args": t.application_args,
                    "rendered_args": [
                        env.from_string(str(a)).render(ds="2026-10-05") for a in t.application_args
                    ],
                }
                for t in dag.tasks
            },
        )
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
