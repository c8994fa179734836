"""The interface of a TRUE click model: what oracle evaluation (:mod:`recpipe.evaluation.oracle`)
needs from a data source whose click probabilities are known.

Evaluation only sees this protocol; the synthetic generator provides the implementation
(``recpipe.datasets.synthetic:SyntheticClickModel``), built by the caller that knows the data
source (the evaluate stage), so that evaluation never imports the generator.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class ClickModel(Protocol):
    """True click probabilities of (user, item, position, time), user ids as the source wrote them
    (before ingest's pseudonymization)."""

    def user_ids(self) -> Sequence[str]:
        """Every (raw) user id of the model."""
        ...

    def bot_ids(self) -> Collection[str]:
        """The (raw) ids of the users that are bots (left out of evaluation)."""
        ...

    def click_probability(
        self,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        positions: npt.ArrayLike,
        ts_ms: npt.ArrayLike,
    ) -> FloatArray:
        """Per-row click probability: raw user id, item id, 0-based position, epoch milliseconds."""
        ...
