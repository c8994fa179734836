"""CTR model factories (DCN-v2, DeepFM, DIN-style target attention) built from a FeatureSpec
(conventions.md #10).

Every model takes the dict produced by :func:`recpipe.model.inputs.to_model_inputs` (one named input
per ``spec.columns`` entry) and outputs the click probability (sigmoid). Strings are hashed or looked
up inside the model, so unseen ids and out-of-vocabulary values never fail at scoring time.

Keras is the Keras 2 API of ``tf_keras`` (``TF_USE_LEGACY_KERAS=1``); custom layers are registered
under the ``recpipe`` package so ``load_model`` finds them once this module is imported.

Under the ``mixed_float16`` policy (``train.precision``) the layers compute in float16, except the
output: the final logit and the sigmoid are float32 layers (``dtype="float32"``), so the click
probability and the loss stay float32. Under the default float32 policy that changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from recpipe.config import TrainConfig  # noqa: E402
from recpipe.features.spec import FeatureSpec  # noqa: E402
from recpipe.model.inputs import PAD  # noqa: E402  (one padding token for inputs and masking)

__all__ = [
    "CrossLayer",
    "FMInteraction",
    "Log1p",
    "MaskedMeanPooling",
    "TargetAttentionPooling",
    "build_dcn",
    "build_deepfm",
    "build_din",
    "build_model",
    "custom_objects",
    "load_model",
]

# Sequence padding value written by ``to_model_inputs`` (never a real id).


@keras.saving.register_keras_serializable(package="recpipe")
class CrossLayer(keras.layers.Layer):  # type: ignore[misc, unused-ignore]  # Keras has no stubs
    """One full-rank DCN-v2 cross layer: ``x_{l+1} = x0 * (W x_l + b) + x_l``."""

    def __init__(self, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.l2 = l2

    def build(self, input_shape: Any) -> None:
        dim = int(input_shape[0][-1])
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        self.dense = keras.layers.Dense(dim, kernel_regularizer=reg, name="w")
        self.dense.build((None, dim))
        super().build(input_shape)

    def call(self, inputs: Any) -> tf.Tensor:
        x0, xl = inputs
        return x0 * self.dense(xl) + xl

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="recpipe")
class MaskedMeanPooling(keras.layers.Layer):  # type: ignore[misc, unused-ignore]
    """Mean of the embeddings of the non-padding positions of a sequence (zeros when empty)."""

    def call(self, inputs: Any) -> tf.Tensor:
        emb, ids = inputs  # (b, L, d), (b, L) strings
        mask = tf.cast(tf.not_equal(ids, PAD), emb.dtype)[..., None]
        total = tf.reduce_sum(emb * mask, axis=1)
        count = tf.reduce_sum(mask, axis=1)
        return tf.math.divide_no_nan(total, count)


@keras.saving.register_keras_serializable(package="recpipe")
class TargetAttentionPooling(keras.layers.Layer):  # type: ignore[misc, unused-ignore]
    """DIN-style target attention: the history embeddings weighted by their relevance to the
    candidate (Zhou et al., "Deep Interest Network", KDD 2018).

    Each history item ``h_j`` gets the score ``MLP([h_j, c, h_j * c, h_j - c])`` against the
    candidate ``c``; the weights are a softmax over the non-padding positions (zeros for an empty
    history), and the output is ``sum_j a_j h_j``. A softmax (not DIN's raw weights) keeps the
    output on the scale of one embedding whatever the history length; the length itself reaches
    the model through the activity counts.
    """

    def __init__(self, units: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, activation="relu", name="att_hidden")
        self.score = keras.layers.Dense(1, name="att_score")

    def call(self, inputs: Any) -> tf.Tensor:
        hist, cand, ids = inputs  # (b, L, d), (b, d), (b, L) strings
        c = tf.broadcast_to(cand[:, None, :], tf.shape(hist))
        logits = self.score(self.hidden(tf.concat([hist, c, hist * c, hist - c], axis=-1)))[..., 0]
        real = tf.not_equal(ids, PAD)
        logits = tf.where(real, logits, tf.cast(-1e4, logits.dtype))  # -1e4: float16-safe
        weights = tf.nn.softmax(logits, axis=-1) * tf.cast(real, logits.dtype)
        return tf.reduce_sum(hist * weights[..., None], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="recpipe")
class Log1p(keras.layers.Layer):  # type: ignore[misc, unused-ignore]
    """``log(1 + max(x, 0))``: the ``log1p`` transform of :class:`~recpipe.features.spec.DenseFeature`."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.log1p(tf.maximum(x, 0.0))


@keras.saving.register_keras_serializable(package="recpipe")
class FMInteraction(keras.layers.Layer):  # type: ignore[misc, unused-ignore]
    """Second-order factorization-machine term: ``0.5 * sum_k((sum_i v_ik)^2 - sum_i v_ik^2)``."""

    def call(self, fields: tf.Tensor) -> tf.Tensor:  # (b, F, k)
        square_of_sum = tf.square(tf.reduce_sum(fields, axis=1))
        sum_of_square = tf.reduce_sum(tf.square(fields), axis=1)
        return 0.5 * tf.reduce_sum(square_of_sum - sum_of_square, axis=1, keepdims=True)


def custom_objects() -> dict[str, type]:
    return {
        "CrossLayer": CrossLayer,
        "MaskedMeanPooling": MaskedMeanPooling,
        "FMInteraction": FMInteraction,
        "Log1p": Log1p,
        "TargetAttentionPooling": TargetAttentionPooling,
    }


def _inputs(spec: FeatureSpec) -> dict[str, keras.Input]:
    """One named Keras input per spec column (shapes/dtypes match ``to_model_inputs``)."""
    out: dict[str, keras.Input] = {}
    for f in spec.hashed + spec.categorical:
        out[f.name] = keras.Input(shape=(1,), dtype=tf.string, name=f.name)
    for d in spec.dense:
        out[d.name] = keras.Input(shape=(1,), dtype=tf.float32, name=d.name)
    for v in spec.vectors:
        out[v.name] = keras.Input(shape=(v.dim,), dtype=tf.float32, name=v.name)
    for s in spec.sequences:
        out[s.name] = keras.Input(shape=(s.max_len,), dtype=tf.string, name=s.name)
    for t in spec.tokens:
        out[t.name] = keras.Input(shape=(t.max_len,), dtype=tf.string, name=t.name)
    return out


def _field_vectors(
    spec: FeatureSpec, inputs: dict[str, Any], l2: float, vector_dim: int = 0, attention_units: int = 0
) -> list[tuple[str, tf.Tensor]]:
    """Per-feature vectors: embeddings, standardized dense values, vectors (projected to
    ``vector_dim`` when > 0), pooled sequences: their mean, or with ``attention_units`` > 0 the
    candidate item's target attention over them (:class:`TargetAttentionPooling`)."""
    reg = keras.regularizers.L2(l2) if l2 else None
    fields: list[tuple[str, tf.Tensor]] = []
    hashers: dict[str, keras.layers.Layer] = {}
    embeddings: dict[str, keras.layers.Layer] = {}
    for f in spec.hashed:
        hashers[f.name] = keras.layers.Hashing(num_bins=f.buckets, name=f"hash_{f.name}")
        embeddings[f.name] = keras.layers.Embedding(
            f.buckets, f.embedding_dim, embeddings_regularizer=reg, name=f"emb_{f.name}"
        )
        idx = hashers[f.name](inputs[f.name])
        fields.append((f.name, keras.layers.Flatten(name=f"flat_{f.name}")(embeddings[f.name](idx))))
    for c in spec.categorical:
        vocab = list(c.vocabulary) or ["<empty>"]
        lookup = keras.layers.StringLookup(
            vocabulary=vocab, num_oov_indices=1, mask_token=None, name=f"lookup_{c.name}"
        )
        emb = keras.layers.Embedding(len(vocab) + 1, c.embedding_dim, name=f"emb_{c.name}")
        fields.append((c.name, keras.layers.Flatten(name=f"flat_{c.name}")(emb(lookup(inputs[c.name])))))
    for d in spec.dense:
        std = d.std if d.std and d.std > 0 else 1.0
        x = inputs[d.name]
        if d.transform == "log1p":
            x = Log1p(name=f"log1p_{d.name}")(x)
        norm = keras.layers.Normalization(mean=d.mean, variance=std * std, name=f"norm_{d.name}")
        fields.append((d.name, norm(x)))
    for vf in spec.vectors:
        v = inputs[vf.name]
        if vector_dim:
            # A wide sparse vector (e.g. 256 TF-IDF dims) fed raw into the cross layers lets the
            # model memorize items; a small linear projection keeps what generalizes.
            v = keras.layers.Dense(
                vector_dim, use_bias=False, kernel_regularizer=reg, name=f"proj_{vf.name}"
            )(v)
        fields.append((vf.name, v))
    for s in spec.sequences:
        item = next((h for h in spec.hashed if h.name == s.item_feature), None)
        if item is None:
            raise ValueError(
                f"sequence feature {s.name!r} refers to item feature {s.item_feature!r}, "
                f"which is not a hashed feature of the spec"
            )
        # Same hashing and (shared) embedding table as the item id: a history item and a
        # candidate item with the same id land in the same row.
        idx = hashers[item.name](inputs[s.name])
        emb = embeddings[item.name](idx)
        if attention_units:
            cand = dict(fields)[item.name]  # the candidate's embedding (same table)
            pool = TargetAttentionPooling(attention_units, name=f"attend_{s.name}")
            fields.append((s.name, pool([emb, cand, inputs[s.name]])))
        else:
            fields.append((s.name, MaskedMeanPooling(name=f"pool_{s.name}")([emb, inputs[s.name]])))
    for t in spec.tokens:
        # Words hashed into an embedding of their own and mean-pooled over the non-padding ones:
        # a text vector learned from the clicks (zeros for an item without text).
        idx = keras.layers.Hashing(num_bins=t.buckets, name=f"hash_{t.name}")(inputs[t.name])
        emb = keras.layers.Embedding(
            t.buckets, t.embedding_dim, embeddings_regularizer=reg, name=f"emb_{t.name}"
        )(idx)
        fields.append((t.name, MaskedMeanPooling(name=f"pool_{t.name}")([emb, inputs[t.name]])))
    if not fields:
        raise ValueError("feature spec has no input features")
    return fields


def _check_args(deep_units: Sequence[int], dropout: float, l2: float, **counts: int) -> None:
    bad = [u for u in deep_units if int(u) < 1]
    if bad:
        raise ValueError(f"train.deep_units must be positive layer widths, got {list(deep_units)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"train.dropout must be in [0, 1), got {dropout}")
    if l2 < 0:
        raise ValueError(f"train.l2 must be >= 0, got {l2}")
    for k, v in counts.items():
        if int(v) < 0 or (k == "fm_dim" and int(v) < 1):
            raise ValueError(f"train.{k} must be {'>= 1' if k == 'fm_dim' else '>= 0'}, got {v}")


def _mlp(x: tf.Tensor, units: tuple[int, ...], dropout: float, prefix: str) -> tf.Tensor:
    for i, u in enumerate(units):
        x = keras.layers.Dense(u, activation="relu", name=f"{prefix}_dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout_{i}")(x)
    return x


# The factories' model-shape defaults are the train config's (``train.*`` keys), set only there:
# :func:`recpipe.model.train.model_kwargs_from_config` passes each factory the config value of each
# of its keyword-only arguments that is a ``train`` key.
_TRAIN = TrainConfig()


def _cross_deep(
    spec: FeatureSpec,
    *,
    cross_layers: int,
    deep_units: Sequence[int],
    dropout: float,
    l2: float,
    vector_dim: int,
    attention_units: int,
    name: str,
) -> keras.Model:
    """DCN-v2 (parallel): full-rank cross network and a deep tower over the same ``x0``; the
    history is mean-pooled, or attended to by the candidate with ``attention_units`` > 0."""
    _check_args(
        deep_units,
        dropout,
        l2,
        cross_layers=cross_layers,
        vector_dim=vector_dim,
        attention_units=attention_units,
    )
    inputs = _inputs(spec)
    fields = _field_vectors(spec, inputs, l2, vector_dim, attention_units)
    x0 = keras.layers.Concatenate(name="x0")([v for _, v in fields]) if len(fields) > 1 else fields[0][1]
    xl = x0
    for i in range(cross_layers):
        xl = CrossLayer(l2=l2, name=f"cross_{i}")([x0, xl])
    deep = _mlp(x0, tuple(deep_units), dropout, "deep")
    both = keras.layers.Concatenate(name="cross_deep")([xl, deep])
    # float32 under mixed precision too: the logit and the sigmoid (module docstring).
    out = keras.layers.Dense(1, activation="sigmoid", name="p_click", dtype="float32")(both)
    return keras.Model(inputs=inputs, outputs=out, name=name)


def build_dcn(
    spec: FeatureSpec,
    *,
    cross_layers: int = _TRAIN.cross_layers,
    deep_units: Sequence[int] = tuple(_TRAIN.deep_units),
    dropout: float = _TRAIN.dropout,
    l2: float = _TRAIN.l2,
    vector_dim: int = _TRAIN.vector_dim,
) -> keras.Model:
    """DCN-v2 (parallel): full-rank cross network and a deep tower over the same ``x0``; the
    history is mean-pooled."""
    return _cross_deep(
        spec,
        cross_layers=cross_layers,
        deep_units=deep_units,
        dropout=dropout,
        l2=l2,
        vector_dim=vector_dim,
        attention_units=0,
        name="dcn_v2",
    )


def build_din(
    spec: FeatureSpec,
    *,
    attention_units: int = _TRAIN.attention_units,
    cross_layers: int = _TRAIN.cross_layers,
    deep_units: Sequence[int] = tuple(_TRAIN.deep_units),
    dropout: float = _TRAIN.dropout,
    l2: float = _TRAIN.l2,
    vector_dim: int = _TRAIN.vector_dim,
) -> keras.Model:
    """DIN-style: the candidate's target attention over the clicked-item history
    (:class:`TargetAttentionPooling`) instead of its mean, with DCN-v2's cross and deep towers on
    top. Needs a sequence feature (the history); without one it is DCN-v2."""
    if attention_units < 1:
        raise ValueError(f"train.attention_units must be >= 1, got {attention_units}")
    return _cross_deep(
        spec,
        cross_layers=cross_layers,
        deep_units=deep_units,
        dropout=dropout,
        l2=l2,
        vector_dim=vector_dim,
        attention_units=attention_units,
        name="din",
    )


def build_deepfm(
    spec: FeatureSpec,
    *,
    fm_dim: int = _TRAIN.fm_dim,
    deep_units: Sequence[int] = tuple(_TRAIN.deep_units),
    dropout: float = _TRAIN.dropout,
    l2: float = _TRAIN.l2,
    vector_dim: int = _TRAIN.vector_dim,
) -> keras.Model:
    """DeepFM: linear + FM pairwise interactions over per-field ``fm_dim`` vectors + deep tower."""
    _check_args(deep_units, dropout, l2, fm_dim=fm_dim, vector_dim=vector_dim)
    inputs = _inputs(spec)
    fields = _field_vectors(spec, inputs, l2, vector_dim)
    projected = []
    for name, v in fields:
        if v.shape[-1] != fm_dim:
            v = keras.layers.Dense(fm_dim, use_bias=False, name=f"fm_proj_{name}")(v)
        projected.append(keras.layers.Reshape((1, fm_dim), name=f"fm_field_{name}")(v))
    stacked = (
        keras.layers.Concatenate(axis=1, name="fm_fields")(projected) if len(projected) > 1 else projected[0]
    )
    flat = keras.layers.Concatenate(name="x0")([v for _, v in fields]) if len(fields) > 1 else fields[0][1]
    linear = keras.layers.Dense(1, name="linear")(flat)
    fm = FMInteraction(name="fm")(stacked)
    deep = keras.layers.Dense(1, name="deep_logit")(
        _mlp(keras.layers.Flatten(name="fm_flat")(stacked), tuple(deep_units), dropout, "deep")
    )
    # float32 under mixed precision too: the logit and the sigmoid (module docstring).
    logit = keras.layers.Add(name="logit", dtype="float32")([linear, fm, deep])
    out = keras.layers.Activation("sigmoid", name="p_click", dtype="float32")(logit)
    return keras.Model(inputs=inputs, outputs=out, name="deepfm")


FACTORIES: dict[str, Callable[..., keras.Model]] = {
    "dcn": build_dcn,
    "deepfm": build_deepfm,
    "din": build_din,
}


def build_model(name: str, spec: FeatureSpec, **kwargs: Any) -> keras.Model:
    """The factory named by ``train.model`` in the config."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(FACTORIES)}") from None
    return factory(spec, **kwargs)


def load_model(path: str) -> keras.Model:
    """Load a model saved with ``model.save(path)`` (``.keras``), custom layers included."""
    return keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
