"""The session conf's defaults (recpipe.spark.session_conf): what local and cluster sessions get
unless the configuration says otherwise."""

from __future__ import annotations

from pathlib import Path

from recpipe.config import load_config
from recpipe.spark import DEFAULT_CONF, LOCAL_DEFAULT_CONF, session_conf

REPO = Path(__file__).resolve().parents[2]
PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"


def test_file_listing_defaults_of_local_and_cluster_sessions():
    local = session_conf(load_config(REPO / "conf/local.yaml"))
    cluster = session_conf(load_config(REPO / "conf/cluster.yaml"))
    # a local driver lists a snapshot's files itself; a cluster lists them in a job of 32 tasks
    assert local[THRESHOLD] == LOCAL_DEFAULT_CONF[THRESHOLD] == "100000"
    assert THRESHOLD not in cluster
    assert local[PARALLELISM] == cluster[PARALLELISM] == DEFAULT_CONF[PARALLELISM] == "32"


def test_the_configuration_wins_over_the_defaults():
    cfg = load_config(
        REPO / "conf/local.yaml", [f"spark.conf.{THRESHOLD}=64", f"spark.conf.{PARALLELISM}=500"]
    )
    conf = session_conf(cfg)
    assert conf[THRESHOLD] == "64" and conf[PARALLELISM] == "500"
