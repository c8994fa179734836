"""The generator's true click model behind evaluation's interface
(``recpipe.evaluation.truth:ClickModel``): the world of a generated data set, loaded on first use."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy.typing as npt

from .common import Array
from .world import SyntheticWorld, load_world, true_click_probability


class SyntheticClickModel:
    """The true click model of the data that ``recpipe generate`` wrote to ``raw_dir`` (its world is
    rebuilt from ``raw_dir/manifest.json`` when first needed), or of a given ``world``."""

    def __init__(self, raw_dir: str | Path | None = None, world: SyntheticWorld | None = None) -> None:
        if (raw_dir is None) == (world is None):
            raise ValueError("SyntheticClickModel needs exactly one of raw_dir and world")
        self._raw_dir = raw_dir
        self._world = world

    @classmethod
    def of_raw_dir(cls, raw_dir: str | Path) -> SyntheticClickModel | None:
        """The model of generator output in ``raw_dir``; ``None`` without its ``manifest.json``."""
        return cls(raw_dir) if (Path(raw_dir) / "manifest.json").exists() else None

    @functools.cached_property
    def world(self) -> SyntheticWorld:
        return self._world if self._world is not None else load_world(self._raw_dir)

    def user_ids(self) -> list[str]:
        return [str(u) for u in self.world.user_ids.tolist()]

    def bot_ids(self) -> set[str]:
        return {str(u) for u in self.world.user_ids[self.world.is_bot].tolist()}

    def click_probability(
        self,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        positions: npt.ArrayLike,
        ts_ms: npt.ArrayLike,
    ) -> Array:
        return true_click_probability(self.world, user_ids, item_ids, positions, ts_ms)
