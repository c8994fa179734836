"""spark-submit entry point of the ``features`` stage: silver tables -> gold.user_features, gold.item_features (as of --date).

Same arguments as ``recpipe features``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh features --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("features"))
