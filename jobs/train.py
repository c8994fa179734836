"""spark-submit entry point of the ``train`` stage: Horovod training of the CTR model -> model artifact + ops.model_registry.

Same arguments as ``recpipe train``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh train --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("train"))
