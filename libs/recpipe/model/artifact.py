"""Model artifacts: the feature spec file and the exported model's folder, on any local path or URI
(all IO through :mod:`recpipe.lake.fs`).

- The examples' feature spec: ``<examples table path>/_feature_spec.json`` (written by the examples
  stage, read by training; Delta ignores files starting with ``_``).
- An export (written by rank 0 of training, read by the scorers and the registry)::

      <export_dir>/model.keras        the Keras model (float32)
      <export_dir>/feature_spec.json  the FeatureSpec the model was trained with
      <export_dir>/model_meta.json    run id, data version, metrics, params (+ ``mlflow`` when logged)

Light to import (no TensorFlow until :func:`load_export` runs): the Spark driver, the training
ranks and the scoring workers all use it.
"""

from __future__ import annotations

import json
from typing import Any

from recpipe.constants import FEATURE_SPEC_FILE
from recpipe.features.spec import FeatureSpec
from recpipe.lake import fs

__all__ = [
    "EXPORT_FILES",
    "EXPORT_META",
    "EXPORT_MODEL",
    "EXPORT_SPEC",
    "SPEC_FILE",
    "export_file",
    "load_export",
    "read_export_meta",
    "read_export_spec",
    "read_spec",
    "spec_file",
    "write_export",
    "write_export_meta",
    "write_spec",
]

SPEC_FILE = FEATURE_SPEC_FILE
EXPORT_MODEL = "model.keras"
EXPORT_SPEC = "feature_spec.json"
EXPORT_META = "model_meta.json"
EXPORT_FILES = (EXPORT_SPEC, EXPORT_MODEL, EXPORT_META)


# -- the examples' feature spec ----------------------------------------------------------------------
def spec_file(table_path: str) -> str:
    """``<table_path>/_feature_spec.json``: the spec file of the examples table at ``table_path``."""
    return f"{table_path.rstrip('/')}/{SPEC_FILE}"


def write_spec(table_path: str, spec: FeatureSpec) -> str:
    """Write ``spec`` beside the examples table at ``table_path``; the file's path."""
    path = spec_file(table_path)
    fs.write_bytes(path, spec.to_json().encode())
    return path


def read_spec(table_path: str) -> FeatureSpec:
    """The spec written beside the examples table at ``table_path``."""
    try:
        return FeatureSpec.from_json(fs.read_bytes(spec_file(table_path)).decode())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no feature spec at {table_path}/{SPEC_FILE}: run the examples stage first"
        ) from None


# -- the export folder -------------------------------------------------------------------------------
def export_file(export_dir: str, name: str) -> str:
    """The path of the export's file ``name`` (one of :data:`EXPORT_FILES`)."""
    return fs.join(export_dir, name)


def write_export(export_dir: str, model: Any, spec: FeatureSpec, meta: dict[str, Any]) -> None:
    """Write an export: the Keras ``model`` (``model.save``), its ``spec`` and ``meta``."""
    fs.make_dirs(export_dir)
    model.save(export_file(export_dir, EXPORT_MODEL))
    fs.write_bytes(export_file(export_dir, EXPORT_SPEC), spec.to_json().encode())
    write_export_meta(export_dir, meta)


def read_export_spec(export_dir: str) -> FeatureSpec:
    """The FeatureSpec of the export at ``export_dir``."""
    return FeatureSpec.from_json(fs.read_bytes(export_file(export_dir, EXPORT_SPEC)).decode())


def read_export_meta(export_dir: str) -> dict[str, Any]:
    """The export's ``model_meta.json``."""
    meta: dict[str, Any] = json.loads(fs.read_bytes(export_file(export_dir, EXPORT_META)).decode())
    return meta


def write_export_meta(export_dir: str, meta: dict[str, Any]) -> None:
    """Write (replace) the export's ``model_meta.json``."""
    fs.write_bytes(export_file(export_dir, EXPORT_META), json.dumps(meta, indent=2, default=str).encode())


def load_export(export_dir: str) -> tuple[Any, FeatureSpec]:
    """``(keras model, FeatureSpec)`` of the export at ``export_dir`` (imports TensorFlow)."""
    from recpipe.model.models import load_model

    spec = read_export_spec(export_dir)
    return load_model(export_file(export_dir, EXPORT_MODEL)), spec
