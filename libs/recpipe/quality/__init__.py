"""Quality gates: Great Expectations suites on Spark DataFrames, results to ``ops.data_quality``.

- :mod:`recpipe.quality.report`: a check, its result, a suite's report (and the gate's error);
- :mod:`recpipe.quality.gate`: running a suite (:func:`validate`) and recording it (:func:`record`);
- :mod:`recpipe.quality.suites`: suites more than one stage uses (``silver.events``').
"""

from __future__ import annotations

from recpipe.quality.gate import record, validate
from recpipe.quality.report import Check, CheckResult, QualityGateError, QualityReport
from recpipe.quality.suites import silver_events_checks

__all__ = [
    "Check",
    "CheckResult",
    "QualityGateError",
    "QualityReport",
    "record",
    "silver_events_checks",
    "validate",
]
