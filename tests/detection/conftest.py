"""Fixtures of the detection tests: tiny images on disk, one fitted PaDiM, and a reloaded PatchCore
and PaDiM on one backbone."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from segad.detection.fit import fit_detector
from segad.detection.saved import load_detector, save_detector
from tests.detection.tiny import SIZE, config_for, write_images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return {
        "train": write_images(root / "train", 4, 0),
        "probe": write_images(root / "probe", 2, 1, bright=True),
        "train256": write_images(root / "train256", 1, 2, size=256),
        "imagenet": write_images(root / "imagenet" / "cls", 2, 3, size=64),
    }


@pytest.fixture(scope="module")
def fitted_padim(images, tmp_path_factory):
    config = config_for("padim", images)
    return fit_detector(config, images["train"], SIZE, backbone_cache_dir=tmp_path_factory.mktemp("bb")), config


@pytest.fixture(scope="module")
def fitted(images, tmp_path_factory):
    """patchcore and padim fitted on the tiny images (same packaged backbone and layers), saved and
    reloaded (as production loads them)."""
    out = {}
    for name in ("patchcore", "padim"):
        config = config_for(name, images)
        model = fit_detector(config, images["train"], SIZE, backbone_cache_dir=tmp_path_factory.mktemp("bb"))
        folder = save_detector(model, config, SIZE, tmp_path_factory.mktemp("det") / name)
        out[name] = load_detector(folder, backbone_cache_dir=tmp_path_factory.mktemp("bb2"))[0]
    return out
