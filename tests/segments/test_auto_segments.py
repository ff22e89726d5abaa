"""Per-image automatic segments (`auto_per_image`): shared backbone-feature centres follow each image's content."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from segad.datasets.segment_maps_dataset import SegmentMapsDataset
from segad.segments.auto_segments import FeatureClusters, backbone_features, border_band, fit_feature_clusters
from segad.segments.label_maps import SegmentMapError
from segad.segments.resolve import resolve_segmentation
from segad.segments.segment_maps import SegmentMapConfig
from segad.storage.map_store import MapStore


def _part(height: int = 64, width: int = 64) -> np.ndarray:
    """A dark textured background with a bright striped square part (24 x 24) in the middle: (3, H, W)."""
    rng = np.random.default_rng(0)
    image = 0.15 + rng.normal(0, 0.03, (3, height, width))
    y, x = height // 2 - 12, width // 2 - 12
    image[:, y : y + 24, x : x + 24] = 0.85
    image[:, y : y + 24 : 4, x : x + 24] = 0.55  # stripes: a texture the backbone sees
    return np.clip(image, 0, 1).astype(np.float32)


def _shifted(image: np.ndarray, shifts) -> tuple[np.ndarray, list]:
    """Copies of `image` rolled by each (dy, dx) (the wrapped border is background only)."""
    return np.stack([np.roll(image, s, axis=(1, 2)) for s in shifts]), list(shifts)


SHIFTS = [(0, 0), (10, -8), (-9, 12), (14, 14), (-12, -10), (5, 11)]


def test_same_part_same_label_across_shifted_copies():
    images, shifts = _shifted(_part(), SHIFTS)
    clusters = fit_feature_clusters(images[:3], n_segments=2, seed=0)
    labels = clusters.labels(images[3:])
    assert labels.shape == (3, 64, 64) and labels.dtype == np.int64 and set(np.unique(labels)) <= {0, 1}
    for k, (dy, dx) in enumerate(shifts[3:]):
        part = labels[k, 32 + dy - 6 : 32 + dy + 6, 32 + dx - 6 : 32 + dx + 6]
        assert (part == 1).mean() > 0.95  # ordered by gray level: the bright part is the last segment
        assert labels[k, (32 + dy + 32) % 64, (32 + dx + 32) % 64] == 0  # background, far from it
    # the segments move with the part: the map of a shifted copy is the shifted map (away from borders)
    reference = clusters.labels(images[:1])[0]
    for k, (dy, dx) in enumerate(shifts[3:]):
        moved = np.roll(reference, (dy, dx), axis=(0, 1))
        assert (moved[16:48, 16:48] == labels[k, 16:48, 16:48]).mean() > 0.9


def test_deterministic_and_round_trips_through_arrays():
    images, _ = _shifted(_part(), SHIFTS)
    a = fit_feature_clusters(images, 3, seed=5, pca=8, smooth=0.02)
    b = fit_feature_clusters(images, 3, seed=5, pca=8, smooth=0.02)
    np.testing.assert_array_equal(a.centres, b.centres)
    np.testing.assert_array_equal(a.labels(images), b.labels(images))
    again = FeatureClusters.from_arrays(a.to_arrays())
    np.testing.assert_array_equal(again.labels(images), a.labels(images))
    assert again.settings_key((64, 64)) == a.settings_key((64, 64)) != a.settings_key((64, 48))
    assert a.n_segments == 3 and a.centres.shape == (3, 8) and a.layers == ("blocks.2", "blocks.4")


def test_border_band_is_one_more_segment_and_round_trips():
    images, _ = _shifted(_part(), SHIFTS)
    plain = fit_feature_clusters(images[:3], 2, seed=0)
    banded = fit_feature_clusters(images[:3], 2, seed=0, border=0.0625)  # 4 px of 64
    np.testing.assert_array_equal(plain.centres, banded.centres)  # the band does not move the centres
    assert plain.n_segments == 2 and banded.n_segments == 3
    labels, inner = banded.labels(images[3:]), plain.labels(images[3:])
    band = border_band((64, 64), 0.0625)
    assert band.sum() == 64 * 64 - 56 * 56 and band[3, 30] and not band[4, 30] and band[30, 60] and not band[30, 59]
    assert (labels[:, band] == 2).all()
    np.testing.assert_array_equal(labels[:, ~band], inner[:, ~band])  # inside, the features decide as before
    again = FeatureClusters.from_arrays(banded.to_arrays())
    assert again.border == 0.0625 and again.n_segments == 3
    np.testing.assert_array_equal(again.labels(images[3:]), labels)
    assert banded.settings_key((64, 64)) != plain.settings_key((64, 64))
    old = {k: v for k, v in plain.to_arrays().items() if k != "border"}  # written before the band existed
    assert FeatureClusters.from_arrays(old).border == 0.0
    assert border_band((10, 40), 0.001).sum() == 2 * 40 + 2 * 8  # at least one pixel; non-square


def test_shapes_follow_the_map_size_non_square():
    images = np.stack([_part(48, 80), _part(48, 80)[:, :, ::-1]])
    features = backbone_features(images, ["blocks.2", "blocks.4"])
    assert features.shape == (2, 152, 6, 10)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    clusters = fit_feature_clusters(images, 2, seed=0, layers=["blocks.1"])
    assert clusters.labels(images.mean(axis=1)).shape == (2, 48, 80)  # gray input is accepted


def test_clear_errors():
    images, _ = _shifted(_part(), SHIFTS[:2])
    with pytest.raises(ValueError, match="positive integer"):
        fit_feature_clusters(images, 0)
    with pytest.raises(ValueError, match="images"):
        fit_feature_clusters(np.zeros((0, 3, 8, 8)), 2)
    with pytest.raises(ValueError, match="images"):
        fit_feature_clusters(np.zeros((2, 4, 8, 8)), 2)
    with pytest.raises(ValueError, match="auto_layers"):
        fit_feature_clusters(images, 2, layers=["blocks.9"])
    with pytest.raises(ValueError, match="fewer than 3 distinct"):
        fit_feature_clusters(np.zeros((2, 3, 8, 8)), 3)  # one grid cell per image, all alike
    with pytest.raises(ValueError, match="auto_layers"):
        SegmentMapConfig(method="auto_per_image", auto_layers=["head"])


def _write(folder, images, prefix):
    paths = {}
    for i, image in enumerate(images):
        image_id = f"{prefix}/{i:03d}.png"
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.transpose(1, 2, 0) * 255).astype(np.uint8)).save(folder / image_id)
        paths[image_id] = str(folder / image_id)
    return paths


def test_resolve_reads_each_image_and_caches_labels_on_disk(tmp_path, monkeypatch):
    images, shifts = _shifted(_part(), SHIFTS)
    train = list(_write(tmp_path, images[:3], "train/good").values())
    test_paths = _write(tmp_path, images[3:], "test/bad")
    config = SegmentMapConfig(method="auto_per_image", auto_segments=2).for_dataset("vad", str(tmp_path))
    assert config.image_root == str(tmp_path)
    store = MapStore(tmp_path / "labels", dtype="float16")
    seg = resolve_segmentation(config, ["c"], (64, 64), {"c": train}, label_store=store)
    assert not seg.is_static("c") and seg.n_segments == {"c": 2}
    assert seg.sources["c"].startswith("auto_per_image:kmeans(2) of blocks.2+blocks.4")
    ids = list(test_paths)
    labels = seg.labels_for("c", ids)  # through image_root / image_id
    assert labels.shape == (3, 64, 64) and labels.dtype == np.int64
    assert [int(labels[k, 32 + dy, 32 + dx]) for k, (dy, dx) in enumerate(shifts[3:])] == [1, 1, 1]
    assert len(list((tmp_path / "labels").rglob("*.npz"))) == 3

    # a second run (same settings, fresh SegmentMaps) reads the labels back instead of segmenting
    again = resolve_segmentation(config, ["c"], (64, 64), {"c": train}, label_store=store)

    def refuse(self, images):
        raise AssertionError("segmented again instead of reading the label store")

    monkeypatch.setattr(FeatureClusters, "labels", refuse)
    np.testing.assert_array_equal(again.labels_for("c", ids[::-1]), labels[::-1])
    monkeypatch.undo()
    damaged = sorted((tmp_path / "labels").rglob("*.npz"))[0]
    damaged.write_bytes(b"not a label map")  # a damaged file is segmented again and replaced
    third = resolve_segmentation(config, ["c"], (64, 64), {"c": train}, label_store=store)
    np.testing.assert_array_equal(third.labels_for("c", ids), labels)
    assert damaged.read_bytes() != b"not a label map"

    by_paths = resolve_segmentation(config, ["c"], (32, 48), {"c": train}, image_paths=test_paths)
    assert by_paths.labels_for("c", ids).shape == (3, 32, 48)  # resized to the (non-square) map size
    with pytest.raises(SegmentMapError, match="no good training images"):
        resolve_segmentation(config, ["other"], 32, {"c": train})
    no_root = resolve_segmentation(SegmentMapConfig(method="auto_per_image", auto_segments=2), ["c"], 32, {"c": train})
    with pytest.raises(SegmentMapError, match="no file for image"):
        no_root.labels_for("c", ids)

    banded = resolve_segmentation(
        SegmentMapConfig(method="auto_per_image", auto_segments=2, auto_border=0.0625),
        ["c"],
        64,
        {"c": train},
        image_paths=test_paths,
    )  # the image-border band: one more segment, named in the source
    assert banded.n_segments == {"c": 3} and banded.sources["c"].endswith("image-border band 0.0625")
    with_band = banded.labels_for("c", ids[:1])
    assert with_band.max() == 2 and (with_band[0, :4] == 2).all() and (with_band[0, 4:-4, 4:-4] < 2).all()
    with pytest.raises(ValueError, match="auto_border"):
        SegmentMapConfig(method="auto_per_image", auto_border=0.5)


def test_auto_select_logs_its_choice_per_category(tmp_path, caplog):
    part = _part()
    aligned = _write(tmp_path, np.stack([part] * 6), "aligned")
    shifted = _write(tmp_path, _shifted(part, SHIFTS)[0], "shifted")
    config = SegmentMapConfig(method="auto_select", auto_segments=2, alignment_threshold=0.6)
    config = config.for_dataset("folder", str(tmp_path))
    paths = {"a": list(aligned.values()), "s": list(shifted.values())}
    with caplog.at_level(logging.INFO, logger="segad.segments.resolve"):
        seg = resolve_segmentation(config, ["a", "s"], 64, paths)
    assert seg.alignment == {"a": 1.0, "s": pytest.approx(seg.alignment["s"])} and seg.alignment["s"] < 0.6
    assert seg.is_static("a") and not seg.is_static("s") and "s" in seg.clusters
    assert seg.sources["a"].startswith("auto (alignment 1.00 >= 0.6): auto:kmeans(2)")
    assert seg.sources["s"].startswith(f"auto_per_image (alignment {seg.alignment['s']:.2f} < 0.6): auto_per_image:")
    # every category keeps its three candidates for the out-of-fold choice of the features stage
    for category in ("a", "s"):
        options = seg.alternatives[category]
        assert list(options) == ["single", "auto", "auto_per_image"]
        assert options["single"].n_segments == 1 and options["auto"].n_segments == 2
        assert options["auto_per_image"].clusters is not None
    single = seg.with_choice({"s": "single"})
    assert single.is_static("s") and single.n_segments["s"] == 1 and "s" not in single.clusters
    assert "s" in seg.clusters  # the original is unchanged
    # the candidates survive the catalog's file, and a choice read back segments like the original
    ds = SegmentMapsDataset(str(tmp_path / "maps.npz"))
    ds.save(seg)
    back = ds.load()
    assert {c: list(o) for c, o in back.alternatives.items()} == {c: list(o) for c, o in seg.alternatives.items()}
    ids = list(shifted)[:2]
    np.testing.assert_array_equal(
        back.with_choice({"a": "auto_per_image"}).labels_for("a", ids),
        seg.with_choice({"a": "auto_per_image"}).labels_for("a", ids),
    )
    np.testing.assert_array_equal(back.with_choice({"s": "auto"}).static_maps["s"], options["auto"].labels)
    with pytest.raises(SegmentMapError, match="no candidate segmentation 'grid'"):
        seg.with_choice({"a": "grid"})
    assert "segmentation: category a alignment 1.00 >= 0.6 -> auto" in caplog.text
    assert f"segmentation: category s alignment {seg.alignment['s']:.2f} < 0.6 -> auto_per_image" in caplog.text


def test_a_candidate_the_images_cannot_make_is_left_out_with_a_warning(tmp_path, caplog, monkeypatch):
    import segad.segments.resolve as resolve

    def no_clusters(config, category, images):
        raise SegmentMapError(f"auto_per_image segmentation of {category!r}: too few distinct features")

    monkeypatch.setattr(resolve, "_fit_per_image", no_clusters)
    shifted = _write(tmp_path, _shifted(_part(), SHIFTS)[0], "shifted")
    config = SegmentMapConfig(method="auto_select", auto_segments=2).for_dataset("folder", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="segad.segments.resolve"):
        seg = resolve_segmentation(config, ["s"], 64, {"s": list(shifted.values())})
    assert list(seg.alternatives["s"]) == ["single", "auto"]
    assert "category s has no auto_per_image candidate: auto_per_image segmentation of 's'" in caplog.text
    # not aligned, but per-image segments cannot be made: the static map until the choice
    assert seg.alignment["s"] < 0.6 and seg.is_static("s") and seg.n_segments["s"] == 2
    assert f"category s alignment {seg.alignment['s']:.2f} < 0.6, no auto_per_image candidate -> auto" in caplog.text
