"""A bundle of a run with per-image automatic segments scores new images exactly as training did.

One real `kedro run` of the `segad` chain (ingestion .. bundle) on the tiny demo with
`segmentation.method: auto_per_image` (a cheap PaDiM), in a copy of this project's configuration
(tests.test_runner.make_project), then the `score` pipeline on the demo's test folder. The
bundle holds the shared centres, and every test image's features (its own segment labels, from
the packaged backbone at the bundle's image size) and score equal those of the training run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.runner import SequentialRunner

from segad.images import read_image
from segad.production.batch import batch_features
from segad.production.bundle import load_bundle, resolve_bundle
from tests.test_runner import PADIM, make_project, run_project, set_parameters

K = 3


@pytest.fixture(scope="module")
def per_image_run(tiny_demo, tmp_path_factory):
    """The project after `segad` (auto_per_image segments) and `score` on the demo's test images."""
    project = make_project(tmp_path_factory.mktemp("per_image") / "project", tiny_demo)
    base = yaml.safe_load((project / "conf" / "base" / "parameters_segmentation.yml").read_text())
    set_parameters(
        project,
        detectors=["padim"],
        anomaly_maps={"padim": PADIM},
        segmentation={**base["segmentation"], "method": "auto_per_image", "auto_segments": K},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        run_project(project, ["segad"], SequentialRunner())
        run_project(project, ["score"], SequentialRunner(), params={"score": {"input": str(tiny_demo / "test")}})
    return project


def _training_rows(project: Path, table: str, seed: int) -> pd.DataFrame:
    frame = pd.read_parquet(project / "data" / ("04_feature" if table == "features" else "07_model_output") / table)
    return frame[(frame["split_seed"] == seed) & (frame["image_id"].str.startswith("test/"))]


def test_the_bundle_holds_the_runs_centres(per_image_run):
    bundle = load_bundle(resolve_bundle(per_image_run / "data" / "06_models" / "segad_bundle"))
    assert bundle.manifest["segmentation"]["kind"] == "auto_per_image" and bundle.n_segments == K
    assert bundle.manifest["config"]["segmentation_source"].startswith("auto_per_image:kmeans(3)")
    saved = np.load(per_image_run / "data" / "04_feature" / "segment_maps.npz", allow_pickle=False)
    np.testing.assert_array_equal(bundle.segmentation.clusters.centres, saved["clusters/centres/demo"])


def test_scoring_gives_the_training_runs_features_and_scores(per_image_run, tiny_demo):
    bundle = load_bundle(resolve_bundle(per_image_run / "data" / "06_models" / "segad_bundle"))
    seed, method = bundle.manifest["config"]["split_seed"], bundle.manifest["config"]["method"]
    assert method == "padim+segad"
    inspection = pd.read_parquet(per_image_run / "data" / "07_model_output" / "inspection.parquet")
    assert (inspection["status"] == "ok").all()
    inspection["image_id"] = "test/" + inspection["image"]

    scores = _training_rows(per_image_run, "scores", seed)
    scores = scores[scores["method"] == method].set_index("image_id")["score"]
    assert len(scores) == len(inspection) == len(list((tiny_demo / "test").rglob("*.png")))
    np.testing.assert_array_equal(inspection.set_index("image_id")["score"].loc[scores.index], scores)

    features = _training_rows(per_image_run, "features", seed).sort_values("image_id")
    x = np.stack([read_image(tiny_demo / i, bundle.input_spec.image_size) for i in features["image_id"]])
    recorded = bundle.manifest["config"]["parameters"]["anomaly_maps"]["padim"]
    assert recorded["backend"] == "openvino"  # the map stage's backend (conf/base), also score.backend's default
    computed = batch_features(x, bundle, bundle.load_detectors("cpu"), backends={"padim": recorded["backend"]})
    assert computed.labels.shape == (len(x), *bundle.input_spec.image_size.hw)
    assert len(np.unique(computed.labels)) == K  # each image segmented on its own, all segments used
    expected = features[bundle.feature_columns].to_numpy(np.float64)
    np.testing.assert_array_equal(computed.features, expected)  # same maps, same labels, same statistics
    assert not np.isnan(expected).all(axis=0).any()
