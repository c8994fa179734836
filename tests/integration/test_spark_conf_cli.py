"""Issue 9: a bad Spark conf value ends the CLI with one line naming the key and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

MAIN = "import sys; from recpipe.cli import main; sys.exit(main(sys.argv[1:]))"


def test_cli_bad_sql_conf_is_one_line_exit_2(tmp_path):
    """Spark checks spark.sql.* values lazily: before the fix `tables` exited 0 with this value and
    the first query failed with a Java stack trace."""
    proc = subprocess.run(
        [sys.executable, "-c", MAIN, "tables", "--json"]
        + ["--set", "spark.conf.spark.sql.shuffle.partitions=abc", "--set", f"lake.root={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == "" and "Traceback" not in proc.stderr and "\tat " not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "recpipe tables: error: conf/local.yaml: key 'spark.conf.spark.sql.shuffle.partitions'"
    )
    assert "The value 'abc' in the config \"spark.sql.shuffle.partitions\" is invalid" in last
