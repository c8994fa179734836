"""Model factories, the input conversion, sharding and metric helpers on tiny synthetic data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recpipe.model.data import Shard, read_split, shard_range, snapshot_files
from recpipe.model.inputs import labels, to_model_inputs
from recpipe.model.registry import decide_status
from recpipe.model.train import auc_from_histograms, metric_sums, metrics_from_sums
from tests.support.model_examples import synthetic_examples, synthetic_spec

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def data():
    df = synthetic_examples(rows=600, seed=1)
    return df, synthetic_spec()


@pytest.mark.parametrize("factory", ["dcn", "deepfm", "din"])
def test_factory_fits_saves_and_reloads_with_same_predictions(data, factory, tmp_path):
    # given a model built from the spec
    from recpipe.model.models import build_model, load_model

    df, spec = data
    x, y = to_model_inputs(df, spec), labels(df, spec)
    model = build_model(factory, spec, deep_units=(16, 8))
    model.compile("adam", "binary_crossentropy")
    # when it is fitted for a few steps, saved and reloaded
    hist = model.fit(x, y, batch_size=64, epochs=1, steps_per_epoch=5, verbose=0)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = load_model(str(tmp_path / "m.keras"))
    after = reloaded.predict(x, verbose=0)
    # then training ran, outputs are probabilities and the reload predicts the same
    assert np.isfinite(hist.history["loss"][-1])
    assert before.shape == (len(df), 1)
    assert ((before > 0) & (before < 1)).all()
    np.testing.assert_allclose(before, after, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("factory", ["dcn", "deepfm", "din"])
def test_unseen_ids_missing_values_and_oov_never_fail(data, factory):
    from recpipe.model.models import build_model

    df, spec = data
    model = build_model(factory, spec, deep_units=(8,))
    odd = df.head(3).copy()
    odd["user_id"] = ["never-seen-user", None, ""]
    odd["item_id"] = ["new-item", "I99999", None]
    odd["category"] = ["not-a-category", None, "news"]
    odd["item_ctr"] = [None, np.nan, 0.5]
    odd["text_vec"] = [None, [1.0], [0.0] * 20]  # missing, short and long vectors
    odd["last_items"] = [None, [], ["x"] * 50]
    p = model.predict(to_model_inputs(odd, spec), verbose=0)
    assert p.shape == (3, 1) and np.isfinite(p).all()


def test_inputs_same_from_pandas_and_arrow_and_sequences_keep_last_k():
    spec = synthetic_spec(text_dim=3, last_k=2)
    df = pd.DataFrame(
        {
            "user_id": ["u1", None],
            "item_id": ["i1", "i2"],
            "category": ["news", "zzz"],
            "device": ["mobile", None],
            "item_ctr": [0.1, None],
            "position": [1, 2],
            "text_vec": [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0]],
            "last_items": [["a", "b", "c"], None],
            "label": [1, 0],
        }
    )
    a = to_model_inputs(df, spec)
    b = to_model_inputs(pa.Table.from_pandas(df), spec)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["user_id"].tolist() == [["u1"], [""]]
    assert a["last_items"].tolist() == [["b", "c"], ["", ""]]
    np.testing.assert_allclose(a["text_vec"], [[1, 2, 0], [1, 2, 3]])
    np.testing.assert_allclose(a["item_ctr"], [[0.1], [0.2]])  # missing -> the spec mean
    np.testing.assert_array_equal(labels(df, spec), [[1.0], [0.0]])


def test_fixed_length_vectors_take_the_contiguous_path_and_equal_the_gathered_ones():
    from recpipe.model import inputs as I

    rng = np.random.default_rng(4)
    dim = 6
    rows = [rng.normal(size=dim).astype(np.float32).tolist() for _ in range(9)]
    # a chunked column whose second chunk is a slice (offsets not starting at 0)
    whole = pa.array(rows, pa.list_(pa.float32()))
    col = pa.chunked_array([whole.slice(0, 4), whole.slice(4, 5)])
    fast = I._vectors(col, dim)
    assert fast.shape == (9, dim) and fast.dtype == np.float32
    assert np.array_equal(fast, np.array(rows, dtype=np.float32))
    # the same values through the gather (one row short of dim forces it): rows agree, the
    # short row is zero-padded
    short = [*rows[:8], rows[8][:-1]]
    slow = I._vectors(pa.chunked_array([pa.array(short, pa.list_(pa.float32()))]), dim)
    assert np.array_equal(slow[:8], fast[:8]) and slow[8, -1] == 0.0
    # a null value inside a full-length row: filled with 0 as before, not NaN
    holes = [*rows[:8], [None, *rows[8][1:]]]
    filled = I._vectors(pa.chunked_array([pa.array(holes, pa.list_(pa.float32()))]), dim)
    assert filled[8, 0] == 0.0 and np.array_equal(filled[8, 1:], fast[8, 1:])
    # a null row (no vector) and an empty column
    nulls = I._vectors(pa.chunked_array([pa.array([rows[0], None], pa.list_(pa.float32()))]), dim)
    assert np.array_equal(nulls[1], np.zeros(dim, np.float32))
    assert I._vectors(pa.chunked_array([pa.array([], pa.list_(pa.float32()))]), dim).shape == (0, dim)


def test_all_missing_columns_become_defaults(data):
    # the scorer fills columns candidates cannot know with None
    df, spec = data
    rows = df.head(4).assign(text_vec=None, last_items=None, item_ctr=None, device=None)
    x = to_model_inputs(rows, spec)
    np.testing.assert_array_equal(x["text_vec"], np.zeros((4, 8), np.float32))
    assert (x["last_items"] == "").all() and (x["device"] == "").all()
    np.testing.assert_allclose(x["item_ctr"], 0.2)


def test_missing_input_column_is_named(data):
    df, spec = data
    with pytest.raises(KeyError, match="last_items"):
        to_model_inputs(df.drop(columns=["last_items"]), spec)


def test_histogram_auc_matches_sklearn_and_sums_across_shards():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.3).astype(float)
    p = np.clip(0.3 + 0.2 * (y - 0.3) + rng.normal(0, 0.15, 5000), 0, 1)
    # two "ranks" with uneven shards: summed state == state of all rows
    total = metric_sums(y[:1234], p[:1234]) + metric_sums(y[1234:], p[1234:])
    m = metrics_from_sums(total)
    assert m["rows"] == 5000
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-3)
    ll = -(y * np.log(np.clip(p, 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-7, 1))).mean()
    assert m["logloss"] == pytest.approx(ll, rel=1e-6)
    assert auc_from_histograms(np.array([3.0, 0]), np.array([0.0, 0])) is None


def test_shard_ranges_are_disjoint_covering_and_balanced():
    for total in (0, 1, 7, 100, 101):
        for size in (1, 2, 3, 4):
            ranges = [shard_range(total, r, size) for r in range(size)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [e - s for s, e in ranges]
            assert max(sizes) - min(sizes) <= 1
            # padding every shard to ceil(total/size) rows covers the largest shard with at most
            # one padded row per rank, so every rank runs steps_per_epoch(target) steps
            target = -(-total // size)
            assert target == max(sizes) and target - min(sizes) <= 1


@pytest.mark.parametrize("partition_by", [["day"], None])
def test_files_written_before_a_column_was_added_read_it_as_null(tmp_path, partition_by):
    from deltalake import write_deltalake

    df = synthetic_examples(rows=60, seed=3)[["user_id", "item_id", "label", "split"]]
    df["day"] = np.repeat(["d1", "d2"], [30, 30])
    path = str(tmp_path / "ex")
    write_deltalake(path, df.iloc[:30], partition_by=partition_by)
    newer = df.iloc[30:].assign(item_trend=np.arange(30, dtype=float))
    write_deltalake(path, newer, partition_by=partition_by, mode="append", schema_mode="merge")
    got = read_split(path, None, "train", ["item_id", "item_trend"])
    trend = got["item_trend"].to_pylist()
    old_train = int((df.iloc[:30].split == "train").sum())
    assert got.num_rows == int((df.split == "train").sum())
    assert trend.count(None) == old_train
    assert sorted(t for t in trend if t is not None) == sorted(
        newer.loc[newer.split == "train", "item_trend"].tolist()
    )


@pytest.mark.parametrize("partition_by", [["split"], ["day"], None])
def test_row_shards_of_a_delta_snapshot(tmp_path, partition_by):
    from deltalake import write_deltalake

    df = synthetic_examples(rows=101, seed=2)[["user_id", "item_id", "label", "split"]]
    df["day"] = np.repeat(["d1", "d2", "d3"], [40, 40, 21])  # days mix splits within files
    path = str(tmp_path / "ex")
    # two commits -> several files; version 0 must still read only the first
    write_deltalake(path, df.iloc[:50], partition_by=partition_by)
    write_deltalake(path, df.iloc[50:], partition_by=partition_by, mode="append")
    n_train = int((df.split == "train").sum())
    assert sum(n for _, n in snapshot_files(path, None, "train")) == n_train
    assert sum(n for _, n in snapshot_files(path, 0, "train")) == int((df.iloc[:50].split == "train").sum())
    parts = [read_split(path, None, "train", ["user_id", "item_id"], r, 3) for r in range(3)]
    keys = [tuple(r) for t in parts for r in zip(t["user_id"].to_pylist(), t["item_id"].to_pylist())]
    full = read_split(path, None, "train", ["user_id", "item_id"])
    assert len(keys) == n_train == full.num_rows
    assert sorted(keys) == sorted(zip(full["user_id"].to_pylist(), full["item_id"].to_pylist()))
    # padded training shards have the same length on every rank
    spec = synthetic_spec()
    spec = type(spec)(label="label", hashed=spec.hashed)
    shards = [Shard.load(path, None, "train", spec, r, 3) for r in range(3)]
    assert len({s.rows for s in shards}) == 1
    assert sum(s.real_rows for s in shards) == n_train


def test_promotion_rule():
    assert decide_status(0.70, None, 0.005)[0] == "current"
    assert decide_status(0.696, 0.70, 0.005)[0] == "current"
    status, reason = decide_status(0.69, 0.70, 0.005)
    assert status == "rejected" and "0.6900 < current 0.7000" in reason
    assert decide_status(None, 0.7, 0.005)[0] == "rejected"


def test_baselines_popularity_and_oracle_from_ground_truth_file(tmp_path):
    from deltalake import write_deltalake

    from recpipe.model.train import _baselines

    df = synthetic_examples(rows=2000, seed=4)
    path = str(tmp_path / "ex")
    write_deltalake(path, df.drop(columns=["p_click_true", "text_vec", "last_items"]), partition_by=["split"])
    # without p_click_true in the examples, the oracle comes from the raw dir's ground truth
    gt = df.rename(columns={"p_click_true": "p_click"})[["request_id", "item_id", "p_click"]]
    (tmp_path / "raw").mkdir()
    gt.to_parquet(tmp_path / "raw" / "ground_truth.parquet")
    b = _baselines(path, 0, "label", 20.0, str(tmp_path / "raw"))
    assert 0.5 < b["popularity_auc"] < b["oracle_auc"] < 1
    assert "ground_truth.parquet" in b["oracle_source"]
    assert _baselines(path, 0, "label", 20.0, None)["oracle_auc"] is None


def test_log1p_dense_transform_is_applied_inside_the_model_before_standardizing():
    import dataclasses

    import tf_keras as keras

    from recpipe.features.spec import DenseFeature, FeatureSpec
    from recpipe.model.models import build_model

    # given a spec whose count feature is log1p-transformed with stats of the transformed values
    spec = dataclasses.replace(
        synthetic_spec(),
        dense=[DenseFeature("item_ctr", 0.2, 0.1), DenseFeature("clicks", 1.5, 0.5, "log1p")],
    )
    df = synthetic_examples(rows=4, seed=2).assign(clicks=[0, 3, 1000, -5])
    model = build_model("dcn", spec, deep_units=(4,))
    # when the standardized input of that feature is read out of the model
    norm = keras.Model(model.inputs, model.get_layer("norm_clicks").output)
    got = norm.predict(to_model_inputs(df, spec), verbose=0).ravel()
    # then it is (log1p(max(x, 0)) - mean) / std, also after a JSON round trip of the spec
    want = (np.log1p(np.maximum([0, 3, 1000, -5], 0)) - 1.5) / 0.5
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert FeatureSpec.from_json(spec.to_json()).dense[1].transform == "log1p"


def test_bad_transform_and_model_shape_are_refused_by_name():
    from recpipe.features.spec import DenseFeature
    from recpipe.model.models import build_model

    with pytest.raises(ValueError, match="'clicks'.*'sqrt'"):
        DenseFeature("clicks", transform="sqrt")
    with pytest.raises(ValueError, match="train.deep_units"):
        build_model("dcn", synthetic_spec(), deep_units=(8, 0))
    with pytest.raises(ValueError, match="train.dropout"):
        build_model("deepfm", synthetic_spec(), dropout=1.0)
    with pytest.raises(ValueError, match="train.fm_dim"):
        build_model("deepfm", synthetic_spec(), fm_dim=0)
    with pytest.raises(ValueError, match="train.attention_units"):
        build_model("din", synthetic_spec(), attention_units=0)


def test_target_attention_weighs_only_real_history_items_by_the_candidate():
    import tensorflow as tf

    from recpipe.model.inputs import PAD
    from recpipe.model.models import TargetAttentionPooling

    tf.random.set_seed(3)
    layer = TargetAttentionPooling(units=8)
    ids = tf.constant([["a", "b", PAD]])
    hist = tf.constant([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])
    cand = tf.constant([[1.0, 0.0]])
    # given a history of two items and a padded slot; when the candidate attends to it
    out = layer([hist, cand, ids]).numpy()[0]
    # then the output is a weighted mean of the two real items (weights sum to 1), the padded
    # slot's embedding is ignored, an empty history gives zeros and another candidate other weights
    assert out.sum() == pytest.approx(1.0, abs=1e-5) and (out >= 0).all()
    other_pad = layer([tf.constant([[[1.0, 0.0], [0.0, 1.0], [-5.0, 3.0]]]), cand, ids]).numpy()[0]
    np.testing.assert_allclose(out, other_pad, rtol=1e-6)
    empty = layer([hist, cand, tf.constant([[PAD, PAD, PAD]])]).numpy()[0]
    np.testing.assert_array_equal(empty, [0.0, 0.0])
    assert not np.allclose(layer([hist, tf.constant([[0.0, 3.0]]), ids]).numpy()[0], out)


def test_din_attends_with_the_candidate_item_embedding_and_config_selects_it():
    from recpipe.config import load_config
    from recpipe.model.models import build_model
    from recpipe.model.train import model_kwargs_from_config

    spec = synthetic_spec()
    model = build_model("din", spec, deep_units=(8,), attention_units=4)
    names = [layer.name for layer in model.layers]
    assert model.name == "din" and "attend_last_items" in names and "pool_last_items" not in names
    cfg = load_config("conf/local.yaml", ["train.model=din", "train.attention_units=16"])
    kwargs = model_kwargs_from_config(cfg.train)
    assert kwargs["attention_units"] == 16 and kwargs["cross_layers"] == cfg.train.cross_layers


def test_excluded_inputs_leave_the_spec_and_unknown_ones_are_named():
    from recpipe.config import load_config
    from recpipe.model.models import build_model

    spec = synthetic_spec()
    cfg = load_config("conf/local.yaml", ["train.exclude_inputs=[item_ctr, last_items]"])
    assert cfg.train.exclude_inputs == ["item_ctr", "last_items"]
    # given an ablation of a dense input and the history; then both leave the spec and the model
    out = spec.without(cfg.train.exclude_inputs)
    assert "item_ctr" not in out.columns and "last_items" not in out.columns
    assert set(spec.columns) - set(out.columns) == {"item_ctr", "last_items"}
    assert out.metadata["excluded_inputs"] == ["item_ctr", "last_items"]
    model = build_model("dcn", out, deep_units=(8,))
    assert "item_ctr" not in model.input_names and "last_items" not in model.input_names
    assert spec.without([]) == spec
    with pytest.raises(ValueError, match="train.exclude_inputs: 'nope' not among the model inputs"):
        spec.without(["nope"])


def test_the_config_lists_each_factorys_shape_keys():
    """TrainConfig's ``models`` metadata is the one list of each model's shape keys: it matches
    the factories' keyword-only arguments, and their defaults are the config's."""
    import dataclasses
    import inspect

    from recpipe.config import TrainConfig
    from recpipe.model.models import FACTORIES
    from recpipe.model.train import model_kwargs_from_config

    default = TrainConfig()
    for name, factory in FACTORIES.items():
        params = {
            p.name: p.default
            for p in inspect.signature(factory).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        kwargs = model_kwargs_from_config(dataclasses.replace(default, model=name))
        assert set(kwargs) == set(params), name
        for key, value in kwargs.items():
            assert list(params[key]) == value if isinstance(value, list) else params[key] == value, (
                name,
                key,
            )
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        model_kwargs_from_config(dataclasses.replace(default, model="nope"))


def test_token_input_learns_a_word_and_ignores_order_padding_and_words_past_max_len():
    # given a spec whose only inputs are a bag of words and a dense column that carries no signal,
    # and labels that depend only on whether the word "goal" is among an item's first 4 words
    import dataclasses

    from recpipe.features.spec import DenseFeature, FeatureSpec, TokenFeature
    from recpipe.model.models import build_model

    spec = FeatureSpec(
        label="label",
        dense=[DenseFeature("noise", 0.0, 1.0)],
        tokens=[TokenFeature("words", buckets=64, max_len=4, embedding_dim=4)],
    )
    rng = np.random.default_rng(0)
    vocab = ["cup", "vote", "rain", "film", "code", "song", "bank", "race"]
    rows = []
    for _ in range(1200):
        words = list(rng.choice(vocab, rng.integers(0, 4), replace=False))
        label = int(rng.random() < 0.5)
        if label:
            words.insert(int(rng.integers(0, len(words) + 1)), "goal")
        rows.append({"words": words, "noise": rng.normal(), "label": label})
    df = pd.DataFrame(rows)
    model = build_model("dcn", spec, deep_units=(8,), cross_layers=1)
    model.compile(keras_adam(0.05), "binary_crossentropy")
    # when it is trained on them
    model.fit(to_model_inputs(df, spec), labels(df, spec), batch_size=64, epochs=6, verbose=0)
    # then it separates the items by the word alone
    from sklearn.metrics import roc_auc_score

    p = model.predict(to_model_inputs(df, spec), verbose=0).reshape(-1)
    assert roc_auc_score(df["label"], p) > 0.95
    # and the same words in another order, a null list and an empty one, and a fifth word
    # (past max_len) all give what the pooled first four words give
    probe = pd.DataFrame(
        {
            "words": [["goal", "cup"], ["cup", "goal"], None, [], ["cup", "vote", "rain", "film", "goal"]],
            "noise": [0.0] * 5,
            "label": [0] * 5,
        }
    )
    x = to_model_inputs(probe, spec)
    assert x["words"].shape == (5, 4) and list(x["words"][4]) == ["cup", "vote", "rain", "film"]
    q = model.predict(x, verbose=0).reshape(-1)
    assert q[0] == pytest.approx(q[1], abs=1e-6) and q[2] == pytest.approx(q[3], abs=1e-6)
    assert q[0] > 0.8 and q[4] < 0.5  # "goal" at the fifth place is not read
    # and the spec round-trips through JSON; a spec written before token inputs loads without them
    assert FeatureSpec.from_json(spec.to_json()) == spec
    old = dataclasses.replace(spec, tokens=[])
    text = old.to_json().replace('"tokens": [],', "")
    assert '"tokens"' not in text and FeatureSpec.from_json(text).tokens == []


def keras_adam(lr):
    from recpipe.model.models import keras

    return keras.optimizers.Adam(lr)
