"""GPU workers on a machine without a GPU: the rank's device selection against a fake ``tf.config``,
the config keys, the Spark GPU resource conf, the discovery script with a fake ``nvidia-smi``, and
mixed precision (float16 compute, float32 output, loss scaling) on the CPU."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

from recpipe.config import ConfigError, load_config
from recpipe.model import devices

REPO = Path(__file__).resolve().parents[2]
DISCOVER = REPO / "deploy" / "gpu" / "discover-gpus.sh"

pytestmark = pytest.mark.unit


# -- device selection ------------------------------------------------------------------------------
class FakeConfig:
    """The part of ``tf.config`` that :func:`devices.pin_gpu` uses, recording the calls."""

    def __init__(self, n_gpus: int):
        self.gpus = [types.SimpleNamespace(name=f"/physical_device:GPU:{i}") for i in range(n_gpus)]
        self.calls: list[tuple] = []
        self.experimental = types.SimpleNamespace(set_memory_growth=self._growth)

    def list_physical_devices(self, kind):
        self.calls.append(("list", kind))
        return list(self.gpus) if kind == "GPU" else []

    def _growth(self, device, enable):
        self.calls.append(("memory_growth", device.name, enable))

    def set_visible_devices(self, devs, kind=None):
        self.calls.append(("visible", [d.name for d in devs], kind))


@pytest.mark.parametrize(
    ("local_rank", "n_gpus", "assigned", "expected"),
    [
        (0, 4, (), 0),
        (3, 4, (), 3),
        (5, 4, (), 1),  # more ranks than GPUs on the machine: they share in turn
        (1, 2, ("0",), 0),  # Spark's assignment wins over the local rank
        (0, 2, ("1", "0"), 1),  # first assigned address
        (1, 2, ("7",), 1),  # an address TensorFlow does not list: back to local rank
        (1, 2, ("gpu-a",), 1),  # not an index
        (0, 0, ("0",), None),  # no GPU
    ],
)
def test_pick_gpu(local_rank, n_gpus, assigned, expected):
    assert devices.pick_gpu(local_rank, n_gpus, assigned) == expected


@pytest.mark.parametrize(("local_rank", "n_gpus", "index"), [(0, 1, 0), (1, 2, 1), (2, 2, 0), (3, 8, 3)])
def test_a_rank_pins_local_rank_mod_gpus_with_memory_growth(local_rank, n_gpus, index, caplog):
    fake = FakeConfig(n_gpus)
    with caplog.at_level(logging.INFO, logger="recpipe.model.devices"):
        chosen = devices.pin_gpu(local_rank, fake, rank=10 + local_rank)
    name = f"/physical_device:GPU:{index}"
    assert chosen.name == name
    # memory growth on the chosen GPU, then only that GPU visible (both before TF initializes)
    assert fake.calls == [("list", "GPU"), ("memory_growth", name, True), ("visible", [name], "GPU")]
    assert len(caplog.records) == 1 and f"pinned to GPU {index} of {n_gpus}" in caplog.text


def test_the_spark_assigned_gpu_is_pinned():
    fake = FakeConfig(4)
    assert devices.pin_gpu(0, fake, assigned=["2"]).name == "/physical_device:GPU:2"
    assert ("visible", ["/physical_device:GPU:2"], "GPU") in fake.calls


def test_no_gpu_is_a_logged_no_op(caplog):
    fake = FakeConfig(0)
    with caplog.at_level(logging.INFO, logger="recpipe.model.devices"):
        assert devices.pin_gpu(1, fake, assigned=["0"], rank=3) is None
    assert fake.calls == [("list", "GPU")]  # nothing set
    assert [r.getMessage() for r in caplog.records] == [
        "rank 3 (local rank 1): no GPU visible to TensorFlow, training on CPU"
    ]


def test_spark_assigned_gpus_from_horovod_task_resources(monkeypatch):
    task = types.ModuleType("horovod.spark.task")
    task.get_available_devices = lambda: ["1"]
    monkeypatch.setitem(sys.modules, "horovod.spark.task", task)
    assert devices.spark_assigned_gpus() == ["1"]
    task.get_available_devices = lambda: []  # no GPU-aware scheduling
    assert devices.spark_assigned_gpus() == []
    monkeypatch.setitem(sys.modules, "horovod.spark.task", None)  # not importable
    assert devices.spark_assigned_gpus() == []


def test_the_real_tf_config_on_this_cpu_machine_is_left_alone():
    import tensorflow as tf

    assert tf.config.list_physical_devices("GPU") == []  # the premise: no GPU here
    assert devices.pin_gpu(0, tf.config) is None
    assert tf.config.get_visible_devices("CPU")


# -- config ----------------------------------------------------------------------------------------
def test_gpu_keys_default_to_cpu_training_in_the_shipped_configs():
    for conf in ("conf/local.yaml", "conf/cluster.yaml"):
        tc = load_config(REPO / conf).train
        assert (tc.precision, tc.sparse_as_dense, tc.gpus_per_worker) == ("float32", True, 0), conf
    tc = load_config(
        REPO / "conf/local.yaml", ["train.precision=mixed_float16", "train.sparse_as_dense=false"]
    )
    assert tc.train.precision == "mixed_float16" and tc.train.sparse_as_dense is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.precision=float16", r"key 'train.precision' must be one of \['float32', 'mixed_float16'\]"),
        ("train.precision=bf16", r"got 'bf16'"),
        ("train.sparse_as_dense=maybe", r"key 'train.sparse_as_dense' must be bool"),
        ("train.gpus_per_worker=-1", r"key 'train.gpus_per_worker' must be >= 0"),
        ("train.gpus_per_worker=0.5", r"key 'train.gpus_per_worker' must be int"),
    ],
)
def test_bad_gpu_settings_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(REPO / "conf/local.yaml", [override])
    assert "\n" not in str(err.value)


def test_more_ranks_than_cluster_gpus_is_a_config_error():
    # cluster.yaml: 8 executors; one GPU each runs at most 8 ranks at a time
    cfg = load_config(REPO / "conf/cluster.yaml", ["train.gpus_per_worker=1", "train.num_proc=8"])
    assert cfg.train.num_proc == 8
    with pytest.raises(ConfigError, match=r"'train.num_proc' \(9\) exceeds .* \(8 x 1\)"):
        load_config(REPO / "conf/cluster.yaml", ["train.gpus_per_worker=1", "train.num_proc=9"])
    load_config(REPO / "conf/cluster.yaml", ["train.gpus_per_worker=2", "train.num_proc=16"])
    load_config(
        REPO / "conf/local.yaml", ["train.gpus_per_worker=1", "train.num_proc=9"]
    )  # no GPU scheduling


def test_precision_and_sparse_as_dense_are_fingerprinted_and_recorded_gpus_are_not():
    from recpipe.model.train import TRAIN_PARAM_KEYS
    from recpipe.stages.base import config_part

    base = load_config(REPO / "conf/local.yaml")
    part = config_part(base, "train")
    assert part["precision"] == "float32" and part["sparse_as_dense"] is True
    assert "gpus_per_worker" not in part  # where training runs, not what it computes
    for override in ("train.precision=mixed_float16", "train.sparse_as_dense=false"):
        assert config_part(load_config(REPO / "conf/local.yaml", [override]), "train") != part
    gpus = load_config(REPO / "conf/local.yaml", ["train.gpus_per_worker=2"])
    assert config_part(gpus, "train") == part
    # the registry row, model_meta.json and the MLflow run record both (train.TRAIN_PARAM_KEYS)
    assert {"precision", "sparse_as_dense"} <= set(TRAIN_PARAM_KEYS)


# -- Spark conf ------------------------------------------------------------------------------------
GPU_KEYS = {
    "spark.executor.resource.gpu.amount",
    "spark.task.resource.gpu.amount",
    "spark.executor.resource.gpu.discoveryScript",
    "spark.executor.resource.gpu.vendor",
}


def test_gpus_per_worker_becomes_spark_gpu_resource_requests_on_a_cluster():
    from recpipe.spark import GPU_DISCOVERY_SCRIPT, REQUIRED_CONF, session_conf

    cfg = load_config(REPO / "conf/cluster.yaml", ["train.gpus_per_worker=2"])
    conf = session_conf(cfg)
    assert conf["spark.executor.resource.gpu.amount"] == "2"
    assert conf["spark.task.resource.gpu.amount"] == "1"  # one GPU per task = per Horovod rank
    assert conf["spark.executor.resource.gpu.discoveryScript"] == GPU_DISCOVERY_SCRIPT
    assert conf["spark.executor.resource.gpu.vendor"] == "nvidia.com"
    # the rest of the session conf is unchanged
    assert conf["spark.executor.instances"] == "8" and all(conf[k] == v for k, v in REQUIRED_CONF.items())
    assert GPU_DISCOVERY_SCRIPT == "/opt/recpipe/gpu/discover-gpus.sh"
    assert (
        f"COPY deploy/gpu/discover-gpus.sh {GPU_DISCOVERY_SCRIPT}"
        in (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    )


def test_explicit_spark_conf_wins_and_no_gpus_means_no_requests():
    from recpipe.spark import session_conf

    script = "spark.conf.spark.executor.resource.gpu.discoveryScript=/usr/local/bin/gpus.sh"
    cfg = load_config(REPO / "conf/cluster.yaml", ["train.gpus_per_worker=1", script])
    assert session_conf(cfg)["spark.executor.resource.gpu.discoveryScript"] == "/usr/local/bin/gpus.sh"
    assert not GPU_KEYS & set(session_conf(load_config(REPO / "conf/cluster.yaml")))
    # local mode: Spark does not schedule GPUs (tasks asking for them would never start)
    local = load_config(REPO / "conf/local.yaml", ["train.gpus_per_worker=1"])
    assert not GPU_KEYS & set(session_conf(local))


# -- discovery script ------------------------------------------------------------------------------
def fake_nvidia_smi(tmp_path: Path, body: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_discover(env) -> subprocess.CompletedProcess:
    return subprocess.run([str(DISCOVER)], env=env, capture_output=True, text=True, timeout=30)


def test_discovery_script_prints_spark_resource_json(tmp_path):
    # nvidia-smi answers only the query the script is meant to make
    env = fake_nvidia_smi(
        tmp_path,
        '[ "$*" = "--query-gpu=index --format=csv,noheader" ] || exit 9\nprintf "0\\n1\\n"\n',
    )
    assert os.access(DISCOVER, os.X_OK)  # Spark executes it directly
    out = run_discover(env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"name": "gpu", "addresses": ["0", "1"]}
    one = run_discover(fake_nvidia_smi(tmp_path, 'printf " 3 \\n"\n'))
    assert json.loads(one.stdout) == {"name": "gpu", "addresses": ["3"]}


def test_discovery_script_fails_without_a_working_nvidia_smi(tmp_path):
    broken = run_discover(fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed" >&2; exit 9\n'))
    assert broken.returncode != 0 and broken.stdout == ""
    odd = run_discover(fake_nvidia_smi(tmp_path, 'echo "No devices were found"\n'))
    assert odd.returncode != 0 and "unexpected nvidia-smi output" in odd.stderr


# -- mixed precision on the CPU --------------------------------------------------------------------
@pytest.fixture
def mixed():
    import tf_keras as keras

    devices.set_precision("mixed_float16", keras)
    try:
        yield keras
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("factory", ["dcn", "deepfm", "din"])
def test_mixed_float16_model_trains_a_step_with_loss_scaling_and_float32_output(mixed, factory):
    import tensorflow as tf

    from recpipe.model.inputs import labels, to_model_inputs
    from recpipe.model.models import build_model
    from recpipe.model.train import make_train_step
    from tests.support.model_examples import synthetic_examples, synthetic_spec

    keras = mixed
    spec = synthetic_spec()
    df = synthetic_examples(rows=64, seed=3)
    x, y = to_model_inputs(df, spec), labels(df, spec)
    # given a model built under the mixed_float16 policy, with a loss-scale optimizer
    model = build_model(factory, spec, deep_units=(8,), l2=1e-4)
    assert model.get_layer("deep_dense_0").compute_dtype == "float16"
    assert model.get_layer("p_click").compute_dtype == "float32"
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)  # float32 weights
    opt = devices.wrap_optimizer(keras.optimizers.Adam(1e-2), "mixed_float16", keras)
    assert isinstance(opt, keras.mixed_precision.LossScaleOptimizer)
    opt.build(model.trainable_variables)
    state = devices.optimizer_state_variables(opt)
    assert len(state) == len(opt.variables) + 2  # + loss scale and its growth counter
    tapes = []
    step = make_train_step(
        model,
        opt,
        keras.losses.BinaryCrossentropy(),
        "mixed_float16",
        wrap_tape=lambda t: tapes.append(t) or t,
    )
    before = [w.copy() for w in model.get_weights()]
    # when it trains one step
    loss = step(x, tf.constant(y, tf.float32))
    # then the loss is finite float32, the weights moved, the tape went through the wrapper
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert len(tapes) == 1 and isinstance(tapes[0], tf.GradientTape)
    assert float(opt.loss_scale) == 2.0**15  # dynamic loss scale, a finite step keeps it
    # and the output (the click probability) is float32
    p = model(x, training=False)
    assert p.dtype == tf.float32 and p.shape == (64, 1)
    assert np.all((p.numpy() > 0) & (p.numpy() < 1))
    # the export copy computes in float32 with the same weights
    copy = devices.float32_copy(model, lambda: build_model(factory, spec, deep_units=(8,), l2=1e-4), keras)
    assert copy.get_layer("deep_dense_0").compute_dtype == "float32"
    np.testing.assert_allclose(copy(x, training=False).numpy(), p.numpy(), atol=5e-3)


def test_float32_keeps_the_plain_optimizer_and_step():
    import tensorflow as tf
    import tf_keras as keras

    from recpipe.model.train import make_train_step

    devices.set_precision("float32", keras)
    opt = devices.wrap_optimizer(keras.optimizers.SGD(0.1), "float32", keras)
    assert not isinstance(opt, keras.mixed_precision.LossScaleOptimizer)
    model = keras.Sequential([keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    model.build((None, 1))
    opt.build(model.trainable_variables)
    assert devices.optimizer_state_variables(opt) == list(opt.variables)
    step = make_train_step(model, opt, keras.losses.MeanSquaredError())
    step(tf.constant([[1.0]]), tf.constant([[0.0]]))
    assert float(model.trainable_variables[0][0, 0]) == pytest.approx(1.0 - 0.1 * 2.0)
    with pytest.raises(ValueError, match="train.precision must be one of"):
        devices.set_precision("float16", keras)


# -- TensorFlow threads per rank -------------------------------------------------------------------
@pytest.mark.parametrize(
    "configured, cpus, local_ranks, expected",
    [
        (0, 2, 1, (2, 1)),  # one rank: the machine's cores
        (0, 2, 2, (1, 1)),  # two ranks share two cores: one each
        (0, 16, 4, (4, 2)),
        (0, None, 2, (1, 1)),  # cpu count unknown
        (1, 16, 1, (1, 1)),  # pinned (the training bench's scaling check)
        (4, 2, 2, (4, 2)),  # as configured, even beyond the cores
    ],
)
def test_rank_threads(configured, cpus, local_ranks, expected):
    from recpipe.model.train import rank_threads

    assert rank_threads(configured, cpus, local_ranks) == expected


def test_threads_per_rank_is_checked_and_not_fingerprinted():
    from recpipe.stages.base import config_part

    with pytest.raises(ConfigError, match=r"key 'train.threads_per_rank' must be >= 0"):
        load_config(REPO / "conf/local.yaml", ["train.threads_per_rank=-1"])
    base = config_part(load_config(REPO / "conf/local.yaml"), "train")
    pinned = load_config(REPO / "conf/local.yaml", ["train.threads_per_rank=1"])
    assert pinned.train.threads_per_rank == 1 and config_part(pinned, "train") == base
