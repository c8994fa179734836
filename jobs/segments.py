"""spark-submit entry point of ``segments``: gold.user_profiles -> gold.user_segments (rules and KMeans clusters).

Same arguments as ``recpipe segments``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh segments --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("segments"))
