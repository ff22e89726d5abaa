"""Unaligned parts with the defaults: per-image segments and the classifier, bundled, score new images as training did.

One real `kedro run` of the `segad` chain (ingestion .. bundle, a cheap PaDiM, the classifier g(I)
on, as by default, with a few steps) on a tiny demo whose parts are shifted, rotated and scaled,
read as a VAD folder with `segmentation.method: auto_per_image` (the default, `auto_select`,
would choose among one segment, static and per-image segments out of fold, and on these few rows
ships the simplest: tests/meta/test_segmentation_choice.py), in a copy of this project's
configuration (tests.conftest.make_project); then the `score` pipeline on its test folder.
`bundle.detectors` names `classifier+padim+segad` (by default the out-of-fold
selection would ship the single input that wins on these few rows). The bundle holds the
shared centres and the classifier model; every test image's features (its own segment labels,
from the packaged backbone at the bundle's image size; the classifier's logit) and score equal
those of the training run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.runner import SequentialRunner

from segad.ingestion.demo import write_demo
from segad.production.batch import batch_features
from segad.production.bundle import load_bundle, resolve_bundle
from segad.storage.images import read_image
from tests.conftest import PADIM, TINY_DEMO, make_project, run_project, set_parameters

pytestmark = pytest.mark.e2e

K = 3


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> Path:
    """The tiny demo with parts moved up to 40 px, turned up to 180 degrees, scaled 0.8-1.2."""
    config = dataclasses.replace(TINY_DEMO, jitter_px=40.0, rotation_deg=180.0, scale_jitter=0.2)
    return write_demo(tmp_path_factory.mktemp("shifted") / "parts", config)


@pytest.fixture(scope="module")
def per_image_run(shifted, tmp_path_factory):
    """The project after `segad` (default segmentation) and `score` on the parts' test images."""
    project = make_project(tmp_path_factory.mktemp("per_image") / "project", shifted)
    base = yaml.safe_load((project / "conf" / "base" / "parameters_segmentation.yml").read_text())
    assert base["segmentation"]["method"] is None
    base["segmentation"]["method"] = "auto_per_image"
    classifier = yaml.safe_load((project / "conf" / "base" / "parameters_classifier.yml").read_text())["classifier"]
    bundle = yaml.safe_load((project / "conf" / "base" / "parameters_bundle.yml").read_text())["bundle"]
    assert classifier["enabled"] and classifier["cross_fit_folds"] == 3 and classifier["backend"] == "openvino"
    set_parameters(
        project,
        dataset={"layout": "vad", "root": str(shifted), "category": None, "on_bad_image": "fail"},
        detectors=["padim"],
        anomaly_maps={"padim": PADIM},
        segmentation={**base["segmentation"], "auto_segments": K},
        classifier={**classifier, "max_steps": 4},
        bundle={**bundle, "detectors": ["padim", "classifier"]},
        score={**yaml.safe_load((project / "conf" / "base" / "parameters_score.yml").read_text())["score"]},
    )  # the shipped backends (OpenVINO) end to end, where the other tiny projects run eager
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        run_project(project, ["segad"], SequentialRunner())
        run_project(project, ["score"], SequentialRunner(), params={"score": {"input": str(shifted / "test")}})
    return project


def _training_rows(project: Path, table: str, seed: int) -> pd.DataFrame:
    frame = pd.read_parquet(project / "data" / ("04_feature" if table == "features" else "07_model_output") / table)
    return frame[(frame["split_seed"] == seed) & (frame["image_id"].str.startswith("test/"))]


def test_per_image_segments_are_bundled_with_their_centres(per_image_run):
    bundle = load_bundle(resolve_bundle(per_image_run / "data" / "06_models" / "segad_bundle"))
    assert bundle.manifest["segmentation"]["kind"] == "auto_per_image" and bundle.n_segments == K
    source = bundle.manifest["config"]["segmentation_source"]
    assert source.startswith("auto_per_image:kmeans(3)")
    category = bundle.manifest["config"]["category"]
    (path,) = (per_image_run / "data" / "04_feature").glob("dataset=*/segment_maps.npz")  # one dataset's maps
    saved = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(bundle.segmentation.clusters.centres, saved[f"clusters/centres/{category}"])


def test_scoring_gives_the_training_runs_features_and_scores(per_image_run, shifted):
    bundle = load_bundle(resolve_bundle(per_image_run / "data" / "06_models" / "segad_bundle"))
    seed, method = bundle.manifest["config"]["split_seed"], bundle.manifest["config"]["method"]
    assert method == "classifier+padim+segad" and bundle.classifier_models == 3  # cross-fitted: the K models
    inspection = pd.read_parquet(
        per_image_run / "data" / "07_model_output" / "inspection"
    )  # every score run's partition
    assert (inspection["status"] == "ok").all()
    inspection["image_id"] = "test/" + inspection["image"]

    scores = _training_rows(per_image_run, "scores", seed)
    scores = scores[scores["method"] == method].set_index("image_id")["score"]
    assert len(scores) == len(inspection) == len(list((shifted / "test").rglob("*.png")))
    scored = inspection.set_index("image_id").loc[scores.index]
    np.testing.assert_allclose(scored["score"], scores, rtol=0, atol=1e-5)
    kept = _training_rows(per_image_run, "features", seed).set_index("image_id").loc[scores.index]
    np.testing.assert_allclose(scored["classifier__score"], kept["classifier__score"], rtol=1e-5, atol=1e-4)

    features = _training_rows(per_image_run, "features", seed).sort_values("image_id")
    x = np.stack([read_image(shifted / i, bundle.input_spec.image_size) for i in features["image_id"]])
    recorded = bundle.manifest["config"]["parameters"]["anomaly_maps"]["padim"]
    assert recorded["backend"] == "openvino"  # the map stage's backend (conf/base), also score.backend's default
    computed = batch_features(x, bundle, bundle.load_models("cpu"), backends={"padim": recorded["backend"]})
    assert computed.labels.shape == (len(x), *bundle.input_spec.image_size.hw)
    assert len(np.unique(computed.labels)) == K  # each image segmented on its own, all segments used
    expected = features[bundle.feature_columns].to_numpy(np.float64)
    assert bundle.feature_columns[0] == "classifier__score"
    # same maps, same labels, same statistics: equal; the classifier's logit up to ~1e-5 (CPU convolutions
    # sum in another order for another batch composition, and training ran other batches)
    np.testing.assert_array_equal(computed.features[:, 1:], expected[:, 1:])
    np.testing.assert_allclose(computed.features[:, 0], expected[:, 0], rtol=1e-5, atol=1e-4)
    assert not np.isnan(expected).all(axis=0).any()
