"""Serving a trained model with its item-side and user-side work done once per distinct item and
user of a batch instead of once per candidate row.

A batch of candidates holds a few hundred users with ~200 candidates each over a few thousand
distinct items. Most of a model's input work depends on one side only: hashing and embedding the
item id, its category and the words of its title, projecting its text vector, pooling the user's
history. :class:`GroupedModel` evaluates the trained Keras graph layer by layer (as Keras' own
functional call does) with every tensor tagged by what it is a function of: ``item``, ``user`` or
``row``. A layer whose inputs all belong to one side runs on that side's distinct rows; where
sides meet (the concatenation of all fields, a target attention) the side tensors are gathered to
the candidate rows first. Every layer of the models here works row by row at inference (no
batch statistics), so the result equals the plain forward pass (a test keeps them equal for each
model type); only the weights' inputs get smaller.

Which inputs belong to which side is the serving frame's knowledge
(:func:`recpipe.examples.inputs.serving_side`): a column is a side's only when the serving frame
derives it from that side's feature row alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf

ITEM, USER, ROW = "item", "user", "row"
SIDES = (ITEM, USER)


class GroupedModel:
    """``model`` (a functional tf-keras model) evaluated with side inputs given once per distinct
    item/user: ``predict(inputs, index)`` where ``inputs[side]`` holds that side's input arrays
    (one row per distinct item/user, or per candidate for ``row``) and ``index[side]`` maps each
    candidate row to its item/user row."""

    def __init__(self, model: Any, sides: Mapping[str, str]) -> None:
        unknown = sorted(set(sides.values()) - {ITEM, USER, ROW})
        if unknown:
            raise ValueError(f"unknown input sides {unknown}")
        self.model = model
        self.sides = {inp.name.split(":")[0]: sides.get(inp.name.split(":")[0], ROW) for inp in model.inputs}
        self._fn = tf.function(self._forward, reduce_retracing=True)

    def _forward(self, inputs: dict[str, dict[str, tf.Tensor]], index: dict[str, tf.Tensor]) -> tf.Tensor:
        model = self.model
        values: dict[str, tf.Tensor] = {}
        side_of: dict[str, str] = {}
        for ref in model.inputs:
            name = ref.name.split(":")[0]
            side = self.sides[name]
            values[str(id(ref))] = inputs[side][name]
            side_of[str(id(ref))] = side

        def as_rows(x_id: str) -> tf.Tensor:
            side = side_of[x_id]
            return values[x_id] if side == ROW else tf.gather(values[x_id], index[side])

        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                ids = list(node.flat_input_ids)
                sides = {side_of[i] for i in ids}
                side = sides.pop() if len(sides) == 1 else ROW
                uses = Counter(ids)
                args, kwargs = node.map_arguments(
                    {i: [values[i] if side != ROW else as_rows(i)] * k for i, k in uses.items()}
                )
                outputs = node.layer(*args, **kwargs)
                for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                    values[x_id] = y
                    side_of[x_id] = side
        (out,) = model.outputs
        return as_rows(str(id(out)))

    def predict(
        self, inputs: Mapping[str, Mapping[str, npt.NDArray[Any]]], index: Mapping[str, npt.NDArray[Any]]
    ) -> npt.NDArray[Any]:
        """Scores of the candidate rows (``len(index[...])`` of them), shape (rows, 1)."""
        x = {side: {k: tf.constant(v) for k, v in inputs.get(side, {}).items()} for side in (*SIDES, ROW)}
        idx = {side: tf.constant(np.asarray(index[side], dtype=np.int32)) for side in SIDES}
        return np.asarray(self._fn(x, idx))
