"""Configuration: typed, validated at load, errors name the file and the key."""

from __future__ import annotations

import pytest

from recpipe.config import DEV_ONLY_PSEUDONYM_KEY, ConfigError, load_config

pytestmark = pytest.mark.unit


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_shipped_configs_load():
    local = load_config("conf/local.yaml")
    assert local.mode == "local" and local.spark.master == "local[2]" and local.lake.root == "./lakehouse"
    assert local.data.source == "synthetic"
    cluster = load_config("conf/cluster.yaml")
    assert cluster.mode == "cluster" and cluster.lake.root.startswith("s3://")
    assert cluster.privacy.allow_dev_key is False


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path, "mode: local\nlake: {root: /x, rooot: /y}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'lake\.rooot'"):
        load_config(p)


def test_missing_key_names_file_and_key(tmp_path):
    p = write(tmp_path, "mode: local\nlake: {backend: delta-rs}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: missing required key 'lake\.root'"):
        load_config(p)


def test_wrong_type_names_file_and_key(tmp_path):
    p = write(tmp_path, "mode: local\nlake: {root: /x}\ndata: {synthetic: {events: many}}\n")
    with pytest.raises(ConfigError, match=r"key 'data\.synthetic\.events' must be int, got str"):
        load_config(p)
    p = write(tmp_path, "mode: laptop\nlake: {root: /x}\n")
    with pytest.raises(ConfigError, match=r"key 'mode' must be one of \['local', 'cluster'\]"):
        load_config(p)


def test_overrides_are_typed_and_validated():
    cfg = load_config(
        "conf/local.yaml",
        ["lake.root=/tmp/lake", "data.synthetic.events=5000", "spark.conf.spark.sql.shuffle.partitions=8"],
    )
    assert cfg.lake.root == "/tmp/lake" and cfg.data.synthetic.events == 5000
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "8"
    with pytest.raises(ConfigError, match="unknown key 'lake.nope'"):
        load_config("conf/local.yaml", ["lake.nope=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("conf/local.yaml", ["lake.root"])


def test_pseudonym_key_comes_from_the_environment(monkeypatch):
    cfg = load_config("conf/local.yaml")
    monkeypatch.delenv("RECPIPE_PSEUDONYM_KEY", raising=False)
    assert cfg.pseudonym_key() == DEV_ONLY_PSEUDONYM_KEY  # local default: dev-only key
    monkeypatch.setenv("RECPIPE_PSEUDONYM_KEY", "s3cret")
    assert cfg.pseudonym_key() == "s3cret"
    monkeypatch.delenv("RECPIPE_PSEUDONYM_KEY")
    with pytest.raises(ConfigError, match="RECPIPE_PSEUDONYM_KEY is not set"):
        load_config("conf/cluster.yaml").pseudonym_key()


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("recommend.top_n=0", r"key 'recommend\.top_n' must be >= 1, got 0"),
        ("recommend.top_n=-5", r"key 'recommend\.top_n' must be >= 1, got -5"),
        ("recommend.explore_share=7", r"key 'recommend\.explore_share' must be <= 1, got 7"),
        ("train.epochs=-1", r"key 'train\.epochs' must be >= 1, got -1"),
        ("train.num_proc=0", r"key 'train\.num_proc' must be >= 1, got 0"),
        ("lake.commit_retries=-1", r"key 'lake\.commit_retries' must be >= 0, got -1"),
        ("train.learning_rate=-1", r"key 'train\.learning_rate' must be > 0, got -1"),
        ("features.windows_days=[1,0]", r"key 'features\.windows_days\[1\]' must be >= 1, got 0"),
        ("ingest.min_event_ts=yesterday", r"key 'ingest\.min_event_ts' must be an ISO timestamp"),
        ("examples.test_start=2026-13-01", r"key 'examples\.test_start' must be an ISO date"),
        ("examples.test_start=2026-10-01", r"key 'examples\.validation_start' \(2026-10-11\) must be before"),
        ("examples.window_days=2", r"key 'examples\.window_days' \(2\) must exceed"),
        ("candidates.shares.als=-0.5", r"key 'candidates\.shares\.als' must be >= 0, got -0\.5"),
        ("candidates.shares.alz=0.5", r"unknown key 'candidates\.shares\.alz' \(allowed here: \['als', "),
        ("candidates.content_min_cosine=2", r"key 'candidates\.content_min_cosine' must be <= 1"),
    ],
)
def test_values_are_range_checked_at_load(override, message):
    """Issue 9: bad values were accepted at load (top_n=0 later wiped the published lists)."""
    with pytest.raises(ConfigError, match=r"conf/local\.yaml: " + message):
        load_config("conf/local.yaml", [override])


def test_range_checks_apply_to_yaml_values_too(tmp_path):
    p = write(tmp_path, "mode: local\nlake: {root: /x}\nrecommend: {top_n: 0}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'recommend\.top_n' must be >= 1"):
        load_config(p)


def test_candidate_settings_come_from_config(tmp_path):
    """Issue 15: the sources' and re-ranking's settings were code-only, and RerankParams'
    defaults (cap 3, boost 0.2) disagreed with the config's (4, 0.05)."""
    from recpipe.candidates.run import CandidateParams
    from recpipe.scoring.rerank import RerankParams

    p = write(
        tmp_path,
        "mode: local\nlake: {root: /x}\ncandidates: {als_rank: 8, shares: {als: 0.5, trending: 0.5}}\n"
        "recommend: {explore_pool_size: 7}\n",
    )
    cfg = load_config(p)
    assert cfg.candidates.als_rank == 8 and cfg.candidates.shares == {"als": 0.5, "trending": 0.5}
    assert CandidateParams() == load_config("conf/local.yaml").candidates
    assert RerankParams.from_config(cfg.recommend, cfg.candidates.uncertain_impressions).pool_size == 7
    assert RerankParams.from_config(load_config("conf/local.yaml").recommend) == RerankParams()


def test_dates_and_timestamps_are_typed(tmp_path):
    """Dates load as ``datetime.date`` and timestamps as aware ``datetime`` from quoted or unquoted
    YAML and from ``--set``; a copy through ``replace`` keeps them."""
    import datetime as dt

    from recpipe.config import replace

    cfg = load_config("conf/local.yaml")
    assert cfg.examples.test_start == dt.date(2026, 10, 13) and type(cfg.examples.test_start) is dt.date
    assert cfg.data.synthetic.start == dt.date(2026, 10, 1)
    assert cfg.ingest.min_event_ts == dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    over = load_config(
        "conf/local.yaml",
        ["examples.test_start=2026-10-20", "ingest.min_event_ts=1995-01-01T00:00:00"],  # naive: UTC
    )
    assert over.examples.test_start == dt.date(2026, 10, 20)
    assert over.ingest.min_event_ts == dt.datetime(1995, 1, 1, tzinfo=dt.UTC)
    assert replace(over, ["train.epochs=2"]).examples.test_start == dt.date(2026, 10, 20)
    with pytest.raises(ConfigError, match=r"key 'examples\.test_start' must be an ISO date like 2026-10-01"):
        load_config("conf/local.yaml", ["examples.test_start=2026-10-20T01:00:00Z"])
