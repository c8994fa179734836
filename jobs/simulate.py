"""spark-submit entry point of ``recpipe simulate``: the closed loop on the synthetic world.

Same arguments as ``recpipe simulate``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh simulate --conf conf/cluster.yaml --days 7``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("simulate"))
