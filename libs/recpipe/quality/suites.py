"""Suites shared by more than one stage (the stages' own suites live beside their tables, e.g.
:func:`recpipe.features.build.item_feature_checks`)."""

from __future__ import annotations

import datetime as dt

from recpipe import constants as C
from recpipe.quality.report import Check


def silver_events_checks(
    allowed_event_types: list[str], min_ts: dt.datetime, max_ts: dt.datetime
) -> list[Check]:
    required = [C.EVENT_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_TS, C.EVENT_DATE, C.BATCH_ID]
    checks = [Check("ExpectColumnValuesToBeUnique", {"column": C.EVENT_ID})]
    checks += [Check("ExpectColumnValuesToNotBeNull", {"column": c}) for c in required]
    checks += [
        Check("ExpectColumnValuesToBeInSet", {"column": C.EVENT_TYPE, "value_set": allowed_event_types}),
        Check(
            "ExpectColumnValuesToBeBetween", {"column": C.EVENT_TS, "min_value": min_ts, "max_value": max_ts}
        ),
        Check("ExpectColumnValuesToBeBetween", {"column": C.POSITION, "min_value": 0}),
        Check("ExpectColumnValuesToBeBetween", {"column": C.DWELL_MS, "min_value": 0}),
        Check(
            "ExpectColumnValuesToBeBetween",
            {"column": C.PROPENSITY, "min_value": 0, "max_value": 1, "strict_min": True},
        ),
        Check("ExpectColumnValueLengthsToEqual", {"column": C.USER_ID, "value": 34}),
        # Informational: a sudden shift in the click share is worth a look, not a stop.
        Check("ExpectTableRowCountToBeBetween", {"min_value": 1}, critical=False),
    ]
    return checks
