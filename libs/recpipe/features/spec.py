"""The feature spec: what the examples table holds, shared by the trainer and the scorer.

Written as JSON beside ``gold.training_examples`` (``<table path>/_feature_spec.json``, ignored by
Delta readers) and copied into every exported model, so training and scoring assemble features
with the same code and the same vocabularies/hash sizes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

DENSE_TRANSFORMS = ("none", "log1p")


@dataclass(frozen=True)
class HashedFeature:
    """A string id hashed into ``buckets`` embedding rows (unseen ids never fail)."""

    name: str
    buckets: int
    embedding_dim: int = 16


@dataclass(frozen=True)
class CategoricalFeature:
    """A string feature with a fixed vocabulary; out-of-vocabulary values map to index 0."""

    name: str
    vocabulary: list[str]
    embedding_dim: int = 8


@dataclass(frozen=True)
class DenseFeature:
    """A numeric feature, standardized with the training split's mean and std.

    ``transform`` is applied first, inside the model (so training and serving cannot differ):
    ``"log1p"`` for heavy-tailed counts and durations (``log(1 + max(x, 0))``), ``"none"``
    otherwise. ``mean``/``std`` are statistics of the transformed values.
    """

    name: str
    mean: float = 0.0
    std: float = 1.0
    transform: str = "none"

    def __post_init__(self) -> None:
        if self.transform not in DENSE_TRANSFORMS:
            raise ValueError(
                f"dense feature {self.name!r}: unknown transform {self.transform!r}; "
                f"expected one of {list(DENSE_TRANSFORMS)}"
            )


@dataclass(frozen=True)
class VectorFeature:
    """A fixed-length float vector (e.g. the item's TF-IDF / hashed text vector)."""

    name: str
    dim: int


@dataclass(frozen=True)
class SequenceFeature:
    """The user's last-k item ids (array<string>), hashed like ``item_feature`` and mean-pooled."""

    name: str
    max_len: int
    item_feature: str = "item_id"


@dataclass(frozen=True)
class TokenFeature:
    """A bag of words (array<string>, e.g. the item's title words): the first ``max_len`` hashed
    into ``buckets`` rows of an embedding of its own, learned with the model, and mean-pooled.
    Unseen words never fail and need no vocabulary refit."""

    name: str
    buckets: int
    max_len: int
    embedding_dim: int = 16


Feature = HashedFeature | CategoricalFeature | DenseFeature | VectorFeature | SequenceFeature | TokenFeature


@dataclass(frozen=True)
class FeatureSpec:
    label: str
    hashed: list[HashedFeature] = field(default_factory=list)
    categorical: list[CategoricalFeature] = field(default_factory=list)
    dense: list[DenseFeature] = field(default_factory=list)
    vectors: list[VectorFeature] = field(default_factory=list)
    sequences: list[SequenceFeature] = field(default_factory=list)
    tokens: list[TokenFeature] = field(default_factory=list)
    # Provenance: the examples table version the spec was computed from, hashing salt, etc.
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Every input column a model reads (label excluded)."""
        groups: list[Sequence[Feature]] = [
            self.hashed,
            self.categorical,
            self.dense,
            self.vectors,
            self.sequences,
            self.tokens,
        ]
        return [f.name for g in groups for f in g]

    def without(self, names: Sequence[str], setting: str = "train.exclude_inputs") -> FeatureSpec:
        """The spec without the inputs ``names`` (an ablation); an unknown name is an error that
        lists the spec's inputs."""
        unknown = sorted(set(names) - set(self.columns))
        if unknown:
            raise ValueError(
                f"{setting}: {', '.join(map(repr, unknown))} not among the model inputs "
                f"({', '.join(self.columns)})"
            )
        drop = set(names)
        return FeatureSpec(
            label=self.label,
            hashed=[f for f in self.hashed if f.name not in drop],
            categorical=[f for f in self.categorical if f.name not in drop],
            dense=[f for f in self.dense if f.name not in drop],
            vectors=[f for f in self.vectors if f.name not in drop],
            sequences=[f for f in self.sequences if f.name not in drop],
            tokens=[f for f in self.tokens if f.name not in drop],
            metadata={**self.metadata, "excluded_inputs": sorted(drop)} if drop else dict(self.metadata),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)  # config dates: ISO

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        d = json.loads(text)
        return cls(
            label=d["label"],
            hashed=[HashedFeature(**x) for x in d.get("hashed", [])],
            categorical=[CategoricalFeature(**x) for x in d.get("categorical", [])],
            dense=[DenseFeature(**x) for x in d.get("dense", [])],
            vectors=[VectorFeature(**x) for x in d.get("vectors", [])],
            sequences=[SequenceFeature(**x) for x in d.get("sequences", [])],
            tokens=[TokenFeature(**x) for x in d.get("tokens", [])],  # absent in older specs
            metadata=d.get("metadata", {}),
        )
