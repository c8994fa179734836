"""spark-submit entry point of the ``recommend`` stage: candidates + CTR scoring + re-ranking -> gold.recommendations.

Same arguments as ``recpipe recommend``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh recommend --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("recommend"))
