"""`recpipe tables`: every table of the lake with version, row count and last operation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from recpipe.lake import Lake


def describe_tables(lake: Lake) -> list[dict[str, Any]]:
    out = []
    for name in lake.list_tables():
        hist = lake.history(name, limit=1)
        last = hist[0] if hist else {}
        ts = last.get("timestamp")
        if isinstance(ts, (int, float)):
            ts = dt.datetime.fromtimestamp(ts / 1000, dt.UTC).isoformat(timespec="seconds")
        op = last.get("operation")
        custom = last.get("recpipe.operation") or (last.get("operationParameters") or {}).get("mode")
        out.append(
            {
                "table": name,
                "version": lake.version(name),
                "rows": lake.row_count(name),
                "last_operation": f"{op} ({custom})" if custom else op,
                "last_commit": str(ts),
                "path": lake.path(name),
            }
        )
    return out
