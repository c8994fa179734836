"""Serving with side inputs once per distinct item and user (recpipe.model.grouped and
ModelScorer.score_sides) gives the plain forward pass's scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recpipe.model.inputs import to_model_inputs
from tests.support.model_examples import synthetic_examples, synthetic_spec

pytestmark = pytest.mark.unit

SIDES = {
    "item_id": "item",
    "category": "item",
    "item_ctr": "item",
    "text_vec": "item",
    "user_id": "user",
    "device": "user",
    "last_items": "user",
    "position": "row",
}


def serving_shaped(rows: int = 3000, seed: int = 3) -> pd.DataFrame:
    """Synthetic examples where, as in the serving frame, an item's inputs are one value per item
    and a user's one value per user (their first row's)."""
    df = synthetic_examples(rows=rows, seed=seed, users=60, items=400)
    for key, side in (("item_id", "item"), ("user_id", "user")):
        cols = [c for c, s in SIDES.items() if s == side and c != key]
        first = df.groupby(key)[cols].first()
        df[cols] = first.loc[df[key]].to_numpy()
    return df.sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)


def side_inputs(df: pd.DataFrame, spec):
    idx = {}
    x = {}
    for key, side in (("item_id", "item"), ("user_id", "user")):
        codes, uniques = pd.factorize(df[key])
        first = np.unique(codes, return_index=True)[1]
        cols = [c for c, s in SIDES.items() if s == side]
        x[side] = to_model_inputs(df.iloc[first], spec.without([c for c in spec.columns if c not in cols]))
        idx[side] = codes
    x["row"] = to_model_inputs(df, spec.without([c for c in spec.columns if SIDES[c] != "row"]))
    return x, idx


@pytest.mark.parametrize("factory", ["dcn", "deepfm", "din"])
def test_side_inputs_once_per_item_and_user_give_the_plain_forward_pass(factory):
    # given a fitted model and a serving-shaped batch (two users share items)
    from recpipe.model.grouped import GroupedModel
    from recpipe.model.models import build_model

    spec = synthetic_spec()
    df = serving_shaped()
    model = build_model(factory, spec, deep_units=(16, 8))
    model.compile("adam", "binary_crossentropy")
    x_all = to_model_inputs(df, spec)
    model.fit(x_all, df["label"].to_numpy(np.float32), batch_size=64, epochs=1, steps_per_epoch=5, verbose=0)
    # when it scores the distinct items and users' inputs and the rows' own
    x, idx = side_inputs(df, spec)
    assert len(x["item"]["item_id"]) < len(df) / 4 and len(x["user"]["user_id"]) == 60
    got = GroupedModel(model, SIDES).predict(x, idx)
    # then every row's score is the plain forward pass's, on a second batch shape too
    want = model.predict_on_batch(x_all)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    part = df.iloc[:700].reset_index(drop=True)
    x2, idx2 = side_inputs(part, spec)
    np.testing.assert_allclose(
        GroupedModel(model, SIDES).predict(x2, idx2),
        model.predict_on_batch(to_model_inputs(part, spec)),
        atol=1e-6,
    )


def test_unknown_side_is_refused():
    from recpipe.model.grouped import GroupedModel
    from recpipe.model.models import build_model

    with pytest.raises(ValueError, match="unknown input sides \\['items'\\]"):
        GroupedModel(build_model("dcn", synthetic_spec()), {"item_id": "items"})


def test_scorer_side_scores_equal_its_row_scores_and_a_varying_side_input_is_named(monkeypatch):
    # given the scorer with the synthetic spec's inputs assigned to sides as above
    from recpipe.examples import inputs as E
    from recpipe.model.models import build_model
    from recpipe.scoring import scorers

    monkeypatch.setattr(E, "serving_side", lambda c: SIDES.get(c, "row"))
    spec = synthetic_spec()
    scorer = scorers.ModelScorer(build_model("dcn", spec), spec, "t1")
    df = serving_shaped(rows=2000, seed=4)
    # when a serving batch is scored per side, the item table's vectors added to distinct items
    vectors = df.groupby("item_id")["text_vec"].first()
    rows = pa.Table.from_pandas(df.drop(columns=["text_vec"]), preserve_index=False)

    def add_vectors(items: pa.Table) -> pa.Table:
        ids = items.column("item_id").to_pylist()
        return items.append_column(
            "text_vec", pa.array([list(vectors[i]) for i in ids], pa.list_(pa.float32()))
        )

    got = scorer.score_sides(rows, add_vectors)
    # then it equals the whole model over every row with the vectors joined
    np.testing.assert_allclose(got, scorer.score(df), rtol=1e-5, atol=1e-6)
    # and an item input that varies within an item is named, not averaged away
    bad = df.copy()
    bad.loc[1, "item_ctr"] = bad.loc[1, "item_ctr"] + 0.5
    other = bad.index[(bad["item_id"] == bad.loc[1, "item_id"]) & (bad.index != 1)]
    assert len(other)  # the item has another row
    with pytest.raises(
        ValueError, match=f"serving input 'item_ctr' is on the item side .* item '{bad.loc[1, 'item_id']}'"
    ):
        scorer.score_sides(pa.Table.from_pandas(bad, preserve_index=False))


def test_serving_sides_of_the_pipeline_inputs():
    from recpipe.examples.inputs import serving_side

    item = [
        "item_id",
        "category",
        "subcategory",
        "item_age_hours",
        "item_ctr_28d",
        "item_trend",
        "item_text_vec",
    ]
    user = [
        "user_id",
        "device",
        "country",
        "user_clicks_7d",
        "user_hours_since_last_click",
        "user_last_items",
    ]
    row = [
        "position",
        "user_category_share",
        "user_category_ctr",
        "user_text_affinity",
        "user_hours_since_category_click",
    ]
    assert [serving_side(c) for c in item + user + row] == ["item"] * 7 + ["user"] * 6 + ["row"] * 5
