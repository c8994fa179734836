"""Horovod data-parallel training of the CTR model on the Spark executors (Gloo).

``run_train`` (driver) resolves the examples snapshot and its feature spec, launches
``horovod.spark.run(train_fn, num_proc=train.num_proc)``, computes the popularity/oracle baselines,
and registers the exported model in ``ops.model_registry``. ``train_fn`` runs once per rank: it pins
the rank to its GPU when there is one (``recpipe.model.devices``), reads its row shard straight from
the snapshot's Parquet files, trains with ``DistributedGradientTape`` (in ``train.precision``),
evaluates with metrics summed across ranks, checkpoints (rank 0) and exports (rank 0, in float32).

Checkpoints live in ``<models>/runs/<run_id>/ckpt`` (``Config.artifacts_dir("models")``); running
again with the same run id resumes from the last one (model, optimizer, step, epoch, position in
the epoch, early-stopping state, RNG).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from recpipe.config import Config
from recpipe.constants import GOLD_TRAINING_EXAMPLES
from recpipe.model.position import examination_curve, likely_bots, spec_for_mode

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import SparkSession

    from recpipe.lake import Lake

log = logging.getLogger(__name__)

__all__ = ["auc_from_histograms", "make_train_step", "run_train", "train_fn"]

AUC_BUCKETS = 1 << 14


# -- metrics (pure; shared by the ranks) ---------------------------------------------------------
def metric_sums(y: npt.NDArray[Any], p: npt.NDArray[Any], buckets: int = AUC_BUCKETS) -> npt.NDArray[Any]:
    """Additive metric state of one shard: positive/negative score histograms, logloss sum, n, positives.

    Summing these vectors across ranks and calling :func:`metrics_from_sums` gives the GLOBAL AUC
    (to the histogram's resolution) and logloss, not an average of per-rank values.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    idx = np.minimum((p * buckets).astype(np.int64), buckets - 1)
    pos = np.bincount(idx[y > 0.5], minlength=buckets)
    neg = np.bincount(idx[y <= 0.5], minlength=buckets)
    ll = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())
    return np.concatenate([pos, neg, [ll, len(y), float(y.sum())]]).astype(np.float64)


def auc_from_histograms(pos: npt.NDArray[Any], neg: npt.NDArray[Any]) -> float | None:
    """ROC AUC from score histograms (ties within a bucket count one half); None without both classes."""
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    # P(score_pos > score_neg) + 0.5 P(same bucket): each positive wins against the negatives
    # in lower buckets and half of those in its own bucket.
    neg_below = np.cumsum(neg) - neg
    wins = float((pos * (neg_below + 0.5 * neg)).sum())
    return wins / (n_pos * n_neg)


def metrics_from_sums(sums: npt.NDArray[Any], buckets: int = AUC_BUCKETS) -> dict[str, float | None]:
    pos, neg = sums[:buckets], sums[buckets : 2 * buckets]
    ll, n, positives = sums[2 * buckets :]
    return {
        "auc": auc_from_histograms(pos, neg),
        "logloss": float(ll / n) if n else None,
        "rows": int(n),
        "ctr": float(positives / n) if n else None,
    }


# -- the per-rank training function (pickled to the executors: imports inside) ------------------
def make_train_step(
    model: Any,
    opt: Any,
    loss_fn: Any,
    precision: str = "float32",
    wrap_tape: Callable[[Any], Any] | None = None,
) -> Any:
    """One training step as a ``tf.function``: forward, loss (+ the model's regularization losses),
    gradients through ``wrap_tape(tape)`` (Horovod's ``DistributedGradientTape`` in the ranks), update.

    Under ``mixed_float16`` ``opt`` is a ``LossScaleOptimizer`` (``devices.wrap_optimizer``): the loss
    is scaled before the gradients and the gradients unscaled after them, as Keras' ``fit`` does. The
    gradients are allreduced scaled; a step whose averaged gradients overflow is skipped (and the
    scale lowered) on every rank alike. Returns the unscaled loss.
    """
    import tensorflow as tf

    from recpipe.model.devices import is_mixed

    mixed = is_mixed(precision)
    wrap = wrap_tape or (lambda tape: tape)

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator, unused-ignore]  # TF has no stubs
    def train_step(x: Any, y: Any, w: Any = None) -> Any:
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            data_loss = loss_fn(y, p) if w is None else loss_fn(y, p, sample_weight=w)
            loss = data_loss + tf.add_n([tf.constant(0.0)] + model.losses)
            target = opt.get_scaled_loss(loss) if mixed else loss
        grads = wrap(tape).gradient(target, model.trainable_variables)
        if mixed:
            grads = opt.get_unscaled_gradients(grads)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return train_step


@dataclass
class _Rank:
    """One Horovod rank's context: the modules imported in the rank process, its rank and logger."""

    params: dict[str, Any]
    hvd: Any
    tf: Any
    keras: Any
    rank: int
    size: int
    rlog: logging.Logger
    precision: str
    seed: int


@dataclass
class _TrainState:
    """The checkpointed training state besides the model and optimizer (all broadcast from rank 0)."""

    step: Any
    epoch: Any
    step_in_epoch: Any
    epoch_seed: Any
    best_auc: Any
    bad_epochs: Any
    done: Any
    rng: Any
    ckpt: Any
    mgr: Any
    best_prefix: str


def _setup_rank(params: dict[str, Any]) -> _Rank:
    """hvd.init, thread counts, rank 0's logging, GPU pinning, precision and the seeds."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    # TensorFlow numbers GPUs as nvidia-smi does (the Spark discovery script's addresses).
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    import horovod.tensorflow as hvd
    import tensorflow as tf
    import tf_keras as keras

    from recpipe.model import devices

    hvd.init()  # Horovod: initialize (Gloo controller, rank/size from the Spark task services)
    rank, size = hvd.rank(), hvd.size()
    intra, inter = rank_threads(int(params.get("threads_per_rank", 0)), os.cpu_count(), hvd.local_size())
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)

    rlog = logging.getLogger("recpipe.train")
    if rank == 0:  # Horovod: only rank 0 logs progress, at the driver's level (-q/-v)
        logging.basicConfig(
            level=params.get("log_level", logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        # TensorFlow's absl logger: "Sharding callback duration" at INFO for every checkpoint.
        logging.getLogger("absl").setLevel(logging.WARNING)
    else:
        rlog.setLevel(logging.WARNING)
    # Horovod: one GPU per rank (its Spark-assigned GPU, else local rank), before TensorFlow
    # initializes its devices; on CPU a no-op (rank 0 logs one line).
    devices.pin_gpu(hvd.local_rank(), tf.config, devices.spark_assigned_gpus(), rank=rank)
    precision = params.get("precision", "float32")
    devices.set_precision(precision, keras)  # before the model is built

    seed = int(params["seed"])
    tf.random.set_seed(seed)
    np.random.seed(seed)
    return _Rank(params, hvd, tf, keras, rank, size, rlog, precision, seed)


def _load_shards(r: _Rank, spec: Any, bs: int) -> tuple[Any, Any, Any, int]:
    """This rank's train (+ ipw loss weights), validation and test shards and the steps per epoch."""
    from recpipe import constants as C
    from recpipe.model import data as D
    from recpipe.model import position as P

    params, rank, size = r.params, r.rank, r.size
    path, version = params["examples_path"], params["examples_version"]
    t_load = time.perf_counter()
    # Horovod: each rank reads a disjoint row range; training shards padded to equal length.
    theta = params.get("ipw_theta")  # train.position_bias=ipw: the examination curve
    extra = (C.POSITION,) if theta else ()
    train = D.Shard.load(path, version, "train", spec, rank, size, pad=True, extra=extra)
    if theta:
        # A click in slot k weighs 1/theta_k (clipped) in the loss; val/test are unweighted, so
        # their AUC/logloss stay comparable across position_bias modes.
        train.w = P.ipw_weights(train.y, train.extra[C.POSITION], theta, float(params["ipw_clip"]))
    val = D.Shard.load(path, version, "validation", spec, rank, size, pad=False)
    test = D.Shard.load(path, version, "test", spec, rank, size, pad=False)
    steps = D.steps_per_epoch(train.rows, bs)
    r.rlog.info(
        "rank 0/%d: %d train rows/rank (%d real), %d steps/epoch, loaded in %.1fs",
        size,
        train.rows,
        train.real_rows,
        steps,
        time.perf_counter() - t_load,
    )
    return train, val, test, steps


def _make_optimizer(r: _Rank, model: Any, steps: int) -> Any:
    """Adam on the warm-up LR schedule (wrapped for the precision), its slots built."""
    import tensorflow as tf
    import tf_keras as keras

    from recpipe.model import devices

    size = r.size
    base_lr = float(r.params["learning_rate"])
    warmup_steps = int(r.params["warmup_epochs"]) * steps

    class WarmupLR(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc, unused-ignore]
        # Horovod: LR scaled by the number of workers, reached linearly over the warm-up steps.
        def __call__(self, step: Any) -> Any:
            target = base_lr * size
            if warmup_steps <= 0:
                return tf.constant(target, tf.float32)
            frac = tf.minimum(1.0, tf.cast(step + 1, tf.float32) / float(warmup_steps))
            return base_lr + (target - base_lr) * frac

        def get_config(self) -> dict[str, Any]:
            return {}

    # mixed_float16: dynamic loss scaling around Adam (its state is in the checkpoint).
    opt = devices.wrap_optimizer(keras.optimizers.Adam(learning_rate=WarmupLR()), r.precision, keras)
    opt.build(model.trainable_variables)  # slots exist before restore/broadcast
    return opt


def _training_state(r: _Rank, model: Any, opt: Any) -> _TrainState:
    """The state variables and checkpoint (manager); rank 0 restores the latest checkpoint, then
    every rank receives rank 0's weights, optimizer and state."""
    from recpipe.model import devices

    tf, hvd, params = r.tf, r.hvd, r.params
    step_v = tf.Variable(0, dtype=tf.int64, name="step")
    epoch_v = tf.Variable(0, dtype=tf.int64, name="epoch")
    step_in_epoch_v = tf.Variable(0, dtype=tf.int64, name="step_in_epoch")
    epoch_seed_v = tf.Variable(0, dtype=tf.int64, name="epoch_seed")
    best_auc_v = tf.Variable(-1.0, dtype=tf.float64, name="best_auc")
    bad_epochs_v = tf.Variable(0, dtype=tf.int64, name="bad_epochs")
    done_v = tf.Variable(0, dtype=tf.int64, name="done")
    rng = tf.random.Generator.from_seed(r.seed)
    ckpt = tf.train.Checkpoint(
        model=model,
        optimizer=opt,
        step=step_v,
        epoch=epoch_v,
        step_in_epoch=step_in_epoch_v,
        epoch_seed=epoch_seed_v,
        best_auc=best_auc_v,
        bad_epochs=bad_epochs_v,
        done=done_v,
        rng=rng,
    )
    mgr = tf.train.CheckpointManager(ckpt, params["ckpt_dir"], max_to_keep=2)
    best_prefix = os.path.join(params["run_dir"], "best", "best")
    if r.rank == 0 and mgr.latest_checkpoint:  # Horovod: rank 0 restores, then broadcasts
        ckpt.restore(mgr.latest_checkpoint).assert_existing_objects_matched()
        r.rlog.info(
            "resuming from %s (step %d, epoch %d, step in epoch %d)",
            mgr.latest_checkpoint,
            int(step_v),
            int(epoch_v),
            int(step_in_epoch_v),
        )
    state_vars = [step_v, epoch_v, step_in_epoch_v, epoch_seed_v, best_auc_v, bad_epochs_v, done_v, rng.state]
    # Horovod: every rank starts from rank 0's (initial or restored) weights, optimizer and state.
    hvd.broadcast_variables(model.variables, root_rank=0)
    hvd.broadcast_variables(devices.optimizer_state_variables(opt), root_rank=0)  # + loss scale
    hvd.broadcast_variables(state_vars, root_rank=0)
    return _TrainState(
        step_v,
        epoch_v,
        step_in_epoch_v,
        epoch_seed_v,
        best_auc_v,
        bad_epochs_v,
        done_v,
        rng,
        ckpt,
        mgr,
        best_prefix,
    )


def _make_eval(r: _Rank, model: Any, bs: int) -> tuple[Any, Any]:
    """``predict(shard)`` and ``evaluate(shard, name, p=None)`` (metrics allreduced across ranks)."""
    from recpipe.model import data as D

    tf, hvd = r.tf, r.hvd

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator, unused-ignore]
    def predict_step(x: Any) -> Any:
        return model(x, training=False)

    def predict(shard: D.Shard) -> npt.NDArray[Any]:
        preds = [predict_step(b).numpy() for b in D.eval_batches(shard.x, max(bs, 4096))]
        return np.concatenate(preds) if preds else np.zeros((0, 1), np.float32)

    def evaluate(shard: D.Shard, name: str, p: npt.NDArray[Any] | None = None) -> dict[str, Any]:
        p = predict(shard) if p is None else p
        local = metric_sums(shard.y, p)
        # Horovod: sum histogram/logloss state across ranks -> global AUC and logloss on every rank.
        total = hvd.allreduce(tf.constant(local), op=hvd.Sum, name=f"eval_{name}").numpy()
        return metrics_from_sums(total)

    return predict, evaluate


def _run_epoch(
    r: _Rank, st: _TrainState, train_step: Any, train: Any, bs: int, steps: int
) -> tuple[int, float, int, float]:
    """One epoch's steps (resuming inside it), rank 0 checkpointing and logging on its cadence;
    (samples this rank, loss sum, steps run, seconds)."""
    from recpipe.model import data as D

    tf, rank, size = r.tf, r.rank, r.size
    ckpt_every = max(1, int(r.params["checkpoint_every_steps"]))
    log_every = max(1, steps // 4)
    epoch = int(st.epoch)
    if int(st.step_in_epoch) == 0:
        st.epoch_seed.assign(st.rng.uniform_full_int([], tf.int64))
    skip = int(st.step_in_epoch)
    ds = D.train_dataset(train, bs, int(st.epoch_seed), epoch, rank, skip_batches=skip)
    t0, n0 = time.perf_counter(), 0
    loss_sum, loss_n = 0.0, 0
    for batch in ds:  # (x, y) or, with loss weights (position_bias=ipw), (x, y, w)
        loss = train_step(*batch)
        n0 += int(batch[1].shape[0])
        loss_sum, loss_n = loss_sum + float(loss), loss_n + 1
        st.step.assign_add(1)
        st.step_in_epoch.assign_add(1)
        s = int(st.step)
        if rank == 0 and s % ckpt_every == 0:  # Horovod: only rank 0 writes checkpoints
            st.mgr.save(checkpoint_number=s)
        if rank == 0 and int(st.step_in_epoch) % log_every == 0:
            el = time.perf_counter() - t0
            r.rlog.info(
                "epoch %d step %d/%d (global %d) loss %.4f  %.0f samples/s (all ranks)",
                epoch + 1,
                int(st.step_in_epoch),
                steps,
                s,
                loss_sum / max(1, loss_n),
                n0 * size / max(el, 1e-9),
            )
    return n0, loss_sum, loss_n, time.perf_counter() - t0


def _end_epoch(
    r: _Rank,
    st: _TrainState,
    model: Any,
    vm: dict[str, Any],
    epoch: int,
    epoch_run: tuple[int, float, int, float],
) -> dict[str, Any]:
    """Best-epoch weights, early stopping and the epoch's history record; rank 0 checkpoints and logs."""
    n0, loss_sum, loss_n, epoch_s = epoch_run
    auc = vm["auc"] if vm["auc"] is not None else 0.0
    improved = auc > float(st.best_auc) + 1e-6
    if improved:
        st.best_auc.assign(auc)
        st.bad_epochs.assign(0)
        if r.rank == 0:
            ckpt_best = r.tf.train.Checkpoint(model=model)
            ckpt_best.write(st.best_prefix)
    else:
        st.bad_epochs.assign_add(1)
    st.epoch.assign(epoch + 1)
    st.step_in_epoch.assign(0)
    # The decision uses the allreduced AUC and broadcast state: identical on every rank.
    if int(st.bad_epochs) >= int(r.params["early_stopping_patience"]):
        st.done.assign(1)
    rec = {
        "epoch": epoch + 1,
        "steps": int(st.step),
        "train_loss": loss_sum / max(1, loss_n),
        "val_auc": vm["auc"],
        "val_logloss": vm["logloss"],
        "samples_per_s": n0 * r.size / max(epoch_s, 1e-9),
        "epoch_s": epoch_s,
    }
    if r.rank == 0:
        st.mgr.save(checkpoint_number=int(st.step))
        r.rlog.info(
            "epoch %d done: loss %.4f val_auc %.4f val_logloss %.4f best %.4f%s (%.0f samples/s)",
            epoch + 1,
            rec["train_loss"],
            auc,
            vm["logloss"] or float("nan"),
            float(st.best_auc),
            "  early stop" if int(st.done) else "",
            rec["samples_per_s"],
        )
    return rec


def _final_eval(
    r: _Rank, st: _TrainState, model: Any, eval_fns: tuple[Any, Any], val: Any, test: Any
) -> tuple[str, dict[str, Any], dict[str, Any], npt.NDArray[Any]]:
    """Trained weights' checksum, then the best epoch's weights on every rank and their val/test
    metrics; (checksum, val metrics, test metrics, every rank's test (label, score) rows)."""
    import hashlib

    tf, hvd = r.tf, r.hvd
    predict, evaluate = eval_fns
    # Checksum of the trained weights (before restoring the best epoch): identical on all ranks.
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    checksum = h.hexdigest()

    # Best epoch's weights: rank 0 reads them, every rank receives them for the test evaluation.
    if r.rank == 0 and tf.io.gfile.exists(st.best_prefix + ".index"):
        tf.train.Checkpoint(model=model).read(st.best_prefix).expect_partial()
    hvd.broadcast_variables(model.variables, root_rank=0)  # Horovod: best weights everywhere
    val_m = evaluate(val, "val_final")
    test_p = predict(test)
    test_m = evaluate(test, "test_final", test_p)
    # Horovod: equal-count deciles need the quantiles of all the test scores, which do not add up
    # across ranks like the AUC histograms: gather every rank's (label, score) rows (16 bytes a row).
    local_rows = np.column_stack([test.y.reshape(-1), test_p.reshape(-1)]).astype(np.float64)
    test_rows = hvd.allgather(tf.constant(local_rows), name="test_scores").numpy()
    return checksum, val_m, test_m, test_rows


def _export(
    r: _Rank,
    model: Any,
    spec: Any,
    val_m: dict[str, Any],
    test_m: dict[str, Any],
    test_rows: npt.NDArray[Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """Rank 0: the model (float32), its feature spec and meta in the export folder; the summary's
    export keys (without the timings)."""
    from recpipe.evaluation.calibration import calibration_summary
    from recpipe.model import devices
    from recpipe.model.artifact import write_export
    from recpipe.model.models import build_model

    keras, params = r.keras, r.params
    model_kwargs = params.get("model_kwargs", {})
    calibration = calibration_summary(test_rows[:, 0], test_rows[:, 1])
    export_dir = params["export_dir"]
    # The export is float32 whatever train.precision: scoring (CPU executors) is unchanged.
    exported = (
        devices.float32_copy(model, lambda: build_model(params["model"], spec, **model_kwargs), keras)
        if devices.is_mixed(r.precision)
        else model
    )
    meta = {
        "run_id": params["run_id"],
        "model": params["model"],
        "model_kwargs": params.get("model_kwargs", {}),
        "examples_table": params["examples_table"],
        "examples_path": params["examples_path"],
        "examples_version": params["examples_version"],
        "workers": r.size,
        "hashing": {
            f.name: {"buckets": f.buckets, "function": "keras.layers.Hashing (FarmHash64 fingerprint)"}
            for f in spec.hashed
        },
        "metrics": {
            "val_auc": val_m["auc"],
            "val_logloss": val_m["logloss"],
            "test_auc": test_m["auc"],
            "test_logloss": test_m["logloss"],
            "test_rows": test_m["rows"],
            "val_rows": val_m["rows"],
        },
        "calibration": calibration,
        "history": history,
        "params": {k: params[k] for k in TRAIN_PARAM_KEYS},
    }
    write_export(export_dir, exported, spec, meta)
    return {
        "export_dir": export_dir,
        "metrics": meta["metrics"],
        "calibration": calibration,
        "history": history,
    }


def rank_threads(configured: int, cpu_count: int | None, local_ranks: int) -> tuple[int, int]:
    """(intra-op, inter-op) TensorFlow threads of a rank: ``train.threads_per_rank`` when set,
    else the machine's cores shared by the ranks on it (no oversubscription); inter-op half of
    intra-op, at least 1."""
    intra = configured or max(1, (cpu_count or 1) // max(1, local_ranks))
    return intra, max(1, intra // 2)


def train_fn(params: dict[str, Any]) -> dict[str, Any]:
    """Train on this rank's shard; returns this rank's summary (rank 0 adds metrics + export)."""
    r = _setup_rank(params)
    hvd, keras, size = r.hvd, r.keras, r.size

    from recpipe.features.spec import FeatureSpec
    from recpipe.model.models import build_model

    spec = FeatureSpec.from_json(params["spec_json"])
    bs = int(params["batch_size"])
    train, val, test, steps = _load_shards(r, spec, bs)
    model = build_model(params["model"], spec, **params.get("model_kwargs", {}))
    opt = _make_optimizer(r, model, steps)
    st = _training_state(r, model, opt)
    resumed_from = int(st.step)

    sparse_as_dense = bool(params.get("sparse_as_dense", True))
    # Horovod: gradients averaged across ranks; the embeddings' sparse gradients densified and
    # allreduced (train.sparse_as_dense) or allgathered as IndexedSlices.
    train_step = make_train_step(
        model,
        opt,
        keras.losses.BinaryCrossentropy(),
        r.precision,
        wrap_tape=lambda tape: hvd.DistributedGradientTape(tape, sparse_as_dense=sparse_as_dense),
    )
    predict, evaluate = _make_eval(r, model, bs)

    epochs = int(params["epochs"])
    history: list[dict[str, Any]] = []
    t_train = time.perf_counter()
    samples_seen = 0
    while not int(st.done) and int(st.epoch) < epochs:
        epoch = int(st.epoch)
        epoch_run = _run_epoch(r, st, train_step, train, bs, steps)
        samples_seen += epoch_run[0] * size
        vm = evaluate(val, f"val_{epoch}")
        history.append(_end_epoch(r, st, model, vm, epoch, epoch_run))
    train_s = time.perf_counter() - t_train

    checksum, val_m, test_m, test_rows = _final_eval(r, st, model, (predict, evaluate), val, test)
    out: dict[str, Any] = {
        "rank": r.rank,
        "size": size,
        "weights_checksum": checksum,
        "steps": int(st.step),
        "resumed_from_step": resumed_from,
        "train_rows_per_rank": train.rows,
        "real_train_rows": train.real_rows,
        # This rank's own rate (samples_seen counts all ranks): a slow rank stands out in the report.
        "rank_samples_per_s": samples_seen / size / max(train_s, 1e-9),
        "tf_threads": [
            r.tf.config.threading.get_intra_op_parallelism_threads(),
            r.tf.config.threading.get_inter_op_parallelism_threads(),
        ],
    }
    if r.rank == 0:
        out.update(
            **_export(r, model, spec, val_m, test_m, test_rows, history),
            train_s=train_s,
            samples_per_s=samples_seen / max(train_s, 1e-9),
        )
    return out


TRAIN_PARAM_KEYS = [
    "model",
    "batch_size",
    "learning_rate",
    "warmup_epochs",
    "epochs",
    "early_stopping_patience",
    "checkpoint_every_steps",
    "seed",
    "precision",
    "sparse_as_dense",
    "position_bias",
    "ipw_clip",
    "exclude_inputs",
]


# -- driver ---------------------------------------------------------------------------------------
def model_kwargs_from_config(tc: Any) -> dict[str, Any]:
    """The factory arguments of ``train.model`` taken from the train config: every ``train`` key
    whose field names the model under ``models`` (:class:`recpipe.config.TrainConfig`, the one list
    of each model's shape keys; a unit test holds it to the factories' signatures). No TensorFlow
    import: the driver calls it."""
    import dataclasses

    from recpipe.config import TrainConfig

    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if tc.model in f.metadata.get("models", ()):
            value = getattr(tc, f.name)
            kwargs[f.name] = list(value) if isinstance(value, list) else value  # a copy, not the config's
    if not kwargs:
        raise ValueError(f"unknown model {tc.model!r}")
    return kwargs


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _baselines(
    path: str, version: int, label: str, ctr_prior: float, raw_dir: str | None, clicks_only: bool = False
) -> dict[str, Any]:
    """Popularity AUC and oracle AUC on the test split. Popularity
    (:func:`recpipe.evaluation.baselines.item_popularity`): the item's smoothed train CTR, or for a
    click-only source its train click count (the test negatives are uniform draws)."""
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    from recpipe.evaluation.baselines import item_popularity_of_rows, popularity_auc
    from recpipe.model.data import read_split

    fields = set(pq.read_schema(_first_file(path, version)).names)
    train = read_split(path, version, "train", ["item_id", label]).to_pandas()
    cols = ["item_id", label] + [c for c in ("request_id", "p_click_true") if c in fields]
    test = read_split(path, version, "test", cols).to_pandas()
    out: dict[str, Any] = {"popularity_auc": None, "oracle_auc": None, "oracle_source": None}
    y = test[label].astype(float).to_numpy()
    if len(np.unique(y)) < 2:
        return out
    pop = item_popularity_of_rows(
        train["item_id"], train[label], prior_strength=ctr_prior, clicks_only=clicks_only
    )
    out["popularity_auc"] = popularity_auc(y, test["item_id"], pop)
    if "p_click_true" in test.columns:
        out["oracle_auc"] = float(roc_auc_score(y, test["p_click_true"].to_numpy()))
        out["oracle_source"] = "p_click_true"
    elif raw_dir and "request_id" in test.columns:
        gt_path = Path(raw_dir) / "ground_truth.parquet"
        if gt_path.exists():
            gt = pq.read_table(gt_path, columns=["request_id", "item_id", "p_click"]).to_pandas()
            gt = gt.drop_duplicates(["request_id", "item_id"])
            m = test.merge(gt, on=["request_id", "item_id"], how="inner")
            if len(m) and m[label].nunique() == 2:
                out["oracle_auc"] = float(roc_auc_score(m[label].astype(float), m["p_click"]))
                out["oracle_source"] = f"{gt_path} ({len(m)}/{len(test)} test rows matched)"
    return out


def _position_bias(path: str, version: int, tc: Any) -> dict[str, Any]:
    """``train.position_bias`` and, for ``ipw``, the examination curve fitted on the train split's
    logged impressions (``theta`` goes to the ranks; ``beta`` and counts to the summary)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from recpipe.constants import LABEL, POSITION, PROPENSITY, SAMPLED, USER_ID
    from recpipe.model.data import read_split

    out: dict[str, Any] = {"mode": tc.position_bias}
    if tc.position_bias != "ipw":
        return out
    t = read_split(path, version, "train", [USER_ID, POSITION, PROPENSITY, LABEL, SAMPLED])
    logged = t.filter(pc.invert(pc.fill_null(t.column(SAMPLED).cast(pa.bool_()), False)))

    def floats(c: str) -> npt.NDArray[Any]:
        values: npt.NDArray[Any] = (
            logged.column(c).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        )
        return values

    labels = floats(LABEL)
    bots = likely_bots(logged.column(USER_ID).to_numpy(zero_copy_only=False), np.nan_to_num(labels))
    curve = examination_curve(floats(POSITION)[~bots], labels[~bots], floats(PROPENSITY)[~bots])
    curve["bot_rows_left_out"] = int(bots.sum())
    if curve["beta"] is None:
        log.warning(
            "train.position_bias=ipw: the train split has no clicked impression with a position "
            "(%d impressions with one); labels are left as logged",
            curve["impressions"],
        )
        curve["theta"] = None
    else:
        log.info(
            "position bias (ipw): theta_k = (1 + k)^-%.2f from %d impressions, %d clicks (%d rows of "
            "likely bots left out); click weights clipped at %g",
            curve["beta"],
            curve["impressions"],
            curve["clicks"],
            curve["bot_rows_left_out"],
            tc.ipw_clip,
        )
    return {**out, **curve, "clip": tc.ipw_clip}


def _first_file(path: str, version: int) -> str:
    from deltalake import DeltaTable

    from recpipe.lake.fs import local_path

    return local_path(DeltaTable(path, version=version).file_uris()[0])


def run_train(
    cfg: Config,
    spark: SparkSession,
    lake: Lake | None = None,
    run_id: str | None = None,
    *,
    examples_table: str = GOLD_TRAINING_EXAMPLES,
    examples_version: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    register: bool = True,
    start_timeout_s: int = 120,
    run_date: dt.date | None = None,
) -> dict[str, Any]:
    """Train with ``cfg.train.num_proc`` Horovod ranks on the Spark executors; export, register
    and log the run to MLflow (``recpipe.model.tracking``; ``run_date`` becomes a run tag).

    Running again with the same ``run_id`` resumes from its last checkpoint.
    """
    # Over 80 lines (issue #15 allows three such functions): the driver's side of one training
    # run (checks, the rank parameters, horovod.spark.run, gathering, registering, the report) is
    # one sequence that reads top to bottom; splitting it next is the params dict and the summary.
    import horovod.spark

    from recpipe.events.feedback import is_clicks_only, with_feedback
    from recpipe.lake import open_lake
    from recpipe.lake.fs import absolute
    from recpipe.model.artifact import read_spec
    from recpipe.model.registry import register_model

    t0 = time.perf_counter()
    tc = cfg.train
    lake = lake or open_lake(cfg, spark)
    if not lake.exists(examples_table):
        raise RuntimeError(
            f"{examples_table} does not exist at {lake.path(examples_table)}: run examples first"
        )
    # The table exists (checked above), so its version is not None.
    version = cast(int, examples_version if examples_version is not None else lake.version(examples_table))
    path = lake.path(examples_table)
    spec = spec_for_mode(read_spec(path), tc.position_bias).without(tc.exclude_inputs)
    position_bias = _position_bias(path, version, tc)
    run_id = run_id or new_run_id()
    run_dir = absolute(f"{cfg.artifacts_dir('models').rstrip('/')}/runs/{run_id}")
    slots = spark.sparkContext.defaultParallelism
    if slots < tc.num_proc:
        raise RuntimeError(
            f"train.num_proc={tc.num_proc} but Spark has only {slots} task slots; Horovod needs one "
            f"concurrent task per rank (raise executors/cores or lower train.num_proc)"
        )
    params = {
        "run_id": run_id,
        "run_dir": run_dir,
        "ckpt_dir": f"{run_dir}/ckpt",
        "export_dir": f"{run_dir}/export",
        "examples_table": examples_table,
        "examples_path": path,
        "examples_version": version,
        "spec_json": spec.to_json(),
        **{k: getattr(tc, k) for k in TRAIN_PARAM_KEYS},
        "model_kwargs": {**model_kwargs_from_config(tc), **(model_kwargs or {})},
        "ipw_theta": position_bias.get("theta"),
        # Rank 0 logs at the driver's level (not a training parameter: not in TRAIN_PARAM_KEYS).
        "log_level": logging.getLogger("recpipe").getEffectiveLevel(),
        "threads_per_rank": tc.threads_per_rank,
    }
    log.info(
        "training %s on %s v%s with %d Horovod ranks (run %s)",
        tc.model,
        examples_table,
        version,
        tc.num_proc,
        run_id,
    )
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    # Horovod: one Gloo rank per Spark task; rank output goes to stderr (stdout is the JSON summary).
    results = horovod.spark.run(
        train_fn,
        args=(params,),
        num_proc=tc.num_proc,
        use_gloo=True,
        env=env,
        stdout=sys.stderr,
        stderr=sys.stderr,
        start_timeout=start_timeout_s,
        verbose=0,
    )
    r0 = next(r for r in results if r["rank"] == 0)
    # Training needs only the examples; without silver.events (an examples-only lake) an `auto`
    # source kind cannot be detected and the baselines are computed as for logged impressions.
    detectable = cfg.data.feedback != "auto" or lake.exists("silver.events")
    clicks_only = is_clicks_only(with_feedback(cfg, lake)) if detectable else False
    base = _baselines(
        path, version, spec.label, cfg.features.ctr_prior_strength, cfg.data.raw_dir, clicks_only
    )
    metrics = {**r0["metrics"], **{k: base[k] for k in ("popularity_auc", "oracle_auc")}}
    summary: dict[str, Any] = {
        "run_id": run_id,
        "model": tc.model,
        "workers": len(results),
        "examples_version": version,
        "val_auc": metrics["val_auc"],
        "val_logloss": metrics["val_logloss"],
        "test_auc": metrics["test_auc"],
        "test_logloss": metrics["test_logloss"],
        "popularity_auc": base["popularity_auc"],
        "oracle_auc": base["oracle_auc"],
        "oracle_source": base["oracle_source"],
        # Of the test scores behind test_auc (all ranks'); not in the registry's metrics.
        "calibration": r0["calibration"],
        "position_bias": {k: v for k, v in position_bias.items() if k != "theta"},
        "test_negatives": "uniformly sampled clicked items" if clicks_only else "logged impressions",
        "steps": r0["steps"],
        "epochs_run": len(r0["history"]),
        "resumed_from_step": r0["resumed_from_step"],
        "samples_per_s": round(r0["samples_per_s"], 1),
        # The first epoch includes tracing the tf.functions; the last one is the steady state.
        "samples_per_s_last_epoch": round(r0["history"][-1]["samples_per_s"], 1) if r0["history"] else None,
        "train_s": round(r0["train_s"], 2),
        "weights_checksums": sorted({r["weights_checksum"] for r in results}),
        # (intra-op, inter-op) TensorFlow threads of the ranks (train.threads_per_rank).
        "tf_threads_per_rank": sorted({tuple(r["tf_threads"]) for r in results}),
        "path": r0["export_dir"],
    }
    if register:
        row = register_model(
            lake,
            run_id=run_id,
            data_version=int(version),
            params={
                **{k: params[k] for k in TRAIN_PARAM_KEYS},
                "model_kwargs": params["model_kwargs"],
                "workers": len(results),
            },
            metrics=metrics,
            path=r0["export_dir"],
            tolerance=tc.auc_tolerance,
        )
        summary.update(model_version=row["model_version"], status=row["status"], reason=row["reason"])
    summary["mlflow"] = _track(cfg, params, summary, r0["history"], run_date)
    summary["duration_s"] = round(time.perf_counter() - t0, 2)
    summary["report_html"] = write_train_report(cfg, summary, r0["history"], results)
    return summary


def _track(
    cfg: Config,
    params: dict[str, Any],
    summary: dict[str, Any],
    history: list[dict[str, Any]],
    run_date: dt.date | None,
) -> dict[str, Any]:
    """Log the finished run to MLflow (driver side: no MLflow in the Horovod ranks); the summary's
    ``mlflow`` block (run id, or the error: tracking never fails training)."""
    from recpipe.model.tracking import log_training_run

    cal = summary["calibration"] or {}
    return log_training_run(
        cfg,
        run_name=params["run_id"],
        params={
            "run_id": params["run_id"],
            **{k: params[k] for k in TRAIN_PARAM_KEYS},
            **params["model_kwargs"],
            "num_proc": cfg.train.num_proc,
            "gpus_per_worker": cfg.train.gpus_per_worker,
            "examples_table": params["examples_table"],
            "examples_version": params["examples_version"],
        },
        history=history,
        metrics={
            # val_* per epoch are in the history; these are of the best epoch's weights.
            "best_val_auc": summary["val_auc"],
            "best_val_logloss": summary["val_logloss"],
            **{k: summary[k] for k in ("test_auc", "test_logloss", "popularity_auc", "oracle_auc")},
            "test_ece": cal.get("ece"),
            "test_brier": cal.get("brier"),
            **{k: summary[k] for k in ("steps", "epochs_run", "train_s")},
            "train_samples_per_s": summary["samples_per_s"],  # samples_per_s: per epoch
        },
        tags={
            "recpipe.run_id": params["run_id"],
            "model_version": summary.get("model_version"),
            "registry_status": summary.get("status"),
            "run_date": run_date.isoformat() if run_date else None,
        },
        export_dir=summary["path"],
    )


def write_train_report(
    cfg: Config, summary: dict[str, Any], history: list[dict[str, Any]], results: list[dict[str, Any]]
) -> str | None:
    """``train-<run id>.json`` (the summary, per-epoch history, samples/s per rank) and its page
    in the reports folder; the page's path, or None (a report never fails training)."""
    from recpipe.reports.store import safe_name, write_json_and_html

    by_rank = sorted(results, key=lambda r: r["rank"])
    report = {
        "job": "train",
        **summary,
        "history": history,
        "samples_per_s_by_rank": [
            round(r["rank_samples_per_s"], 1) for r in by_rank if "rank_samples_per_s" in r
        ],
    }
    stem = f"train-{safe_name(summary['run_id'])}"
    return write_json_and_html(cfg.artifacts_dir("reports"), stem, "train", report)
