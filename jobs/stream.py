"""spark-submit entry point of ``recpipe stream``: Structured Streaming ingest of the landing folder.

Same arguments as ``recpipe stream``; all logic lives in ``libs/recpipe``.
Usage: ``deploy/spark-submit.sh stream --conf conf/cluster.yaml [--once]``.
"""

import sys

from recpipe.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("stream"))
