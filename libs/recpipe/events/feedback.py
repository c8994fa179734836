"""The source's feedback kind: ``impressions`` (shown items logged) or ``clicks_only`` (positives only).

``data.feedback`` declares it; ``auto`` detects it from ``silver.events`` (any non-history
impression makes it ``impressions``) and logs the decision. Stages branch on the kind, never on
whether a particular date happens to lack impressions.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final, Literal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C
from recpipe.config import Config
from recpipe.lake import Lake

log = logging.getLogger(__name__)

IMPRESSIONS: Final = "impressions"
CLICKS_ONLY: Final = "clicks_only"
# A resolved data.feedback (not "auto").
Feedback = Literal["impressions", "clicks_only"]


def detect_feedback(events: DataFrame) -> Feedback:
    """``impressions`` when ``events`` hold a non-history impression, else ``clicks_only``."""
    imps = events.where(
        (F.col(C.EVENT_TYPE) == "impression") & ~F.coalesce(F.col(C.IS_HISTORY), F.lit(False))
    )
    return IMPRESSIONS if imps.limit(1).count() else CLICKS_ONLY


def feedback_kind(cfg: Config, lake: Lake) -> Feedback:
    """The configured ``data.feedback``, or (``auto``) the kind detected from ``silver.events``."""
    if cfg.data.feedback != "auto":
        return cfg.data.feedback
    if not lake.exists(C.SILVER_EVENTS):
        raise RuntimeError(f"data.feedback is auto but {C.SILVER_EVENTS} does not exist: run ingest first")
    kind = detect_feedback(lake.read(C.SILVER_EVENTS))
    log.info("data.feedback auto: %s detected from %s", kind, C.SILVER_EVENTS)
    return kind


def with_feedback(cfg: Config, lake: Lake) -> Config:
    """``cfg`` with ``data.feedback`` resolved (``auto`` replaced by the detected kind)."""
    if cfg.data.feedback != "auto":
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, feedback=feedback_kind(cfg, lake)))


def is_clicks_only(cfg: Config) -> bool:
    """Whether a resolved config (:func:`with_feedback`) describes a click-only source."""
    if cfg.data.feedback == "auto":
        raise RuntimeError("data.feedback is still auto: resolve it with with_feedback(cfg, lake)")
    return cfg.data.feedback == CLICKS_ONLY
