"""Per-image automatic segments (`auto_per_image`): shared centres follow the content of each image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segad.segments.auto_segments import PixelClusters, fit_pixel_clusters, pixel_features
from segad.segments.segment_maps import SegmentMapConfig, SegmentMapError, resolve_segmentation


def _scenes(n: int, seed: int, size: int = 32):
    """Dark noisy images with a bright 8 x 8 square at a random position; returns images, centres."""
    rng = np.random.default_rng(seed)
    images = 0.15 + rng.normal(0, 0.02, (n, 3, size, size)).astype(np.float32)
    centres = []
    for i in range(n):
        y, x = rng.integers(1, size - 9, 2)
        images[i, :, y : y + 8, x : x + 8] = 0.9
        centres.append((int(y) + 4, int(x) + 4))
    return np.clip(images, 0, 1), centres


def test_labels_follow_the_object_across_images():
    train, _ = _scenes(6, seed=0)
    test, centres = _scenes(8, seed=1)
    clusters = fit_pixel_clusters(train, n_segments=2, seed=0)
    labels = clusters.labels(test)
    assert labels.shape == (8, 32, 32) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 2
    object_labels = {int(labels[i, y, x]) for i, (y, x) in enumerate(centres)}
    assert object_labels == {1}  # labels ordered by gray level: the bright object is the last segment
    assert (labels[:, 0, 0] == 0).all()  # the object never covers the corner: background everywhere
    for i, (y, x) in enumerate(centres):  # the object's segment moves with it
        assert (labels[i, y - 2 : y + 3, x - 2 : x + 3] == 1).all()
        assert (labels[i] == 1).sum() < 0.3 * 32 * 32


def test_deterministic_per_seed_and_serialisable():
    train, _ = _scenes(6, seed=0)
    test, _ = _scenes(3, seed=2)
    a, b = fit_pixel_clusters(train, 3, seed=5), fit_pixel_clusters(train, 3, seed=5)
    np.testing.assert_array_equal(a.centres, b.centres)
    np.testing.assert_array_equal(a.labels(test), b.labels(test))
    again = PixelClusters.from_dict(a.to_dict())
    np.testing.assert_array_equal(again.labels(test), a.labels(test))
    assert a.n_segments == 3
    gray = test.mean(axis=1)
    assert pixel_features(gray).shape == (3, 32, 32, 4)  # gray input is accepted


def test_clear_errors():
    train, _ = _scenes(2, seed=0)
    with pytest.raises(ValueError, match="positive integer"):
        fit_pixel_clusters(train, 0)
    with pytest.raises(ValueError, match="images"):
        fit_pixel_clusters(np.zeros((0, 3, 8, 8)), 2)
    with pytest.raises(ValueError, match="images"):
        fit_pixel_clusters(np.zeros((2, 4, 8, 8)), 2)
    with pytest.raises(ValueError, match="fewer than 3 distinct"):
        fit_pixel_clusters(np.zeros((2, 3, 8, 8)), 3)


def _write(folder, images, prefix):
    paths = {}
    for i, image in enumerate(images):
        image_id = f"{prefix}/{i:03d}.png"
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.transpose(1, 2, 0) * 255).astype(np.uint8)).save(folder / image_id)
        paths[image_id] = str(folder / image_id)
    return paths


def test_resolve_auto_per_image_reads_each_image(tmp_path):
    train, _ = _scenes(6, seed=0)
    test, centres = _scenes(4, seed=3)
    train_paths = _write(tmp_path, train, "train/good")
    test_paths = _write(tmp_path, test, "test/bad")
    config = SegmentMapConfig(method="auto_per_image", auto_segments=2).for_dataset("vad", str(tmp_path))
    assert config.image_root == str(tmp_path)
    seg = resolve_segmentation(config, ["c"], 32, {"c": list(train_paths.values())})
    assert not seg.is_static("c") and seg.n_segments == {"c": 2}
    assert seg.sources["c"].startswith("auto_per_image:")
    ids = list(test_paths)
    labels = seg.labels_for("c", ids)  # through image_root / image_id
    assert labels.shape == (4, 32, 32) and labels.dtype == np.int64
    assert [int(labels[i, y, x]) for i, (y, x) in enumerate(centres)] == [1] * 4
    by_paths = resolve_segmentation(config, ["c"], 16, {"c": list(train_paths.values())}, image_paths=test_paths)
    assert by_paths.labels_for("c", ids[::-1]).shape == (4, 16, 16)  # resized to the map resolution
    np.testing.assert_array_equal(seg.labels_for("c", ids[:1])[0], labels[0])  # cached, same labels
    with pytest.raises(SegmentMapError, match="no good training images"):
        resolve_segmentation(config, ["other"], 32, {"c": list(train_paths.values())})
    no_root = resolve_segmentation(
        SegmentMapConfig(method="auto_per_image", auto_segments=2), ["c"], 32, {"c": list(train_paths.values())}
    )
    with pytest.raises(SegmentMapError, match="no file for image"):
        no_root.labels_for("c", ids)
    with pytest.raises(SegmentMapError, match="fewer than 5"):
        resolve_segmentation(
            SegmentMapConfig(method="auto_per_image", auto_segments=5), ["c"], 32, {"c": [str(_flat(tmp_path))]}
        )


def _flat(folder):
    path = folder / "flat.png"
    Image.new("RGB", (32, 32), (40, 40, 40)).save(path)
    return path


def test_features_node_serves_auto_per_image_labels(tiny_demo):
    """The features pipeline's node builds it from the image index; ids resolve under dataset.root."""
    import matplotlib.pyplot as plt

    from segad.config import DatasetConfig
    from segad.ingestion.layouts import build_index
    from segad.pipelines.features.nodes import build_segmentation, segmentation_overlays

    index, _ = build_index("demo", str(tiny_demo))
    config = SegmentMapConfig(method="auto_per_image", auto_segments=3)
    seg = build_segmentation(index, config, 64, DatasetConfig(layout="demo", root=str(tiny_demo)))
    test_ids = index[index.split == "test"].image_id.tolist()
    labels = seg.labels_for("demo", test_ids)
    assert labels.shape == (len(test_ids), 64, 64) and 0 <= labels.min() and labels.max() < 3
    assert len({tuple(np.bincount(m.ravel(), minlength=3)) for m in labels}) > 1  # per image, not one static map
    figures = segmentation_overlays(index, seg, config)
    assert figures
    for figure in figures.values():
        plt.close(figure)
