"""The notebooks execute top to bottom on tiny synthetic data and produce their plots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.notebooks, pytest.mark.integration]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def images(nb) -> int:
    return sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )


def test_exploration_notebook_runs_on_the_synthetic_lake(synthetic_lake):
    cfg, lake, raw, manifest = synthetic_lake
    nb = execute("exploration.ipynb", {"RECPIPE_LAKE": str(Path(cfg.lake.root).resolve())})
    assert images(nb) >= 5
    first = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert f"{manifest['clean_events']:,} events" in first


def test_evaluation_notebook_shows_the_calibration_of_a_report_with_a_model(tmp_path):
    from tests.unit.test_reports import evaluation_report

    # given an evaluation report whose ranker has the model's calibration
    path = tmp_path / "evaluation-2026-10-12.json"
    path.write_text(json.dumps(evaluation_report()))
    nb = execute("evaluation_report.ipynb", {"RECPIPE_REPORT": str(path)})
    # then the calibration cell prints ECE and Brier, shows the decile table and the reliability plot
    cell = next(c for c in nb.cells if c.cell_type == "code" and "reliability_figure" in c.source)
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "ECE 0.0110 | Brier 0.0512 | 900 test rows in 10 equal-count (quantile) bins" in text
    assert sum("text/html" in o.get("data", {}) for o in cell.outputs) == 1
    assert sum("image/png" in o.get("data", {}) for o in cell.outputs) == 1
