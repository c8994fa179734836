"""Horovod training on local[2] through horovod.spark.run, the registry and kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, make_config

pytestmark = [pytest.mark.integration, pytest.mark.horovod]

ROWS = 4_000
EPOCHS = 20  # of the kill-and-resume run
TWO_RANK_EPOCHS = 6


def _train_cfg(tmp: Path, **train):
    values = {
        "model_dir": str(tmp / "models"),
        "num_proc": 2,
        "epochs": 2,
        "batch_size": 128,
        "learning_rate": 0.003,
        "checkpoint_every_steps": 10,
        **train,
    }
    return make_config(tmp / "lake", tmp / "raw", train=values)


@pytest.fixture(scope="module")
def examples_lake(spark, tmp_path_factory):
    from recpipe.lake import open_lake
    from tests.support.model_examples import synthetic_examples, synthetic_spec, write_examples

    tmp = tmp_path_factory.mktemp("train")
    cfg = _train_cfg(tmp)
    lake = open_lake(cfg, spark)
    write_examples(spark, lake, synthetic_examples(ROWS, seed=5), synthetic_spec())
    return tmp, cfg, lake


def test_two_ranks_train_identical_weights_export_and_register(spark, examples_lake):
    from recpipe.config import replace
    from recpipe.constants import MODEL_REGISTRY
    from recpipe.model.inputs import to_model_inputs
    from recpipe.model.registry import load_current_model
    from recpipe.model.train import rank_threads, run_train
    from tests.support.model_examples import synthetic_examples

    tmp, cfg, lake = examples_lake
    # when training runs with 2 Horovod ranks on the 2 local executor slots, for enough epochs
    # to learn from 2,800 rows (after 2 epochs CI once saw val AUC 0.593, under the 0.6 bar)
    cfg = replace(cfg, [f"train.epochs={TWO_RANK_EPOCHS}", "train.early_stopping_patience=99"])
    s = run_train(cfg, spark, lake, run_id="two-ranks", model_kwargs={"deep_units": [32, 16]})
    # then both ranks end with bit-identical weights
    assert s["workers"] == 2
    assert len(s["weights_checksums"]) == 1, s["weights_checksums"]
    # each rank took its share of the machine's cores (train.threads_per_rank 0)
    assert s["tf_threads_per_rank"] == [rank_threads(0, os.cpu_count(), 2)]
    # the model learned something and baselines are reported on the same test split
    assert s["val_auc"] > 0.6 and s["test_auc"] > 0.6
    assert 0 < s["test_logloss"] < 0.7
    assert s["popularity_auc"] is not None and s["oracle_auc"] > s["popularity_auc"]
    assert s["resumed_from_step"] == 0 and s["epochs_run"] == TWO_RANK_EPOCHS
    # the export holds the model, the spec and the metadata
    export = Path(s["path"])
    meta = json.loads((export / "model_meta.json").read_text())
    assert meta["examples_version"] == lake.version("gold.training_examples")
    assert meta["metrics"]["test_auc"] == pytest.approx(s["test_auc"])
    assert set(meta["hashing"]) == {"user_id", "item_id"}
    # the report: summary, per-epoch history and samples/s per rank, and its page beside it
    page = Path(s["report_html"])
    assert page.name == "train-two-ranks.html" and page.parent == Path(cfg.artifacts_dir("reports"))
    rep = json.loads(page.with_suffix(".json").read_text())
    assert [h["epoch"] for h in rep["history"]] == list(range(1, TWO_RANK_EPOCHS + 1))
    assert len(rep["samples_per_s_by_rank"]) == 2 and min(rep["samples_per_s_by_rank"]) > 0
    assert rep["test_auc"] == s["test_auc"] and page.read_text().count("data:image/png;base64,") == 4
    # calibration of the test scores of every rank (gathered): a share, deciles covering each row
    cal = s["calibration"]
    assert 0 <= cal["ece"] <= 1 and 0 < cal["brier"] < 0.25
    test_rows = lake.read("gold.training_examples").where("split = 'test'").count()
    assert sum(d["n"] for d in cal["deciles"]) == cal["n"] == meta["metrics"]["test_rows"] == test_rows
    assert [d["bin"] for d in cal["deciles"]] == list(range(1, 11))
    assert meta["calibration"] == rep["calibration"] == cal
    # and the registry has it as the current model, which the scorer can load
    assert s["status"] == "current" and s["model_version"] == "m00001"
    rows = lake.read(MODEL_REGISTRY).collect()
    assert [(r.model_version, r.status, r.run_id) for r in rows] == [("m00001", "current", "two-ranks")]
    model, spec, row = load_current_model(cfg, lake)
    assert row["run_id"] == "two-ranks"
    p = model.predict(to_model_inputs(synthetic_examples(50, seed=9), spec), verbose=0)
    assert p.shape == (50, 1)
    _assert_mlflow_run(cfg, s, rep, meta)


def _assert_mlflow_run(cfg, s, rep, meta):
    """The run in MLflow's embedded store under the lake root, read back with MLflow's client."""
    from mlflow.tracking import MlflowClient

    from recpipe.model.tracking import PER_EPOCH_METRICS

    ml = s["mlflow"]
    assert set(ml) == {"run_id", "tracking_uri", "experiment"}, ml
    assert ml["tracking_uri"] == f"sqlite:///{Path(cfg.lake.root).resolve()}/_mlflow/mlflow.db"
    assert ml["experiment"] == "recpipe" and rep["mlflow"] == meta["mlflow"] == ml
    client = MlflowClient(ml["tracking_uri"])
    run = client.get_run(ml["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "two-ranks"
    # params: the train config (and the test's model_kwargs override), as MLflow's strings
    tc = cfg.train
    keys = ["model", "batch_size", "learning_rate", "warmup_epochs", "epochs", "early_stopping_patience"]
    keys += ["checkpoint_every_steps", "seed", "num_proc", "dropout", "l2", "vector_dim", "cross_layers"]
    keys += ["precision", "sparse_as_dense", "gpus_per_worker", "position_bias", "ipw_clip", "exclude_inputs"]
    expected = {k: str(getattr(tc, k)) for k in keys}
    expected.update(
        run_id="two-ranks",
        deep_units="[32, 16]",
        examples_table="gold.training_examples",
        examples_version=str(meta["examples_version"]),
    )
    assert run.data.params == expected
    # one point per epoch, step = epoch, the history's values
    for key in PER_EPOCH_METRICS:
        points = client.get_metric_history(ml["run_id"], key)
        assert [(m.step, m.value) for m in points] == [(h["epoch"], h[key]) for h in rep["history"]], key
    # the final metrics are the summary's; tags name the registry version
    final = run.data.metrics
    assert final["test_auc"] == s["test_auc"] and final["best_val_auc"] == s["val_auc"]
    assert final["test_ece"] == s["calibration"]["ece"] and final["popularity_auc"] == s["popularity_auc"]
    assert run.data.tags["model_version"] == "m00001" and run.data.tags["registry_status"] == "current"
    # and the exported model is the run's artifact
    names = [f.path for f in client.list_artifacts(ml["run_id"], "model")]
    assert names == ["model/feature_spec.json", "model/model.keras", "model/model_meta.json"]


def test_ipw_training_reweights_clicks_by_position_and_serves_without_position(spark, examples_lake):
    from recpipe.config import replace
    from recpipe.features.spec import FeatureSpec
    from recpipe.model.inputs import to_model_inputs
    from recpipe.model.models import load_model
    from recpipe.model.train import run_train
    from tests.support.model_examples import synthetic_examples

    tmp, cfg, lake = examples_lake
    # when the two ranks train with train.position_bias=ipw (examination curve from the train split)
    cfg = replace(cfg, ["train.position_bias=ipw", "train.epochs=3", "train.early_stopping_patience=99"])
    s = run_train(cfg, spark, lake, run_id="ipw", register=False, model_kwargs={"deep_units": [32, 16]})
    # then the curve was fitted on the logged train impressions (clicks fall with position there)
    pb = s["position_bias"]
    train = lake.read("gold.training_examples").where("split = 'train'")
    assert pb["mode"] == "ipw" and pb["clip"] == 10.0
    # every train impression is in the fit except those of likely bots (users who click half of
    # what they see: position.likely_bots)
    from recpipe.model.position import likely_bots

    rows = train.select("user_id", "label").toPandas()
    bots = likely_bots(rows["user_id"].to_numpy(), rows["label"].to_numpy())
    assert pb["bot_rows_left_out"] == int(bots.sum())
    assert pb["impressions"] == int((~bots).sum()) and pb["clicks"] == int(rows["label"][~bots].sum())
    assert pb["beta"] is not None and pb["beta"] > 0.1, pb
    # the ranks stayed identical with the reweighted labels, and the model ranks held-out clicks
    assert len(s["weights_checksums"]) == 1 and s["test_auc"] > 0.6, s
    # the exported spec has no position input: serving never feeds one to this model
    export = Path(s["path"])
    spec = FeatureSpec.from_json((export / "feature_spec.json").read_text())
    assert "position" not in spec.columns and spec.metadata["position_bias"] == "ipw"
    meta = json.loads((export / "model_meta.json").read_text())
    assert meta["params"]["position_bias"] == "ipw" and meta["params"]["ipw_clip"] == 10.0
    model = load_model(str(export / "model.keras"))
    p = model.predict(
        to_model_inputs(synthetic_examples(50, seed=9).drop(columns="position"), spec), verbose=0
    )
    assert p.shape == (50, 1) and np.isfinite(p).all()


def test_din_trains_data_parallel_with_identical_weights_and_exports_its_attention(spark, examples_lake):
    from recpipe.config import replace
    from recpipe.features.spec import FeatureSpec
    from recpipe.model.inputs import to_model_inputs
    from recpipe.model.models import load_model
    from recpipe.model.train import run_train
    from tests.support.model_examples import synthetic_examples

    tmp, cfg, lake = examples_lake
    # when two Horovod ranks train the DIN-style attention model
    # (each pinned to 3 TensorFlow threads: train.threads_per_rank reaches the ranks)
    cfg = replace(
        cfg, ["train.model=din", "train.attention_units=8", "train.epochs=3", "train.threads_per_rank=3"]
    )
    s = run_train(cfg, spark, lake, run_id="din", register=False, model_kwargs={"deep_units": [32, 16]})
    # then the ranks end identical, the model ranks held-out clicks, the export has the attention
    assert s["workers"] == 2 and len(s["weights_checksums"]) == 1, s["weights_checksums"]
    assert s["tf_threads_per_rank"] == [(3, 1)]
    assert s["test_auc"] > 0.6, s
    export = Path(s["path"])
    meta = json.loads((export / "model_meta.json").read_text())
    assert meta["params"]["model"] == "din"
    model = load_model(str(export / "model.keras"))
    assert model.name == "din" and any(layer.name.startswith("attend_") for layer in model.layers)
    spec = FeatureSpec.from_json((export / "feature_spec.json").read_text())
    p = model.predict(to_model_inputs(synthetic_examples(50, seed=9), spec), verbose=0)
    assert p.shape == (50, 1) and np.isfinite(p).all()


def test_registry_promotes_rejects_and_archives_in_one_commit(spark, tmp_path):
    from recpipe.constants import MODEL_REGISTRY
    from recpipe.lake import open_lake
    from recpipe.model.registry import read_registry, register_model

    lake = open_lake(make_config(tmp_path / "lake", tmp_path / "raw"), spark)

    def reg(run_id, auc):
        return register_model(
            lake,
            run_id=run_id,
            data_version=3,
            params={"model": "dcn"},
            metrics={"val_auc": auc},
            path=f"/models/{run_id}",
            tolerance=0.005,
        )

    assert reg("a", 0.70)["status"] == "current"
    worse = reg("b", 0.65)
    assert worse["status"] == "rejected" and "< current" in worse["reason"]
    v_before = lake.version(MODEL_REGISTRY)
    assert reg("c", 0.698)["status"] == "current"  # within tolerance
    assert lake.version(MODEL_REGISTRY) == v_before + 1  # new row + archive: one commit
    assert reg("c", 0.1)["model_version"] == "m00003"  # idempotent per run id
    rows = {r["run_id"]: r for r in read_registry(lake)}
    assert {k: r["status"] for k, r in rows.items()} == {"a": "archived", "b": "rejected", "c": "current"}
    assert rows["a"]["reason"] == "superseded by m00003"


def test_previous_scorer_is_the_model_promoted_before_the_given_one(spark, tmp_path):
    from recpipe.lake import open_lake
    from recpipe.model.registry import register_model
    from recpipe.scoring.scorers import POPULARITY, previous_scorer
    from tests.support.model_examples import synthetic_spec

    lake = open_lake(make_config(tmp_path / "lake", tmp_path / "raw"), spark)
    spec = synthetic_spec()

    def reg(run_id, auc):
        export = tmp_path / "models" / run_id
        export.mkdir(parents=True)
        (export / "feature_spec.json").write_text(spec.to_json())
        row = register_model(
            lake,
            run_id=run_id,
            data_version=1,
            params={"model": "dcn"},
            metrics={"val_auc": auc},
            path=str(export),
            tolerance=0.005,
        )
        return row["model_version"], row["status"]

    # m1 current, m2 rejected (worse), m3 promoted (m1 archived), m4 promoted (m3 archived)
    assert [reg("a", 0.70), reg("b", 0.60), reg("c", 0.71), reg("d", 0.72)] == [
        ("m00001", "current"),
        ("m00002", "rejected"),
        ("m00003", "current"),
        ("m00004", "current"),
    ]
    ref, why = previous_scorer(lake, "m00004")
    assert (ref.kind, ref.version, why) == ("model", "m00003", "promoted before m00004")
    assert ref.uri == str(tmp_path / "models" / "c") and ref.inputs == tuple(spec.columns)
    # the rejected m00002 never served: before m00003 came m00001
    assert previous_scorer(lake, "m00003")[0].version == "m00001"
    assert previous_scorer(lake, "m00001") == (POPULARITY, "no model was promoted before m00001")
    assert previous_scorer(lake, None)[0] == POPULARITY


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(examples_lake, tmp_path):
    import psutil

    _, cfg, lake = examples_lake
    conf = {
        "mode": "local",
        "lake": {"root": cfg.lake.root},
        "data": {"source": "raw", "raw_dir": str(tmp_path / "raw")},
        "privacy": {"allow_dev_key": True},
        "spark": {
            "master": "local[2]",
            "show_progress": False,
            "log_level": "ERROR",
            "conf": {"spark.ui.enabled": "false", "spark.local.dir": str(tmp_path / "spark")},
        },
        "train": {
            "model_dir": str(tmp_path / "models"),
            "num_proc": 2,
            "epochs": EPOCHS,
            "batch_size": 32,
            "checkpoint_every_steps": 10,
            "early_stopping_patience": 1000,
        },
    }
    conf_file = tmp_path / "train.yaml"
    conf_file.write_text(yaml.safe_dump(conf))
    cmd = [sys.executable, str(REPO / "jobs" / "train.py"), "--conf", str(conf_file), "--run-id", "killme"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ckpt_dir = tmp_path / "models" / "runs" / "killme" / "ckpt"

    # given a training run killed with SIGKILL once it has written a checkpoint
    log1 = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log1, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 240
    while not (ckpt_dir / "checkpoint").exists():
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.5)
    victims = [proc.pid, *_descendants(proc.pid)]
    for pid in victims:  # the driver, its Spark JVM and the Horovod rank processes
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    _, alive = psutil.wait_procs([p for p in map(_proc_or_none, victims) if p], timeout=20)
    assert not alive, f"processes of the killed run still alive: {alive}"
    assert not (tmp_path / "models" / "runs" / "killme" / "export").exists()

    # when it is started again with the same run id
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    # then it resumed from the checkpoint (step > 0) and finished the remaining steps exactly
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout.strip().splitlines()[-1])
    assert s["resumed_from_step"] > 0
    steps_per_epoch = -(-(int(ROWS * 0.7) // 2) // 32)
    assert s["steps"] == EPOCHS * steps_per_epoch  # no step repeated or skipped
    # epochs completed before the kill were not run again (the interrupted one was finished)
    assert s["epochs_run"] == EPOCHS - s["resumed_from_step"] // steps_per_epoch
    assert len(s["weights_checksums"]) == 1
    assert s["status"] in ("current", "rejected") and s["model_version"]


def _proc_or_none(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
