"""Issue 17: --quiet/--verbose on every command, py4j's resend traceback as (at most) one line,
one progress line per stage with counts and a rate."""

from __future__ import annotations

import argparse
import logging
import sys

import pytest

from recpipe.cli import _Py4jResend, _setup_logging, build_parser
from recpipe.stages.contract import progress_counts

pytestmark = pytest.mark.unit


def _subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return sorted(sub.choices)


# Arguments a subcommand requires besides the common ones.
REQUIRED = {
    "import": ["mind", "--source", "s", "--out", "o"],
    "forget": ["--user-id", "u"],
    "simulate": ["--days", "1"],
}


@pytest.mark.parametrize("flag", ["-q", "--quiet", "-v", "--verbose"])
def test_every_command_takes_quiet_and_verbose(flag):
    for cmd in _subcommands():
        ns = build_parser().parse_args([cmd, *REQUIRED.get(cmd, []), flag])
        assert (ns.quiet, ns.verbose) == ((True, False) if "q" in flag else (False, True)), cmd


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "-q", "-v"])
    assert "not allowed with" in capsys.readouterr().err


def test_quiet_turns_the_progress_bar_off_and_logs_warnings_only(monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    ns = build_parser().parse_args(["features", "-q", "--set", "lake.root=/x"])
    _setup_logging(ns)
    assert ns.overrides == ["lake.root=/x", "spark.show_progress=false"]
    assert logging.getLogger().level == logging.WARNING


def _py4j_record() -> logging.LogRecord:
    from py4j import java_gateway

    rec = logging.LogRecord(
        "root", logging.INFO, java_gateway.__file__, 1, "Exception while sending command.", (), None
    )
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        rec.exc_info = sys.exc_info()
    return rec


def test_py4j_resend_is_dropped_or_one_line():
    assert not _Py4jResend(verbose=False).filter(_py4j_record())
    rec = _py4j_record()
    assert _Py4jResend(verbose=True).filter(rec)
    assert rec.exc_info is None
    assert rec.getMessage() == (
        "py4j: Exception while sending command. ([Errno 104] Connection reset by peer); resent"
    )
    other = logging.LogRecord("recpipe", logging.INFO, __file__, 1, "kept", (), None)
    assert _Py4jResend(verbose=False).filter(other)


def test_progress_counts_give_counts_and_the_rate_of_the_work_count():
    counts = {"batches": 14, "input_records": 20000, "accepted": 19000}
    assert progress_counts(counts, 10.0) == (
        "; batches 14, input_records 20000, accepted 19000 (2000 input_records/s)"
    )
    assert progress_counts({"workers": 2}, 5.0) == "; workers 2"
    assert progress_counts({}, 5.0) == ""
