"""Shared fixtures of the production tests: a tiny trained bundle (domain functions only, no Kedro)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segad.columns import feature_columns
from segad.detection.config import DetectorConfig
from segad.detection.fit import fit_detector
from segad.detection.inference import predict_maps
from segad.detection.saved import save_detector
from segad.meta.brf import BRFConfig, fit_brf
from segad.production.inputs import input_spec_from_paths
from segad.production.operating_point import choose_operating_point, out_of_fold_scores
from segad.production.writer import write_bundle
from segad.segments.auto_segments import fit_feature_clusters
from segad.segments.label_maps import read_label_map
from segad.segments.statistics import SegmentMap, feature_matrix, segment_statistics
from segad.storage.images import read_image

SIZE = 32
TINY_DETECTORS = {
    "padim": {
        "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 16},
        "weights": "packaged:efficientnet_lite0",
    },
}
TINY_BRF = BRFConfig(n_estimators=3, num_parallel_tree=20, max_depth=3)


def train_tiny_bundle(demo_root: Path, work: Path, detectors: dict = TINY_DETECTORS, per_image: int = 0) -> dict:
    """Fit tiny detectors and a BRF on the demo's train split; return write_bundle's arguments.

    Domain functions only (no Kedro): half of train/good fits the detectors, the other half and
    train/bad train the BRF; the operating point comes from out-of-fold BRF scores. Segments: the
    demo's map, or with `per_image` = K > 0 per-image segments of K shared centres fitted on the
    detectors' good images (``clusters`` instead of ``segments``; ``_labels_per_image`` holds the
    BRF rows' labels).
    """
    goods = sorted((demo_root / "train" / "good").glob("*.png"))
    bads = sorted((demo_root / "train" / "bad").glob("*.png"))
    fit_paths, brf_paths = goods[: len(goods) // 2], goods[len(goods) // 2 :] + bads
    labels = np.r_[np.zeros(len(goods) - len(goods) // 2, int), np.ones(len(bads), int)]
    images = np.stack([read_image(p, SIZE) for p in brf_paths])
    if per_image:
        clusters = fit_feature_clusters(np.stack([read_image(p, SIZE) for p in fit_paths]), per_image, seed=0)
        segments, n_segments = None, per_image
        segment_map = clusters.labels(images)
    else:
        clusters, segments = None, read_label_map(demo_root / "segmentation.png", size=SIZE)
        n_segments = int(segments.max()) + 1
        segment_map = SegmentMap.from_labels(segments, n_segments)
    dirs, stats, maxima = {}, [], []
    for name, values in detectors.items():
        config = DetectorConfig.from_dict(name, values)
        model = fit_detector(config, fit_paths, image_size=SIZE, work_dir=work)
        dirs[name] = save_detector(model, config, SIZE, work / "detectors" / name)
        maps = predict_maps(model, images)
        stats.append(segment_statistics(maps, segment_map, n_segments))
        maxima.append(maps.reshape(len(maps), -1).max(axis=1))
    features = feature_matrix(stats, maxima)
    brf = fit_brf(features, labels, TINY_BRF, seed=0)
    held_out = out_of_fold_scores(features, labels, TINY_BRF, seed=0, n_folds=3)
    return dict(
        detector_dirs=dirs,
        **({"clusters": clusters} if per_image else {"segments": segments}),
        brf=brf,
        feature_columns=feature_columns(list(detectors), n_segments),
        operating_point=choose_operating_point(labels, held_out, 0.02, source="3-fold out-of-fold"),
        input_spec=input_spec_from_paths(goods + bads, SIZE),
        config={"image_size": SIZE, "detectors": detectors, "split_seed": 0},
        segment_names={} if per_image else {0: "background", 1: "disk_ring"},
        _features=features,
        _labels=labels,
        _paths=brf_paths,
        **({"_labels_per_image": segment_map} if per_image else {}),
    )


@pytest.fixture(scope="session")
def trained(tiny_demo, tmp_path_factory):
    """write_bundle's arguments of a tiny bundle (+ ``_features``, ``_labels`` of its BRF rows)."""
    return train_tiny_bundle(tiny_demo, tmp_path_factory.mktemp("train"))


@pytest.fixture()
def bundle_dir(trained, tmp_path):
    """A fresh, unversioned bundle folder of `trained` per test."""
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    return write_bundle(tmp_path / "bundle", **arguments)


def edit_manifest(root: Path, change) -> None:
    """Apply `change` to the parsed manifest.json of the bundle at `root` and write it back."""
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
