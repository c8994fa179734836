"""spark-submit entry point of the ``ingest`` stage: raw event files -> bronze/silver Delta tables.

Same arguments as ``recpipe ingest``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh ingest --conf conf/cluster.yaml [args...]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("ingest"))
