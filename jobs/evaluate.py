"""spark-submit entry point of the ``evaluate`` stage: offline metrics and off-policy estimates -> ops.evaluations.

Same arguments as ``recpipe evaluate``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh evaluate --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("evaluate"))
