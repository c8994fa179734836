"""Every argument list the deploy files and the READMEs pass parses with the real ``recpipe`` parser.

The lists are extracted from the files themselves: the DAG's ``stage_arguments`` function and
``DEFAULTS`` (from its source, without importing Airflow), the Kubernetes manifests' ``arguments``,
and the command lines in README.md's and deploy/README.md's code blocks.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from recpipe.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DAG = REPO / "deploy" / "airflow" / "dags" / "recpipe_daily.py"
DS = "2026-10-05"

pytestmark = pytest.mark.unit


def render(args: list[str], **values: str) -> list[str]:
    """Airflow/Jinja placeholders ``{{ name }}`` replaced; an unknown one fails the test."""
    out = []
    for a in args:
        for name, value in {"ds": DS, **values}.items():
            a = re.sub(r"\{\{\s*" + name + r"\s*\}\}", value, a)
        assert "{{" not in a, f"unrendered template in {a!r}"
        out.append(a)
    return out


def dag_source() -> tuple[dict, tuple[str, ...], dict]:
    """(DEFAULTS, STAGES, namespace with stage_arguments) from the DAG file's own source."""
    tree = ast.parse(DAG.read_text())
    found: dict = {}
    funcs = []
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("DEFAULTS", "STAGES"):
                found[target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.FunctionDef) and node.name == "stage_arguments":
            funcs.append(node)
    assert set(found) == {"DEFAULTS", "STAGES"} and len(funcs) == 1
    ns: dict = {"Any": object}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), str(DAG), "exec"), ns)  # noqa: S102
    return found["DEFAULTS"], found["STAGES"], ns


def dag_argument_lists() -> list[tuple[str, list[str]]]:
    defaults, stages, ns = dag_source()
    with_overrides = {**defaults, "overrides": ["train.every_days=7", "lake.root=s3://b/lake"]}
    out = []
    for settings in (defaults, with_overrides):
        for stage in stages:
            out.append((f"DAG task {stage}", [stage, *render(ns["stage_arguments"](settings))]))
    return out


def k8s_argument_lists(stages: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    out = []
    for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("SparkApplication", "ScheduledSparkApplication"):
                continue
            spec = doc["spec"]["template"] if doc["kind"] == "ScheduledSparkApplication" else doc["spec"]
            job = re.fullmatch(r"local:///opt/recpipe/jobs/(.+)\.py", spec["mainApplicationFile"]).group(1)
            for stage in stages if job == "{{ stage }}" else (job,):
                out.append((f"{path.name} ({stage})", [stage, *render(spec["arguments"], stage=stage)]))
    return out


def readme_command_lines(path: Path) -> list[tuple[str, list[str]]]:
    """``recpipe ...``, ``deploy/spark-submit.sh STAGE ...`` and ``spark-submit ... jobs/X.py ...``
    lines in the file's fenced code blocks, as recpipe argument lists."""
    out = []
    blocks = re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), re.S)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]  # environment assignments
            if not words:
                continue
            cmd = words[0]
            if cmd.endswith("/recpipe") or cmd == "recpipe":
                args = words[1:]
            elif cmd.endswith("spark-submit.sh"):
                if words[1].startswith("-"):
                    continue  # --help / --build: the script's own options
                args = words[1:]
            elif cmd.endswith("spark-submit"):
                i = next(i for i, w in enumerate(words) if re.fullmatch(r".*jobs/\w+\.py", w))
                args = [Path(words[i]).stem, *words[i + 1 :]]
            else:
                continue
            out.append((f"{path.relative_to(REPO)}: {line.strip()}", args))
    return out


def parse(source: str, args: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{source}: recpipe rejects {args}: {err.getvalue().strip().splitlines()[-1]}")


def test_dag_arguments_parse_with_the_run_date_and_overrides():
    lists = dag_argument_lists()
    _defaults, stages, _ns = dag_source()
    assert len(lists) == 2 * len(stages) == 12
    for source, args in lists:
        ns = parse(source, args)
        assert ns.command in stages
        assert ns.date == dt.date.fromisoformat(DS), source
        assert ns.conf == "/opt/recpipe/conf/cluster.yaml"
    assert parse(*lists[-1]).overrides == ["train.every_days=7", "lake.root=s3://b/lake"]


def test_kubernetes_arguments_parse_and_pass_a_run_date():
    _defaults, stages, _ns = dag_source()
    lists = k8s_argument_lists(stages)
    files = {"recpipe-daily.yaml", "recpipe-stage.yaml", "recpipe-stream.yaml", "recpipe-train-gpu.yaml"}
    assert {name.split(" ")[0] for name, _ in lists} == files
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    # the continuous stream has no run date: continuous mode (no --once), the cluster config
    (stream,) = [args for source, args in lists if source.startswith("recpipe-stream")]
    ns = parse("recpipe-stream.yaml", stream)
    assert ns.command == "stream" and not ns.once and ns.conf == "/opt/recpipe/conf/cluster.yaml"
    lists = [(source, args) for source, args in lists if not source.startswith("recpipe-stream")]
    for source, args in lists:
        ns = parse(source, args)
        # the scheduled run has no templating: `--date yesterday` (UTC) resolved by recpipe
        expected = yesterday if source.startswith("recpipe-daily") else dt.date.fromisoformat(DS)
        assert ns.date == expected, source
    # the GPU training run: the train stage, its GPU settings as --set overrides of the cluster config
    (gpu,) = [args for source, args in lists if source.startswith("recpipe-train-gpu")]
    ns = parse("recpipe-train-gpu.yaml", gpu)
    assert ns.command == "train" and ns.conf == "/opt/recpipe/conf/cluster.yaml"
    assert "train.gpus_per_worker=1" in ns.overrides and "train.precision=mixed_float16" in ns.overrides


@pytest.mark.parametrize("readme", ["README.md", "deploy/README.md"])
def test_readme_command_lines_parse(readme):
    lines = readme_command_lines(REPO / readme)
    assert len(lines) >= 2, [s for s, _ in lines]
    for source, args in lines:
        parse(source, args)


def test_a_wrong_argument_list_is_caught():
    # the extraction + parse above can fail: a list the parser rejects is reported with its source
    with pytest.raises(pytest.fail.Exception, match="recpipe rejects"):
        parse("example", ["examples", "--conf", "c.yaml", "--date", "05/10/2026"])
