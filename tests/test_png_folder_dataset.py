"""The picture folder dataset replaces only the pictures it wrote itself."""

from __future__ import annotations

import numpy as np
from PIL import Image

from segad.datasets.png_folder_dataset import PngFolderDataset


def test_saving_replaces_its_own_pictures_and_keeps_the_users(tmp_path):
    Image.new("RGB", (3, 3)).save(tmp_path / "users_photo.png")
    dataset = PngFolderDataset(str(tmp_path))
    assert not dataset.exists()
    dataset.save({"a.png": np.zeros((4, 6, 3), np.uint8), "b.png": np.zeros((2, 2), np.uint8)})
    assert dataset.exists()
    dataset.save({"c.png": np.full((5, 5, 3), 7, np.uint8)})
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["c.png", "users_photo.png"]
    loaded = dataset.load()
    assert list(loaded) == ["c.png"] and int(loaded["c.png"][0, 0, 0]) == 7
