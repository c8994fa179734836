"""docs/architecture.md stays true: every path, code name (``module:name``), table name and
config key it cites in backticks exists (#15 item 6). Names are looked up by parsing the module's
source with ``ast``: no module is imported, so this runs in a second without Spark or TensorFlow."""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import typing
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
LIBS = REPO / "libs"

PATH = re.compile(r"(?:libs|tests|conf|jobs|deploy|docs)/[^\s`]*")
# `recpipe.a.b:name`, `recpipe.a.b:Class.attr`, `tests.conftest:fixture` (also inside a span,
# e.g. `metadata=recpipe.config:NOT_FINGERPRINTED`).
NAME = re.compile(r"\b((?:recpipe|tests)(?:\.\w+)*):(\w+(?:\.\w+)*)")
MODULE = re.compile(r"recpipe(?:\.\w+)*")
TABLE = re.compile(r"(?:bronze|silver|gold|ops)\.\w+")
CONFIG_KEY = re.compile(r"([a-z_]+)\.([a-z_]+)")


def _spans(text: str) -> list[str]:
    """Inline code spans, fenced blocks left out."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


@functools.cache
def _spans_of_doc() -> tuple[str, ...]:
    return tuple(_spans(DOC.read_text(encoding="utf-8")))


def module_file(module: str) -> Path | None:
    """The source file of ``recpipe.x.y`` (under libs/) or ``tests.x`` (under the repository)."""
    base = LIBS if module.split(".")[0] == "recpipe" else REPO
    stem = base.joinpath(*module.split("."))
    for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _defined(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """Names a module or class body defines: functions, classes, assigned names."""
    out: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def name_exists(module: str, dotted: str) -> bool:
    path = module_file(module)
    if path is None:
        return False
    body: list[ast.stmt] = _tree(path).body
    node: ast.stmt | None = None
    for part in dotted.split("."):
        if node is not None:
            if not isinstance(node, ast.ClassDef):
                return False
            body = node.body
        node = _defined(body).get(part)
        if node is None:
            return False
    return True


def _library_strings() -> set[str]:
    out: set[str] = set()
    for path in (LIBS / "recpipe").rglob("*.py"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


def test_the_readme_links_the_map():
    assert "(docs/architecture.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def test_every_path_exists():
    paths = [m.group(0) for s in _spans_of_doc() for m in PATH.finditer(s)]
    # `jobs/<name>.py` is a pattern, not a file.
    checked = [p for p in paths if "<" not in p and "*" not in p]
    assert len(checked) > 40, checked
    missing = sorted({p for p in checked if not (REPO / p.rstrip("/")).exists()})
    assert not missing, f"docs/architecture.md cites paths that do not exist: {missing}"


def test_every_file_of_the_layout_table_exists():
    """The layout table's bare file names (`daily.py`) exist in the row's package folder."""
    rows = 0
    missing = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(libs/recpipe/\w+/)` \|(.*)\|$", line)
        if not m:
            continue
        rows += 1
        for name in re.findall(r"`(\w+\.py)`", m.group(2)):
            if not (REPO / m.group(1) / name).is_file():
                missing.append(m.group(1) + name)
    assert rows >= 10
    assert not missing, missing


def test_every_code_name_exists():
    names = sorted({m.groups() for s in _spans_of_doc() for m in NAME.finditer(s)})
    assert len(names) > 50, names
    missing = [f"{mod}:{name}" for mod, name in names if not name_exists(mod, name)]
    # A bare module (`recpipe.cli`) is a module's file.
    missing += [s for s in _spans_of_doc() if MODULE.fullmatch(s) and module_file(s) is None]
    assert not missing, f"docs/architecture.md cites names that do not exist: {missing}"


def test_every_table_name_is_a_table_of_the_code():
    tables = {s for s in _spans_of_doc() if TABLE.fullmatch(s)}
    assert len(tables) >= 15, tables
    missing = sorted(tables - _library_strings())
    assert not missing, f"docs/architecture.md cites tables that libs/recpipe does not name: {missing}"


def test_every_config_key_exists():
    """`section.key` spans whose section is a config section name a field of its dataclass."""
    from recpipe.config import Config

    sections = typing.get_type_hints(Config)
    keys = [
        m.groups()
        for s in _spans_of_doc()
        if (m := CONFIG_KEY.fullmatch(s)) and m.group(1) in sections and m.group(2) != "py"
    ]
    assert keys
    missing = [
        f"{section}.{key}"
        for section, key in keys
        if key not in {f.name for f in dataclasses.fields(sections[section])}
    ]
    assert not missing, f"docs/architecture.md cites config keys that do not exist: {missing}"


def test_the_checker_catches_a_wrong_name():
    assert name_exists("recpipe.lake.base", "Lake.upsert")
    assert not name_exists("recpipe.lake.base", "Lake.no_such_method")
    assert not name_exists("recpipe.no_such_module", "x")
    assert name_exists("tests.conftest", "make_config")
