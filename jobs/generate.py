"""spark-submit entry point of the ``generate`` stage: synthetic media event logs (not a Spark job; runs fine under spark-submit too).

Same arguments as ``recpipe generate``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh generate --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("generate"))
