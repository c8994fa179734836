"""MLflow tracking of a training run without training: a fake history and export folder logged to
the embedded SQLite store and read back, an unreachable server (an error in the summary, no
exception), and the tracking URI a config resolves to."""

from __future__ import annotations

import json
import logging

import pytest

from recpipe.model.tracking import log_training_run, tracking_target
from tests.conftest import make_config

pytestmark = pytest.mark.unit

HISTORY = [
    {"epoch": 1, "train_loss": 0.69, "val_auc": 0.61, "val_logloss": 0.66, "samples_per_s": 900.0},
    {"epoch": 2, "train_loss": 0.62, "val_auc": None, "val_logloss": 0.64, "samples_per_s": 1000.0},
]


def _run(cfg, export_dir=None):
    return log_training_run(
        cfg,
        run_name="r1",
        params={"run_id": "r1", "epochs": 2, "deep_units": [32, 16]},
        history=HISTORY,
        metrics={"test_auc": 0.7, "oracle_auc": None, "test_ece": float("nan")},
        tags={"model_version": "m00001", "run_date": None},
        export_dir=export_dir,
    )


def test_run_logged_to_the_embedded_store_and_read_back(tmp_path):
    from mlflow.tracking import MlflowClient

    # given a config without a tracking URI and an exported model folder
    cfg = make_config(tmp_path / "lake", tmp_path / "raw")
    export = tmp_path / "export"
    export.mkdir()
    (export / "model_meta.json").write_text(json.dumps({"run_id": "r1"}))
    (export / "model.keras").write_bytes(b"weights")
    # when the run is logged
    out = _run(cfg, str(export))
    # then it went to SQLite under the lake root, artifacts beside it
    uri = f"sqlite:///{(tmp_path / 'lake' / '_mlflow' / 'mlflow.db').resolve()}"
    assert out == {"run_id": out["run_id"], "tracking_uri": uri, "experiment": "recpipe"}
    client = MlflowClient(uri)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    assert run.data.params == {"run_id": "r1", "epochs": "2", "deep_units": "[32, 16]"}
    assert run.data.tags["model_version"] == "m00001" and "run_date" not in run.data.tags
    # per-epoch points at step = epoch (a missing value left out); None/NaN finals left out
    loss = client.get_metric_history(out["run_id"], "train_loss")
    assert [(m.step, m.value) for m in loss] == [(1, 0.69), (2, 0.62)]
    assert [m.step for m in client.get_metric_history(out["run_id"], "val_auc")] == [1]
    assert {k: v for k, v in run.data.metrics.items() if k.startswith(("test", "oracle"))} == {
        "test_auc": 0.7
    }
    assert [f.path for f in client.list_artifacts(out["run_id"], "model")] == [
        "model/model.keras",
        "model/model_meta.json",
    ]
    assert run.info.artifact_uri.startswith((tmp_path / "lake" / "_mlflow" / "artifacts").resolve().as_uri())
    # and the export's metadata names the MLflow run
    meta = json.loads((export / "model_meta.json").read_text())
    assert meta == {"run_id": "r1", "mlflow": out}


def test_unreachable_server_gives_an_error_not_an_exception(tmp_path, monkeypatch, caplog):
    # given a tracking server nobody listens on (no retries: the test stays fast)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg = make_config(tmp_path / "lake", tmp_path / "raw", train={"tracking_uri": "http://127.0.0.1:9"})
    # when a run is logged
    with caplog.at_level(logging.WARNING, logger="recpipe.model.tracking"):
        out = _run(cfg)
    # then the summary block holds the reason, and one warning line says it
    assert out["tracking_uri"] == "http://127.0.0.1:9" and out["experiment"] == "recpipe"
    assert "run_id" not in out and "127.0.0.1" in out["error"] and "\n" not in out["error"]
    warnings = [r for r in caplog.records if r.name == "recpipe.model.tracking"]
    assert len(warnings) == 1 and "MLflow tracking failed" in warnings[0].getMessage()


def test_a_final_metric_named_like_an_epoch_metric_is_refused(tmp_path):
    # a final "val_auc" would join the per-epoch series at step 0
    out = log_training_run(
        make_config(tmp_path / "lake", tmp_path / "raw"),
        run_name="r1",
        params={},
        history=HISTORY,
        metrics={"val_auc": 0.6},
        tags={},
        export_dir=None,
    )
    assert "also per-epoch metrics" in out["error"]


def test_tracking_target_from_config(tmp_path):
    lake = tmp_path / "lake"
    uri, artifacts = tracking_target(make_config(lake, tmp_path / "raw"))
    assert uri == f"sqlite:///{lake.resolve()}/_mlflow/mlflow.db"
    assert artifacts == f"{lake.resolve().as_uri()}/_mlflow/artifacts"
    server = make_config(lake, tmp_path / "raw", train={"tracking_uri": "http://mlflow:5000"})
    assert tracking_target(server) == ("http://mlflow:5000", None)
    # an object-store lake has no place for SQLite: a server is required
    with pytest.raises(ValueError, match="train.tracking_uri"):
        tracking_target(make_config("s3://bucket/lake", tmp_path / "raw"))
