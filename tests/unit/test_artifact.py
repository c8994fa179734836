"""recpipe.model.artifact: the examples' feature spec file and an export's spec and meta files."""

from __future__ import annotations

import json

import pytest

from recpipe.model import artifact
from tests.support.model_examples import synthetic_spec


def test_spec_round_trip_beside_the_examples_table(tmp_path):
    table = tmp_path / "gold" / "training_examples"
    table.mkdir(parents=True)
    spec = synthetic_spec()
    path = artifact.write_spec(str(table), spec)
    assert path == str(table / "_feature_spec.json") == artifact.spec_file(str(table) + "/")
    assert (table / "_feature_spec.json").read_text() == spec.to_json()
    assert artifact.read_spec(str(table)) == spec
    assert artifact.read_spec(table.as_uri()) == spec


def test_missing_spec_says_to_run_examples(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the examples stage first"):
        artifact.read_spec(str(tmp_path))


class _Model:
    def save(self, path: str) -> None:
        with open(path, "w") as fh:
            fh.write("model")


def test_export_layout_spec_and_meta(tmp_path):
    export = tmp_path / "runs" / "r1" / "export"
    spec = synthetic_spec()
    artifact.write_export(str(export), _Model(), spec, {"run_id": "r1", "metrics": {"val_auc": 0.5}})
    assert sorted(p.name for p in export.iterdir()) == sorted(artifact.EXPORT_FILES)
    assert sorted(artifact.EXPORT_FILES) == ["feature_spec.json", "model.keras", "model_meta.json"]
    assert artifact.read_export_spec(str(export)) == spec
    assert (export / "feature_spec.json").read_text() == spec.to_json()
    meta = artifact.read_export_meta(str(export))
    assert (
        meta
        == json.loads((export / "model_meta.json").read_text())
        == {
            "run_id": "r1",
            "metrics": {"val_auc": 0.5},
        }
    )
    artifact.write_export_meta(str(export), {**meta, "mlflow": {"run_id": "x"}})
    assert artifact.read_export_meta(export.as_uri())["mlflow"] == {"run_id": "x"}
