"""The classifier g(I) in a bundle: its kept model(s) are bundled and give new images the training run's scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segad.columns import feature_columns
from segad.meta.brf import brf_scores, fit_brf
from segad.meta.classifier_models import kept_folders
from segad.meta.classifier_protocol import classifier_scores
from segad.production.batch import batch_features, score_images
from segad.production.bundle import BundleSchemaError, load_bundle
from segad.production.writer import write_bundle
from segad.storage.images import read_image
from tests.meta.conftest import tiny_config
from tests.production.conftest import SIZE, TINY_BRF, edit_manifest


@pytest.fixture(scope="module")
def with_classifier(trained, tiny_demo, tmp_path_factory):
    """A bundle of the tiny detectors + a cross-fitted (K=2) classifier, and its seed's classifier scores."""
    work = tmp_path_factory.mktemp("classifier")
    goods = sorted((tiny_demo / "train" / "good").glob("*.png"))
    tests = sorted((tiny_demo / "test").rglob("*.png"))
    roles = {str(p): "detector_train" for p in goods[: len(goods) // 2]}
    roles |= {str(p): "brf_train" for p in trained["_paths"]} | {str(p): "test" for p in tests}
    index = pd.DataFrame(
        {"image_id": list(roles), "path": list(roles), "label": [int("/good/" not in p) for p in roles]}
    )
    splits = pd.DataFrame({"image_id": list(roles), "split_seed": 0, "role": list(roles.values())})
    config = tiny_config(str(work), max_steps=2, cross_fit_folds=2)
    scores = classifier_scores(index, splits, None, config, SIZE, models=work / "models").set_index("image_id")
    own = scores.loc[[str(p) for p in trained["_paths"]], "score"].to_numpy()
    features = np.c_[own, trained["_features"]]
    columns = ["classifier__score", *trained["feature_columns"]]
    assert columns == feature_columns(["padim"], int(trained["segments"].max()) + 1, classifier=True)
    brf = fit_brf(features, trained["_labels"], TINY_BRF, seed=0)
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    arguments.update(
        brf=brf, feature_columns=columns, classifier_dirs=kept_folders(work / "models", scores["model_key"].iloc[0])
    )
    return write_bundle(work / "bundle", **arguments), scores, [str(p) for p in tests], brf


def test_the_kept_models_are_bundled(with_classifier):
    folder, scores, _, _ = with_classifier
    bundle = load_bundle(folder)
    block = bundle.manifest["classifier"]
    assert block["models"] == 2 and block["cross_fit_folds"] == 2 and "mean" in block["score"]
    assert bundle.classifier_models == 2 and bundle.owners == ["padim", "classifier"]
    assert (
        bundle.feature_columns[0] == "classifier__score"
        and bundle.manifest["computed_columns"][0] == "classifier__score"
    )
    assert {"classifier/model_0/state_dict.pt", "classifier/model_1/state_dict.pt"} <= set(bundle.manifest["files"])


def test_new_images_get_the_training_runs_classifier_and_brf_scores(with_classifier):
    folder, scores, tests, brf = with_classifier
    bundle = load_bundle(folder)
    models = bundle.load_models("cpu")
    assert len(models["classifier"]) == 2
    x = np.stack([read_image(p, SIZE) for p in tests])
    computed = batch_features(x, bundle, models)
    expected = scores.loc[tests, "score"].to_numpy()  # the mean logit of the 2 models, as stored (float32)
    # other batches than in training (4 images) may move a logit by ~1e-5 (CPU convolutions sum in
    # another order for another batch composition); nothing more
    np.testing.assert_allclose(computed.classifier, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(computed.features[:, 0], computed.classifier)
    table = score_images(tests, bundle, models, batch_size=5, explain="all", progress=False).table
    np.testing.assert_allclose(table["classifier__score"], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(table["score"], brf_scores(brf, computed.features), atol=1e-6)
    parts = [c for c in table.columns if c.startswith("contrib_det_")]
    assert parts == ["contrib_det_padim", "contrib_det_classifier"]
    np.testing.assert_allclose(table[parts].sum(axis=1) + table["contrib_bias"], table["score"], atol=1e-4)
    with pytest.raises(ValueError, match=r"no loaded model for the bundled \['classifier'\]"):
        score_images(tests, bundle, {"padim": models["padim"]}, progress=False)


def test_a_bundle_without_its_classifier_folders_is_refused(with_classifier, tmp_path):
    import shutil

    folder, _, _, _ = with_classifier
    copy = shutil.copytree(folder, tmp_path / "b")
    edit_manifest(copy, lambda m: m["classifier"].update(models=3))
    with pytest.raises(BundleSchemaError, match="lists 3 classifier models"):
        load_bundle(copy)
    edit_manifest(copy, lambda m: m.update(classifier=None))
    with pytest.raises(BundleSchemaError, match="computes other feature columns"):
        load_bundle(copy)
    assert json.loads((folder / "manifest.json").read_text())["classifier"]["models"] == 2
