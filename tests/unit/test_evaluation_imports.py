"""Evaluation never imports the synthetic generator (nor any other data source of
``recpipe.datasets``): the true click model reaches it through ``recpipe.evaluation.truth:ClickModel``.

The imports of every module of ``recpipe.evaluation`` are read with ``ast`` (top-level, lazy ones
inside functions, and ``TYPE_CHECKING`` blocks alike), and followed through the ``recpipe``
modules they import, so an indirect import through another package fails too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LIBS = Path(__file__).resolve().parents[2] / "libs"
EVALUATION = LIBS / "recpipe" / "evaluation"
FORBIDDEN = "recpipe.datasets"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(LIBS).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _file_of(module: str) -> Path | None:
    stem = LIBS.joinpath(*module.split("."))
    for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in its source (relative imports resolved)."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def recpipe_closure(start: list[Path]) -> dict[str, str]:
    """Every ``recpipe`` module reachable by imports from ``start``, with the module that first
    imports it."""
    seen: dict[str, str] = {}
    todo = [(_module_of(p), p) for p in start]
    while todo:
        module, path = todo.pop()
        for name in sorted(imports_of(path)):
            if not name.startswith("recpipe") or name in seen:
                continue
            seen[name] = module
            # importing a.b.c runs a/__init__ and a/b/__init__ too
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                target = _file_of(prefix)
                if target is not None and prefix not in {m for m, _ in todo} and prefix != module:
                    todo.append((prefix, target))
                    seen.setdefault(prefix, module)
    return seen


def test_the_scan_finds_imports_of_every_kind():
    src = LIBS / "recpipe" / "evaluation" / "oracle.py"
    found = imports_of(src)
    assert "recpipe.evaluation.truth" in found and "pyspark.sql" in found
    # and it would see the generator where it is imported (the synthetic click model does)
    assert "recpipe.datasets.synthetic.world" in imports_of(
        LIBS / "recpipe" / "datasets" / "synthetic" / "click_model.py"
    )


def test_evaluation_does_not_import_the_datasets_package():
    modules = sorted(EVALUATION.glob("*.py"))
    assert {p.name for p in modules} >= {"oracle.py", "truth.py", "baselines.py", "run.py"}
    reached = recpipe_closure(modules)
    bad = {m: by for m, by in reached.items() if m == FORBIDDEN or m.startswith(FORBIDDEN + ".")}
    assert not bad, f"recpipe.evaluation reaches {FORBIDDEN} (module: imported by): {bad}"
