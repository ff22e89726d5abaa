"""Fixtures of the detection tests: tiny images on disk and one fitted PaDiM."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from segad.detection.fit import fit_detector
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
