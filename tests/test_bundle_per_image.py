"""Unaligned parts with the default segmentation: per-image segments, bundled, score new images as training did.

One real `kedro run` of the `segad` chain (ingestion .. bundle, a cheap PaDiM) on a tiny demo
whose parts are shifted, rotated and scaled, read as a VAD folder with the default
`segmentation.method: null`, in a copy of this project's configuration
(tests.test_runner.make_project); then the `score` pipeline on its test folder. The default is
`auto_select`: the parts are not aligned, so it picks `auto_per_image`; the bundle holds the
shared centres, and every test image's features (its own segment labels, from the packaged
backbone at the bundle's image size) and score equal those of the training run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.runner import SequentialRunner

from segad.images import read_image
from segad.ingestion.demo import write_demo
from segad.production.batch import batch_features
from segad.production.bundle import load_bundle, resolve_bundle
from tests.conftest import TINY_DEMO
from tests.test_runner import PADIM, make_project, run_project, set_parameters

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
    set_parameters(
        project,
        dataset={"layout": "vad", "root": str(shifted), "category": None, "on_bad_image": "fail"},
        detectors=["padim"],
        anomaly_maps={"padim": PADIM},
        segmentation={**base["segmentation"], "auto_segments": K},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        run_project(project, ["segad"], SequentialRunner())
        run_project(project, ["score"], SequentialRunner(), params={"score": {"input": str(shifted / "test")}})
    return project


def _training_rows(project: Path, table: str, seed: int) -> pd.DataFrame:
    frame = pd.read_parquet(project / "data" / ("04_feature" if table == "features" else "07_model_output") / table)
    return frame[(frame["split_seed"] == seed) & (frame["image_id"].str.startswith("test/"))]


def test_the_default_picks_per_image_segments_and_the_bundle_holds_their_centres(per_image_run):
    bundle = load_bundle(resolve_bundle(per_image_run / "data" / "06_models" / "segad_bundle"))
    assert bundle.manifest["segmentation"]["kind"] == "auto_per_image" and bundle.n_segments == K
    source = bundle.manifest["config"]["segmentation_source"]  # the measure, the threshold and the choice
    assert source.startswith("alignment ") and " < 0.6 -> auto_per_image:kmeans(3)" in source
    category = bundle.manifest["config"]["category"]
    saved = np.load(per_image_run / "data" / "04_feature" / "segment_maps.npz", allow_pickle=False)
    np.testing.assert_array_equal(bundle.segmentation.clusters.centres, saved[f"clusters/centres/{category}"])


def test_scoring_gives_the_training_runs_features_and_scores(per_image_run, shifted):
    bundle = load_bundle(resolve_bundle(per_image_run / "data" / "06_models" / "segad_bundle"))
    seed, method = bundle.manifest["config"]["split_seed"], bundle.manifest["config"]["method"]
    assert method == "padim+segad"
    inspection = pd.read_parquet(per_image_run / "data" / "07_model_output" / "inspection.parquet")
    assert (inspection["status"] == "ok").all()
    inspection["image_id"] = "test/" + inspection["image"]

    scores = _training_rows(per_image_run, "scores", seed)
    scores = scores[scores["method"] == method].set_index("image_id")["score"]
    assert len(scores) == len(inspection) == len(list((shifted / "test").rglob("*.png")))
    np.testing.assert_array_equal(inspection.set_index("image_id")["score"].loc[scores.index], scores)

    features = _training_rows(per_image_run, "features", seed).sort_values("image_id")
    x = np.stack([read_image(shifted / i, bundle.input_spec.image_size) for i in features["image_id"]])
    recorded = bundle.manifest["config"]["parameters"]["anomaly_maps"]["padim"]
    assert recorded["backend"] == "openvino"  # the map stage's backend (conf/base), also score.backend's default
    computed = batch_features(x, bundle, bundle.load_detectors("cpu"), backends={"padim": recorded["backend"]})
    assert computed.labels.shape == (len(x), *bundle.input_spec.image_size.hw)
    assert len(np.unique(computed.labels)) == K  # each image segmented on its own, all segments used
    expected = features[bundle.feature_columns].to_numpy(np.float64)
    np.testing.assert_array_equal(computed.features, expected)  # same maps, same labels, same statistics
    assert not np.isnan(expected).all(axis=0).any()
