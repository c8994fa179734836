"""spark-submit entry point of ``recpipe run``: every stage in order in one Spark application.

Used by the Kubernetes ScheduledSparkApplication (deploy/k8s/recpipe-daily.yaml); Airflow runs the
stages as separate jobs instead. Same arguments as ``recpipe run``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("run"))
