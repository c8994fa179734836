"""No window in libs/ pulls every row into one task (issue 17).

A window without ``partitionBy`` (``Window.orderBy(...)``, ``.over()``), or partitioned by a
literal (``Window.partitionBy(F.lit(1))``), makes Spark move the whole frame to one task and log
"No Partition Defined for Window operation". Global top-k is ``orderBy().limit()``
(``recpipe.candidates.sources.top_k`` with no groups); a global index is computed on an
aggregated frame.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LIBS = Path(__file__).resolve().parents[2] / "libs"

# SQL text: OVER () or OVER (ORDER BY ...) has no PARTITION BY.
_SQL_OVER = re.compile(r"\bOVER\s*\(\s*(\)|ORDER\s+BY|ROWS\s|RANGE\s)", re.IGNORECASE)
_FRAME_ONLY = {"orderBy", "rowsBetween", "rangeBetween"}


def _is_literal(node: ast.expr) -> bool:
    """A non-string constant (a string names a column), or a call to ``lit``/``F.lit``."""
    if isinstance(node, ast.Constant):
        return not isinstance(node.value, str)
    if isinstance(node, ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        return name == "lit"
    return False


def unpartitioned_windows(path: Path) -> list[str]:
    """``file:line: reason`` for each window spec in ``path`` with no (or a literal) partition."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _SQL_OVER.search(node.value):
                found.append((node.lineno, f"{path}:{node.lineno}: SQL window without PARTITION BY"))
            continue
        if isinstance(node, ast.Call) and any(
            isinstance(a, ast.List | ast.Tuple)
            and a.elts
            and all(isinstance(e, ast.Call) and _is_literal(e) for e in a.elts)
            for a in [*node.args, *(k.value for k in node.keywords)]
        ):  # e.g. top_k(df, [F.lit(1)], ...): a helper's window partitioned by a literal
            found.append((node.lineno, f"{path}:{node.lineno}: groups given as a list of literals"))
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        attr, recv = node.func.attr, node.func.value
        on_window = isinstance(recv, ast.Name) and recv.id == "Window"
        if on_window and attr in _FRAME_ONLY:
            found.append((node.lineno, f"{path}:{node.lineno}: Window.{attr}(...) without partitionBy"))
        elif attr == "partitionBy" and on_window and not node.args:
            found.append((node.lineno, f"{path}:{node.lineno}: Window.partitionBy() without columns"))
        elif attr == "partitionBy" and node.args and all(_is_literal(a) for a in node.args):
            found.append(
                (node.lineno, f"{path}:{node.lineno}: window partitioned by a literal (one partition)")
            )
        elif attr == "over" and not node.args and not node.keywords:
            found.append((node.lineno, f"{path}:{node.lineno}: .over() without a window spec"))
    return [hit for _, hit in sorted(found)]


def scan(root: Path) -> list[str]:
    return [hit for path in sorted(root.rglob("*.py")) for hit in unpartitioned_windows(path)]


def test_libs_have_no_unpartitioned_windows():
    found = scan(LIBS)
    assert not found, "windows that pull all rows into one task:\n" + "\n".join(found)


def test_scan_finds_planted_windows(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from pyspark.sql import Window\n"
        "from pyspark.sql import functions as F\n"
        "a = F.row_number().over(Window.orderBy('x'))\n"
        "b = Window.partitionBy(F.lit(1)).orderBy('x')\n"
        "c = Window.partitionBy()\n"
        "d = Window.rowsBetween(-1, 0)\n"
        "e = F.sum('x').over()\n"
        "f = 'SELECT row_number() OVER (ORDER BY x) FROM t'\n"
        "ok = Window.partitionBy('user_id').orderBy('x')\n"
        "ok2 = 'SELECT row_number() OVER (PARTITION BY u ORDER BY x) FROM t'\n"
        "g = top_k(df, [F.lit(1)], [F.desc('x')], 5)\n"
        "ok3 = top_k(df, [], [F.desc('x')], 5)\n"
    )
    found = scan(tmp_path)
    assert [int(hit.split(":")[1]) for hit in found] == [3, 4, 5, 6, 7, 8, 11], found
    assert all(hit.startswith(f"{planted}:") for hit in found)
