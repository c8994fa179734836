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


def test_exploration_notebook_plots_the_segments_of_profiles(spark, synthetic_lake, tmp_path):
    import dataclasses
    import datetime as dt
    import shutil

    from recpipe import constants as C
    from recpipe.config import SegmentsConfig
    from recpipe.features.profiles import profiles_as_of
    from recpipe.features.segments import build_segments
    from recpipe.lake import open_lake

    cfg, _lake, _raw, _manifest = synthetic_lake
    # given a copy of the shared lake with profiles (as the stream leaves them) and segments
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake.root, root, ignore=shutil.ignore_patterns("_artifacts"))
    cfg = dataclasses.replace(
        cfg,
        lake=dataclasses.replace(cfg.lake, root=str(root)),
        segments=SegmentsConfig(rules={"active": "events_total >= 1"}, clusters=3),
    )
    lake = open_lake(cfg, spark)
    lake.overwrite(
        C.GOLD_USER_PROFILES, profiles_as_of(cfg, spark, lake, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    )
    summary = build_segments(cfg, spark, lake)
    # then the notebook's segments cell draws one bar per segment and lists the sizes
    nb = execute("exploration.ipynb", {"RECPIPE_LAKE": str(root)})
    cell = next(c for c in nb.cells if c.cell_type == "code" and "user_segments" in c.source)
    assert sum("image/png" in o.get("data", {}) for o in cell.outputs) == 1
    table = "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
    for name, seg in summary["segments"].items():
        assert name in table and str(seg["users"]) in table, (name, table)
    assert summary["segments"]["active"]["users"] == lake.row_count(C.GOLD_USER_PROFILES)


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
    # without a simulation report beside it, the closed-loop section says how to get one and moves on
    sim = next(c for c in nb.cells if c.cell_type == "code" and "RECPIPE_SIMULATION_REPORT" in c.source)
    text = "".join(o.get("text", "") for o in sim.outputs)
    assert text.count("\n") == 1 and "`recpipe simulate --days 7` writes one" in text
    figs = next(c for c in nb.cells if c.cell_type == "code" and "simulation_figures" in c.source)
    assert not figs.outputs


def test_evaluation_notebook_plots_the_newest_simulation_report(tmp_path):
    from tests.unit.test_reports import evaluation_report, simulation_report

    # given an evaluation report and, beside it, a simulation summary built by the real measures
    (tmp_path / "evaluation-2026-10-12.json").write_text(json.dumps(evaluation_report()))
    report = simulation_report()
    (tmp_path / "simulation-2026-10-15.json").write_text(json.dumps(report))
    nb = execute("evaluation_report.ipynb", {"RECPIPE_REPORT": str(tmp_path / "evaluation-2026-10-12.json")})
    # then the closed-loop section shows the arms and the days, and plots the three figures
    cell = next(c for c in nb.cells if c.cell_type == "code" and "RECPIPE_SIMULATION_REPORT" in c.source)
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "simulation-2026-10-15.json: 3 days from 2026-10-15 | arms recpipe 50%" in text
    assert "'days_checked': 2" in text
    tables = [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 2
    assert all(arm in tables[0] for arm in ("recpipe", "popularity", "random"))
    assert "2026-10-17" in tables[1] and "ope observed" in tables[1]
    figs = next(c for c in nb.cells if c.cell_type == "code" and "simulation_figures" in c.source)
    assert sum("image/png" in o.get("data", {}) for o in figs.outputs) == 3
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
