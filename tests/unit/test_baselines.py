"""The one popularity score (train summary, evaluate, LR baseline) and the synthetic true click
model behind evaluation's ``ClickModel`` interface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recpipe.evaluation.baselines import item_popularity, item_popularity_of_rows, popularity_auc

pytestmark = pytest.mark.unit


def test_popularity_is_the_smoothed_train_ctr_or_the_click_count():
    items = pd.Series(["a", "a", "a", "b", "b", "c"])
    labels = pd.Series([1, 1, 0, 0, 0, 1])
    rate = 3 / 6
    pop = item_popularity_of_rows(items, labels, prior_strength=2.0, clicks_only=False)
    got = pop.of(pd.Series(["a", "b", "c", "unseen"]))
    np.testing.assert_allclose(got, [(2 + 2 * rate) / 5, (0 + 2 * rate) / 4, (1 + 2 * rate) / 3, rate])
    # the same from per-item aggregates (as evaluate computes them in Spark)
    agg = item_popularity(
        pd.Series({"a": 2.0, "b": 0.0, "c": 1.0}),
        pd.Series({"a": 3, "b": 2, "c": 1}),
        prior_strength=2.0,
        clicks_only=False,
    )
    np.testing.assert_allclose(agg.of(pd.Series(["a", "b", "c", "unseen"])), got)
    # click-only: the train click count, 0 for an item without clicks in train
    clicks = item_popularity_of_rows(items, labels, prior_strength=2.0, clicks_only=True)
    np.testing.assert_allclose(clicks.of(pd.Series(["a", "b", "c", "unseen"])), [2, 0, 1, 0])
    assert popularity_auc([1, 0, 1, 0], pd.Series(["a", "b", "c", "unseen"]), pop) == pytest.approx(1.0)


def test_synthetic_click_model_is_the_generator_s(tmp_path):
    from recpipe.datasets.synthetic import SyntheticClickModel, generate, load_world, true_click_probability
    from recpipe.evaluation.truth import ClickModel

    assert SyntheticClickModel.of_raw_dir(tmp_path) is None  # no manifest.json
    generate(tmp_path, events=2_000, seed=3, days=2)
    model: ClickModel | None = SyntheticClickModel.of_raw_dir(tmp_path)
    assert model is not None
    world = load_world(tmp_path)
    assert list(model.user_ids()) == world.user_ids.tolist()
    assert set(model.bot_ids()) == set(world.user_ids[world.is_bot].tolist())
    users, items = world.user_ids[:3].tolist(), world.item_ids[:3]
    ts = np.int64(world.item_pub_ms.max()) + 3_600_000
    np.testing.assert_array_equal(
        model.click_probability(users, items, [0, 1, 2], ts),
        true_click_probability(world, users, items, [0, 1, 2], ts),
    )
