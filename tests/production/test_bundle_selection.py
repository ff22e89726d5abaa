"""The bundle ships the out-of-fold selection's method, a single input included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segad.meta.brf import single_input_model
from segad.production.batch import score_images
from segad.production.bundle import load_bundle
from segad.production.bundle_selection import selected_members, selected_method
from segad.production.operating_point import choose_operating_point
from segad.production.writer import write_bundle

SELECTION = pd.DataFrame(
    {
        "dataset": ["demo"] * 3 + ["demo"],
        "benchmark": ["high_shot"] * 3 + ["one_class"],
        "category": ["c"] * 4,
        "method": ["padim", "padim+segad", "classifier", "padim+segad"],
        "chosen": [False, True, False, False],
    }
)


def test_the_chosen_row_of_the_regime_and_category_names_the_method():
    assert selected_method(SELECTION, "demo", "high_shot", "c") == "padim+segad"
    assert selected_method(SELECTION, "demo", "one_class", "c") is None  # nothing chosen there
    assert selected_method(SELECTION, "demo", "high_shot", "other") is None
    assert selected_method(None, "demo", "high_shot", "c") is None


def test_each_kind_of_method_ships_its_members_and_model():
    default = ["patchcore", "padim"]
    assert selected_members("classifier+padim+segad", default, []) == (["padim"], True, None)
    assert selected_members("padim", default, []) == (["padim"], False, "padim__max")
    assert selected_members("classifier", default, []) == (["patchcore", "padim"], True, "classifier__score")
    with pytest.raises(ValueError, match="cannot be bundled yet"):
        selected_members("supersimplenet_supervised", default, ["supersimplenet_supervised"])


def test_a_bundled_single_input_scores_new_images_with_the_detectors_map_max(trained, tmp_path, tiny_demo):
    """A detector alone ships as a one-column linear model: the bundle's score is that map's max."""
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    column = trained["feature_columns"].index("padim__max")
    maxima = trained["_features"][:, column]
    arguments.update(
        brf=single_input_model("padim__max"),
        feature_columns=["padim__max"],
        operating_point=choose_operating_point(trained["_labels"], maxima, 0.02, source="single input"),
    )
    bundle = load_bundle(write_bundle(tmp_path / "bundle", **arguments))
    paths = trained["_paths"][:4]
    models = bundle.load_detectors("cpu")
    table = score_images(paths, bundle, models, root=tiny_demo, explain="all", progress=False).table
    np.testing.assert_allclose(table["score"].to_numpy(), maxima[:4], rtol=1e-5)
    assert set(table["decision"]) <= {"accept", "reject"}
    # explained: the whole score is the global part (the map max), no segment contributes
    np.testing.assert_allclose(table["contrib_global"].to_numpy(), maxima[:4], rtol=1e-5)
    assert (table.filter(regex=r"^contrib_seg\d+$").to_numpy() == 0).all()
