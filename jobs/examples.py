"""spark-submit entry point of the ``examples`` stage: impressions + point-in-time features -> gold.training_examples.

Same arguments as ``recpipe examples``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh examples --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("examples"))
