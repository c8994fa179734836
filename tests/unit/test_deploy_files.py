"""Deployment files that cannot run here (no cluster, no Docker engine) are at least well formed."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
JOB_STAGES = [
    "ingest",
    "features",
    "examples",
    "train",
    "recommend",
    "evaluate",
    "generate",
    "run",
    "segments",
]

pytestmark = pytest.mark.unit


def k8s_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def spark_apps() -> list[tuple[str, dict]]:
    """``(file, SparkApplication spec)`` for every SparkApplication and ScheduledSparkApplication."""
    apps = []
    for name, doc in k8s_docs():
        if doc["kind"] == "SparkApplication":
            apps.append((name, doc["spec"]))
        elif doc["kind"] == "ScheduledSparkApplication":
            apps.append((name, doc["spec"]["template"]))
    return apps


def test_k8s_manifests_parse_and_have_kinds():
    kinds = {doc["kind"] for _, doc in k8s_docs()}
    assert {"SparkApplication", "ScheduledSparkApplication", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    for name, doc in k8s_docs():
        assert doc["apiVersion"] and doc["metadata"]["name"], name
        if "Spark" in doc["kind"]:
            assert doc["apiVersion"] == "sparkoperator.k8s.io/v1beta2", name


def test_spark_applications_match_cluster_sizing_and_use_the_secret():
    conf = yaml.safe_load((REPO / "conf" / "cluster.yaml").read_text())["spark"]["conf"]
    assert spark_apps()
    for name, spec in spark_apps():
        assert spec["type"] == "Python" and spec["mode"] == "cluster", name
        assert spec["driver"]["memory"] == conf["spark.driver.memory"], name
        assert spec["executor"]["instances"] == conf["spark.executor.instances"], name
        assert spec["executor"]["cores"] == conf["spark.executor.cores"], name
        assert spec["executor"]["memory"] == conf["spark.executor.memory"], name
        assert "/opt/recpipe/conf/cluster.yaml" in spec["arguments"], name
        job = re.fullmatch(r"local:///opt/recpipe/jobs/(.+)\.py", spec["mainApplicationFile"])
        assert job, name
        assert job.group(1) == "{{ stage }}" or (REPO / "jobs" / f"{job.group(1)}.py").exists(), name
        secrets = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in spec["driver"]["env"] if "valueFrom" in e
        }
        assert secrets["RECPIPE_PSEUDONYM_KEY"]["name"] == "recpipe-secrets", name
        # the key is a secret reference, never a literal, and executors do not get it
        assert all("RECPIPE_PSEUDONYM_KEY" != e["name"] for e in spec["executor"].get("env", [])), name


@pytest.mark.parametrize("stage", JOB_STAGES)
def test_jobs_are_thin_entry_points(stage):
    source = (REPO / "jobs" / f"{stage}.py").read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree)
    body = tree.body[1:]
    assert [type(node).__name__ for node in body] == ["Import", "ImportFrom", "If"]
    assert f'sys.exit(run_stage("{stage}"))' in source


def test_dockerfile_builds_from_dist_with_delta_jars():
    text = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    assert "ARG DELTA_VERSION=" in text and "delta-spark_${SCALA_BINARY}-${DELTA_VERSION}.jar" in text
    assert "COPY dist/recpipe-*.whl" in text and "horovodrun" in text
    assert re.search(r"^ENTRYPOINT ", text, re.M)


def test_airflow_dag_is_valid_python():
    ast.parse((REPO / "deploy" / "airflow" / "dags" / "recpipe_daily.py").read_text())


def test_spark_submit_script_help():
    proc = subprocess.run(
        ["bash", str(REPO / "deploy" / "spark-submit.sh"), "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Usage: deploy/spark-submit.sh STAGE" in proc.stdout
    bad = subprocess.run(
        ["bash", str(REPO / "deploy" / "spark-submit.sh"), "no-such-stage"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "no job for stage" in bad.stderr


def _set_overrides(arguments: list[str]) -> list[str]:
    return [arguments[i + 1] for i, a in enumerate(arguments) if a == "--set"]


def test_gpu_executors_match_the_gpus_recpipe_asks_spark_for():
    from recpipe.config import load_config
    from recpipe.spark import gpu_conf

    gpu_apps = 0
    for name, spec in spark_apps():
        # the manifest's --set overrides on the config it names (the real loader and its checks)
        cfg = load_config(REPO / "conf" / "cluster.yaml", _set_overrides(spec["arguments"]))
        gpu = spec["executor"].get("gpu")
        assert "gpu" not in spec["driver"], name  # the driver does not train
        if gpu is None:
            assert cfg.train.gpus_per_worker == 0 and not spec["image"].endswith("-gpu"), name
            continue
        gpu_apps += 1
        # the pod's nvidia.com/gpu limit = Spark's GPUs per executor = train.gpus_per_worker
        assert gpu["name"] == "nvidia.com/gpu" and gpu["quantity"] == cfg.train.gpus_per_worker > 0, name
        conf = gpu_conf(cfg)
        assert conf["spark.executor.resource.gpu.amount"] == str(gpu["quantity"]), name
        assert conf["spark.executor.resource.gpu.vendor"] == "nvidia.com", name
        # one Horovod rank per GPU: as many ranks as the executors' GPUs, on the GPU image
        assert cfg.train.num_proc == spec["executor"]["instances"] * gpu["quantity"], name
        assert spec["image"].endswith("-gpu") and cfg.train.precision == "mixed_float16", name
        assert spec["mainApplicationFile"].endswith("/jobs/train.py"), name
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "executor"
        ].get("tolerations", []), name
    assert gpu_apps == 1


def test_dockerfile_gpu_variant_is_opt_in_at_the_pinned_tensorflow():
    text = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    # the default image is the CPU one, with the tensorflow-cpu pin of the packed requirements
    assert re.search(r"^ARG TF_VARIANT=cpu$", text, re.M)
    assert "HOROVOD_CPU_OPERATIONS=GLOO" in text
    # the GPU build: tensorflow[and-cuda] at the version setup.py pins for tensorflow-cpu
    gpu_req = re.search(r'^ARG TF_GPU_REQUIREMENT="tensorflow\[and-cuda\]==([0-9.]+)"$', text, re.M)
    cpu_pin = re.search(r'"tensorflow-cpu==([0-9.]+)"', (REPO / "setup.py").read_text())
    assert gpu_req and cpu_pin and gpu_req.group(1) == cpu_pin.group(1)
    # NCCL only inside an `if [ "$TF_VARIANT" = gpu ]` branch, next to tensorflow[and-cuda]
    lines = text.splitlines()
    (i,) = [i for i, ln in enumerate(lines) if "HOROVOD_GPU_OPERATIONS=NCCL" in ln]
    opened = max(j for j in range(i) if lines[j].lstrip().startswith(("&& if ", "if ")))
    assert 'if [ "$TF_VARIANT" = gpu ]; then' in lines[opened]
    assert not any(ln.strip().startswith("fi") for ln in lines[opened:i])
    assert any('"$TF_GPU_REQUIREMENT"' in ln for ln in lines[opened:i])
    # the discovery script is in the build context and copied into the image
    ignore = (REPO / "deploy" / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!deploy/gpu/discover-gpus.sh" in ignore
    assert "COPY deploy/gpu/discover-gpus.sh /opt/recpipe/gpu/discover-gpus.sh" in text
