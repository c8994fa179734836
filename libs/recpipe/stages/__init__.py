"""The stage contract (ARCHITECTURE.md, "Daily operation"): every stage is one object.

- :mod:`recpipe.stages.base`: :class:`Stage`, :class:`StageContext`, :class:`StageResult`;
- :mod:`recpipe.stages.daily`: the six stages and their date plans for run date D (``STAGES``);
- :mod:`recpipe.stages.contract`: one attempt: pinned inputs, skip-if-done, one ``ops.runs`` row;
- :mod:`recpipe.stages.runner`: what the CLI, ``jobs/<stage>.py``, ``recpipe run`` (a day, a
  backfill over a date range, the backtest) and the deploy files call;
- :mod:`recpipe.stages.runs`: the ``ops.runs`` table; :mod:`recpipe.stages.status`: ``recpipe status``.
"""

from recpipe.stages.base import BACKTEST, DAILY, Stage, StageContext, StageError, StageResult

__all__ = ["BACKTEST", "DAILY", "Stage", "StageContext", "StageError", "StageResult"]
