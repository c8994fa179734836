"""MLflow experiment tracking of training runs, from the driver after training.

:func:`log_training_run` records one MLflow run per ``run_train``: the training parameters, the
per-epoch history (step = epoch), the final metrics, tags (registry version and status, run date)
and the exported model directory as the ``model`` artifact. ``train.tracking_uri`` names the
tracking server; ``""`` is the embedded store of :func:`tracking_target` under the lake root.

MLflow is a record, not a gate: ``ops.model_registry`` decides promotion. A tracking failure (a
server that is down, a store that cannot be opened) never fails training: it is logged as one
warning and returned as ``{"error": ...}`` for the train summary.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from recpipe.config import Config
from recpipe.lake.fs import is_uri, local_path

log = logging.getLogger(__name__)

__all__ = ["MLFLOW_DIR", "PER_EPOCH_METRICS", "log_training_run", "tracking_target"]

# Folder under lake.root of the embedded store: mlflow.db (SQLite) and artifacts/.
MLFLOW_DIR = "_mlflow"
# Keys of the per-epoch history records (train_fn) logged with step = epoch.
PER_EPOCH_METRICS = ("train_loss", "val_auc", "val_logloss", "samples_per_s", "epoch_s")
ARTIFACT_PATH = "model"

# Set (unless already set) before MLflow is imported; each can be overridden in the environment.
_MLFLOW_ENV = {
    # GitPython (MLflow's source-version tags) warns at import when no git executable is found.
    "GIT_PYTHON_REFRESH": "quiet",
    # MLflow 3 sends usage telemetry from a background thread; a batch job stays offline.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # The "View run ... at:" lines MLflow writes to stdout, where the job's JSON summary goes.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # A server that is down costs seconds, not MLflow's default 7 retries with backoff 2 (~4 min).
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# INFO lines of the store ("Creating initial MLflow database tables...", alembic's migrations).
_QUIET_LOGGERS = ("mlflow", "alembic")
# urllib3's "Retrying ..." warning per retry of a request to a server that is down, silenced while
# logging (restored after): log_training_run reports the failure once.
_RETRY_LOGGER = "urllib3.connectionpool"


def tracking_target(cfg: Config) -> tuple[str, str | None]:
    """``(tracking URI, artifact location for a new experiment)`` of ``cfg``.

    ``train.tracking_uri`` when set (artifacts where the server puts them: None); else SQLite at
    ``<lake.root>/_mlflow/mlflow.db`` with artifacts in ``<lake.root>/_mlflow/artifacts``. MLflow 3
    refuses its file store (``file:``) unless told otherwise and recommends SQLite, so the embedded
    default needs a local lake root; an object-store root needs a tracking server.
    """
    if cfg.train.tracking_uri:
        return cfg.train.tracking_uri, None
    root = local_path(cfg.lake.root)
    if is_uri(root):
        raise ValueError(
            f"train.tracking_uri is empty and lake.root {cfg.lake.root} is not a local folder "
            "(the embedded SQLite store needs one): set train.tracking_uri to an MLflow server"
        )
    base = Path(root).resolve() / MLFLOW_DIR
    return f"sqlite:///{base / 'mlflow.db'}", (base / "artifacts").as_uri()


def log_training_run(
    cfg: Config,
    *,
    run_name: str,
    params: dict[str, Any],
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    tags: dict[str, Any],
    export_dir: str | None,
) -> dict[str, Any]:
    """Log one training run; ``{"run_id", "tracking_uri", "experiment"}``, or on any failure
    ``{"error", "tracking_uri", "experiment"}`` (never raises).

    ``history``: per-epoch records (``epoch`` and :data:`PER_EPOCH_METRICS`), logged with
    step = epoch; ``metrics``: final values (None and NaN left out); ``export_dir``: logged as the
    ``model`` artifact, after its ``model_meta.json`` gets the ``mlflow`` block.
    """
    from recpipe.stages.contract import _one_line

    experiment = cfg.train.experiment
    uri: str | None = None
    retry_log = logging.getLogger(_RETRY_LOGGER)
    retry_level = retry_log.level
    retry_log.setLevel(logging.ERROR)
    try:
        uri, artifact_location = tracking_target(cfg)
        run_id = _log_run(
            uri,
            artifact_location,
            experiment,
            run_name=run_name,
            params=params,
            history=history,
            metrics=metrics,
            tags=tags,
            export_dir=export_dir,
        )
    except Exception as exc:  # tracking is a record: training has succeeded and is registered
        reason = _one_line(exc, limit=400)
        log.warning("MLflow tracking failed (training is unaffected): %s", reason)
        return {"error": reason, "tracking_uri": uri, "experiment": experiment}
    finally:
        retry_log.setLevel(retry_level)
    log.info("logged MLflow run %s in experiment %r at %s", run_id, experiment, uri)
    return {"run_id": run_id, "tracking_uri": uri, "experiment": experiment}


def _import_mlflow() -> Any:
    for key, value in _MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    import mlflow  # noqa: F401  (configures its loggers at import; quieted below)

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # created meanwhile by another process
        if exp is None:
            raise
        return str(exp.experiment_id)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _log_run(
    uri: str,
    artifact_location: str | None,
    experiment: str,
    *,
    run_name: str,
    params: dict[str, Any],
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    tags: dict[str, Any],
    export_dir: str | None,
) -> str:
    """Create the run, log everything, end it FINISHED (FAILED when a step raises); its id."""
    clash = sorted(set(metrics) & set(PER_EPOCH_METRICS))
    if clash:  # a final value would land in the epoch series at step 0
        raise ValueError(f"final metrics {clash} are also per-epoch metrics")
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    MlflowClient = _import_mlflow()
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    exp_id = _experiment_id(client, experiment, artifact_location)
    str_tags = {k: str(v) for k, v in tags.items() if v is not None}
    run_id = str(client.create_run(exp_id, run_name=run_name, tags=str_tags).info.run_id)
    try:
        now = int(time.time() * 1000)
        points = [
            Metric(k, float(rec[k]), now, int(rec["epoch"]))
            for rec in history
            for k in PER_EPOCH_METRICS
            if _finite(rec.get(k))
        ]
        points += [Metric(k, float(v), now, 0) for k, v in metrics.items() if _finite(v)]
        client.log_batch(
            run_id,
            metrics=points,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in str_tags.items()],
        )
        if export_dir:
            _log_export(
                client, run_id, export_dir, {"run_id": run_id, "tracking_uri": uri, "experiment": experiment}
            )
    except BaseException:
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:  # the original error is the one to report
            pass
        raise
    client.set_terminated(run_id)
    return run_id


def _log_export(client: Any, run_id: str, export_dir: str, block: dict[str, Any]) -> None:
    """Add ``block`` as ``mlflow`` to the export's model_meta.json, then log the export folder
    (copied to a local folder first when it is an object-store URI)."""
    import pyarrow.fs as pafs

    from recpipe.model.artifact import read_export_meta, write_export_meta

    meta = read_export_meta(export_dir)
    write_export_meta(export_dir, {**meta, "mlflow": block})
    if not is_uri(export_dir):
        client.log_artifacts(run_id, export_dir, artifact_path=ARTIFACT_PATH)
        return
    with tempfile.TemporaryDirectory(prefix="recpipe-mlflow-") as tmp:
        pafs.copy_files(export_dir, tmp)
        client.log_artifacts(run_id, tmp, artifact_path=ARTIFACT_PATH)
