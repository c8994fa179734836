"""``ops.model_registry``: every trained model, its data version, params, metrics and status.

A new model becomes ``current`` only when its validation AUC is at least the current model's minus
``train.auc_tolerance``; otherwise it is registered ``rejected`` with the reason. On promotion the
previous current model becomes ``archived`` in the SAME commit (the table is rewritten with one
overwrite), so readers never see zero or two current models.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from recpipe.config import Config
from recpipe.constants import MODEL_REGISTRY, MODEL_REGISTRY_SCHEMA

if TYPE_CHECKING:
    from recpipe.lake import Lake

__all__ = ["decide_status", "load_current_model", "read_registry", "register_model"]

CURRENT, REJECTED, ARCHIVED = "current", "rejected", "archived"


def decide_status(new_auc: float | None, current_auc: float | None, tolerance: float) -> tuple[str, str]:
    """``(status, reason)`` for a new model given the current one's validation AUC."""
    if new_auc is None:
        return REJECTED, "no validation AUC (validation split lacks both classes)"
    if current_auc is None:
        return CURRENT, "first model"
    if new_auc >= current_auc - tolerance:
        return CURRENT, f"val_auc {new_auc:.4f} >= current {current_auc:.4f} - tolerance {tolerance}"
    return REJECTED, f"val_auc {new_auc:.4f} < current {current_auc:.4f} - tolerance {tolerance}"


def read_registry(lake: Lake) -> list[dict[str, Any]]:
    """All registry rows (empty when the table does not exist yet)."""
    if not lake.exists(MODEL_REGISTRY):
        return []
    return [r.asDict() for r in lake.read(MODEL_REGISTRY).collect()]


def _next_version(rows: list[dict[str, Any]]) -> str:
    nums = [int(r["model_version"][1:]) for r in rows if str(r["model_version"])[1:].isdigit()]
    return f"m{(max(nums) + 1 if nums else 1):05d}"


def register_model(
    lake: Lake,
    *,
    run_id: str,
    data_version: int,
    params: dict[str, Any],
    metrics: dict[str, Any],
    path: str,
    tolerance: float,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Add the model of ``run_id`` (idempotent per run id) and apply the promotion rule."""
    rows = read_registry(lake)
    for r in rows:
        if r["run_id"] == run_id:
            return r
    current = [r for r in rows if r["status"] == CURRENT]
    cur = max(current, key=lambda r: r["created_at"]) if current else None
    cur_auc = json.loads(cur["metrics"]).get("val_auc") if cur else None
    status, reason = decide_status(metrics.get("val_auc"), cur_auc, tolerance)
    version = _next_version(rows)
    new = {
        "model_version": version,
        "run_id": run_id,
        "data_version": int(data_version),
        "params": json.dumps(params, sort_keys=True, default=str),
        "metrics": json.dumps(metrics, sort_keys=True, default=str),
        "path": path,
        "created_at": now or dt.datetime.now(dt.UTC),
        "status": status,
        "reason": reason,
    }
    if status == CURRENT:
        for r in current:
            r["status"], r["reason"] = ARCHIVED, f"superseded by {version}"
    names = MODEL_REGISTRY_SCHEMA.fieldNames()
    spark = lake.spark
    if not rows:
        lake.append(
            MODEL_REGISTRY, spark.createDataFrame([tuple(new[c] for c in names)], MODEL_REGISTRY_SCHEMA)
        )
    else:
        # One overwrite commit: the new row and the archived previous current appear together.
        all_rows = [tuple(r[c] for c in names) for r in rows + [new]]
        lake.overwrite(MODEL_REGISTRY, spark.createDataFrame(all_rows, MODEL_REGISTRY_SCHEMA))
    return new


def load_current_model(cfg: Config, lake: Lake) -> tuple[Any, Any, dict[str, Any]]:
    """``(keras model, FeatureSpec, registry row)`` of the current model (for the scorer)."""
    from recpipe.model.artifact import load_export

    current = [r for r in read_registry(lake) if r["status"] == CURRENT]
    if not current:
        raise RuntimeError(
            f"{MODEL_REGISTRY} has no current model ({lake.path(MODEL_REGISTRY)}): run train first"
        )
    row = max(current, key=lambda r: r["created_at"])
    model, spec = load_export(row["path"])
    return model, spec, row
