"""The textured-surface demo variant: tall images, small defects, one segment."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from segad.ingestion.demo import DemoConfig, write_demo
from segad.ingestion.demo_texture import TEXTURE_DEFECTS, render_texture


def test_texture_demo_writes_tall_images_with_its_own_defects(tmp_path):
    config = DemoConfig(
        n_train_good=3, n_train_bad=2, n_test_good=2, n_test_bad=2, n_test_unseen=1, image_size=64, surface="texture"
    )
    root = write_demo(tmp_path / "demo", config)
    image = np.asarray(Image.open(root / "train/good/0000.png"))
    assert image.shape == (128, 64, 3)
    with open(root / "defects.csv") as handle:
        types = {row["defect_type"] for row in csv.DictReader(handle)}
    assert types == set(TEXTURE_DEFECTS)
    assert not (root / "segmentation.png").exists()  # no parts: segmented as a user's surface would be


def test_a_defect_is_small_and_changes_only_a_few_pixels():
    good = np.asarray(render_texture(np.random.default_rng(3), 128), np.float64)
    for defect in ("scratch", "pit"):
        bad = np.asarray(render_texture(np.random.default_rng(3), 128, defect), np.float64)
        changed = np.abs(bad - good).max(axis=2) > 8
        assert 0 < changed.mean() < 0.01
    with pytest.raises(ValueError, match="unknown texture defect"):
        render_texture(np.random.default_rng(0), 32, "crack")
