"""The synthetic generator's true click model for arbitrary (user, item, position, time)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from recpipe.datasets.synthetic import generate, load_world, true_click_probability

pytestmark = pytest.mark.unit


def test_reproduces_the_ground_truth_of_shown_impressions(tmp_path):
    generate(tmp_path, events=3_000, seed=5, days=3)
    gt = pq.read_table(tmp_path / "ground_truth.parquet").to_pandas()
    ts = gt["ts"].to_numpy(dtype="datetime64[ms]")
    p = true_click_probability(tmp_path, gt["user_id"], gt["item_id"], gt["position"], ts)
    np.testing.assert_allclose(p, gt["p_click"].to_numpy(), rtol=1e-12, atol=1e-15)
    world = load_world(tmp_path)
    # lower positions never have a higher probability; unknown ids fail loudly
    u, i = gt["user_id"].iloc[0], gt["item_id"].iloc[0]
    p_pos = true_click_probability(world, [u] * 3, [i] * 3, [0, 3, 9], ts[0])
    assert p_pos[0] >= p_pos[1] >= p_pos[2]
    with pytest.raises(KeyError, match="not a user"):
        true_click_probability(world, ["nobody"], [i], [0], ts[0])
