"""Crash injection for the crash-and-rerun tests: ``RECPIPE_FAULT=stage:point[#n]``.

When the variable names the running stage and one of its points, the process ends itself the n-th
time (default: the first) it reaches that point, with ``os._exit(137)``: no ``finally`` blocks, no
atexit handlers, no Spark shutdown, as after ``kill -9``. The named points:

- ``write``:  the lake layer has written a commit's Parquet files and not committed them yet;
- ``commit``: a commit is in a table's Delta log (``commit#1`` of a stage that writes two tables
  dies between the two tables' commits);
- ``runs``:   the stage's commits are done and its ``ops.runs`` row is not written yet.

The stage is the one entered with :func:`stage` (the CLI enters the command's stage). With
``RECPIPE_FAULT_LOG=FILE`` every point reached is appended to FILE as ``stage:point#n detail``,
which is how a test lists the points of an uninterrupted run. Unset, a point is one dict lookup.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from collections.abc import Iterator

ENV = "RECPIPE_FAULT"
LOG_ENV = "RECPIPE_FAULT_LOG"
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL (128 + 9)
POINTS = ("write", "commit", "runs")

_stage: str | None = None
_hits: Counter[tuple[str, str]] = Counter()


def parse(spec: str) -> tuple[str, str, int]:
    """``"ingest:commit#2"`` -> ``("ingest", "commit", 2)``; a clear error for anything else."""
    target, _, nth = spec.strip().partition("#")
    stage_name, _, point_name = target.partition(":")
    if not stage_name or point_name not in POINTS or (nth and not nth.isdigit()) or nth == "0":
        raise ValueError(
            f"{ENV}={spec!r}: expected STAGE:POINT[#N] with POINT one of {', '.join(POINTS)} and N >= 1"
        )
    return stage_name, point_name, int(nth or 1)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Points reached inside the block belong to stage ``name`` (each stage counts from 1)."""
    global _stage
    _check()
    outer, _stage = _stage, name
    try:
        yield
    finally:
        _stage = outer


def enter(name: str) -> None:
    """Make ``name`` the current stage for the rest of the process (one command = one stage)."""
    global _stage
    _check()
    _stage = name


def _check() -> None:
    if os.environ.get(ENV):
        parse(os.environ[ENV])


def point(name: str, detail: str = "") -> None:
    """A named crash point; ends the process when ``RECPIPE_FAULT`` selects this hit of it."""
    spec, log_file = os.environ.get(ENV), os.environ.get(LOG_ENV)
    if not spec and not log_file:
        return
    current = _stage or "-"
    _hits[(current, name)] += 1
    n = _hits[(current, name)]
    hit = f"{current}:{name}#{n}"
    if log_file:
        with open(log_file, "a", encoding="utf-8") as fh:
            fh.write(f"{hit} {detail}\n")
    if spec and parse(spec) == (current, name, n):
        print(f"recpipe: fault injected at {hit} ({detail}): exiting with {EXIT_CODE}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_CODE)
