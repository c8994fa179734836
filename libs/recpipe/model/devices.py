"""Where a Horovod rank computes, and in which precision (called from ``recpipe.model.train.train_fn``).

* :func:`pin_gpu`: one GPU per rank. The rank keeps only its GPU visible to TensorFlow (with memory
  growth, so it does not reserve the whole card up front): the GPU Spark assigned to its task when
  Spark's GPU-aware scheduling is on (``train.gpus_per_worker``; Horovod hands the task's resources to
  the rank), else the GPU numbered ``hvd.local_rank() % GPUs`` on that machine. Without GPUs it is a
  no-op that logs one line: CPU training is unchanged.
* :func:`set_precision` / :func:`wrap_optimizer`: ``train.precision``. ``mixed_float16`` is the Keras
  mixed-precision policy (float16 compute, float32 variables; the models keep their output in
  float32) with dynamic loss scaling (``LossScaleOptimizer``).

The functions take the ``tf.config`` / Keras modules as arguments, so the selection logic is
unit-tested with fakes on machines without a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "float32_copy",
    "is_mixed",
    "optimizer_state_variables",
    "pick_gpu",
    "pin_gpu",
    "set_precision",
    "spark_assigned_gpus",
    "wrap_optimizer",
]

PRECISIONS = ("float32", "mixed_float16")


def pick_gpu(local_rank: int, n_gpus: int, assigned: Sequence[str] = ()) -> int | None:
    """Index (into the GPUs TensorFlow lists) of this rank's GPU; None without GPUs.

    ``assigned``: the GPU addresses Spark gave the rank's task (``nvidia-smi`` indices from the
    discovery script); the first one is used when it is one of the listed GPUs. Otherwise the ranks
    of one machine take the GPUs in turn by local rank (more ranks than GPUs share them).
    """
    if n_gpus <= 0:
        return None
    for address in assigned[:1]:
        try:
            index = int(address)
        except ValueError:
            break
        if 0 <= index < n_gpus:
            return index
    return local_rank % n_gpus


def spark_assigned_gpus() -> list[str]:
    """The GPU addresses Spark assigned to this rank's task (``horovod.spark.run`` passes the task's
    resources to the rank); [] without GPU-aware scheduling or outside ``horovod.spark``."""
    try:
        from horovod.spark.task import get_available_devices
    except ImportError:
        return []
    try:
        return [str(a) for a in get_available_devices()]
    except Exception:  # not running under horovod.spark: no task resources
        return []


def pin_gpu(local_rank: int, tf_config: Any, assigned: Sequence[str] = (), rank: int | None = None) -> Any:
    """Make one GPU visible to this rank (memory growth on); the chosen device, or None on CPU.

    ``tf_config`` is ``tf.config``. Must run before TensorFlow initializes its devices (before the
    first op): TensorFlow refuses to change visible devices afterwards (RuntimeError, not caught).
    """
    who = f"rank {rank if rank is not None else local_rank} (local rank {local_rank})"
    gpus = list(tf_config.list_physical_devices("GPU"))
    index = pick_gpu(local_rank, len(gpus), assigned)
    if index is None:
        log.info("%s: no GPU visible to TensorFlow, training on CPU", who)
        return None
    gpu = gpus[index]
    tf_config.experimental.set_memory_growth(gpu, True)
    tf_config.set_visible_devices([gpu], "GPU")
    log.info(
        "%s: pinned to GPU %d of %d (%s)%s",
        who,
        index,
        len(gpus),
        getattr(gpu, "name", gpu),
        f", Spark assigned {list(assigned)}" if assigned else "",
    )
    return gpu


def is_mixed(precision: str) -> bool:
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision == "mixed_float16"


def set_precision(precision: str, keras: Any) -> None:
    """Set the Keras global dtype policy; call before the model is built (process-wide)."""
    is_mixed(precision)
    keras.mixed_precision.set_global_policy(precision)


def wrap_optimizer(opt: Any, precision: str, keras: Any) -> Any:
    """``opt`` with dynamic loss scaling under ``mixed_float16`` (small float16 gradients would
    underflow to zero otherwise), else ``opt`` itself."""
    return keras.mixed_precision.LossScaleOptimizer(opt) if is_mixed(precision) else opt


def float32_copy(model: Any, build: Any, keras: Any) -> Any:
    """A float32 model with ``model``'s weights (mixed-precision variables are float32 already), for
    export: the saved model then computes in float32 wherever it is loaded, whatever
    ``train.precision`` was. ``build()`` builds the same architecture; resets the global policy."""
    keras.mixed_precision.set_global_policy("float32")
    copy = build()
    copy.set_weights(model.get_weights())
    return copy


def optimizer_state_variables(opt: Any) -> list[Any]:
    """The optimizer's variables plus, for a loss-scale optimizer, its loss scale and growth counter
    (``opt.variables`` leaves them out): what ranks must share after a restore."""
    out = list(opt.variables)
    state = getattr(opt, "_loss_scale", None)  # tf_keras LossScaleOptimizer's dynamic state
    for name in ("current_loss_scale", "counter"):
        var = getattr(state, name, None)
        if var is not None:
            out.append(var)
    return out
