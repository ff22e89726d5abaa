"""Segment maps: files, per-image folders, built-ins, auto k-means, resizing, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segad.datasets.segment_maps_dataset import SegmentMapsDataset
from segad.segments.auto_segments import auto_segment_map
from segad.segments.elpv import ELPV_BUSBAR_ROWS, ELPV_BUSBAR_ROWS_2, ELPV_SEGMENTS, elpv_segment_map
from segad.segments.label_maps import SegmentMapError, per_image_map_path, read_label_map, segment_count
from segad.segments.overlay import legend_entries, overlay
from segad.segments.resolve import resolve_segmentation
from segad.segments.segment_maps import SegmentMapConfig


def _labels(size=16):
    labels = np.zeros((size, size), np.uint8)
    labels[: size // 2] = 1
    labels[:, : size // 4] = 2
    return labels


def test_png_and_npy_read_and_resize_nearest(tmp_path):
    labels = _labels()
    Image.fromarray(labels).save(tmp_path / "s.png")
    np.save(tmp_path / "s.npy", labels.astype(np.int32))
    for name in ("s.png", "s.npy"):
        out = read_label_map(tmp_path / name, n_segments=3, size=32)
        assert out.shape == (32, 32) and out.dtype == np.int64
        assert set(np.unique(out)) == {0, 1, 2}  # nearest neighbour: no new labels
        np.testing.assert_array_equal(out[::2, ::2], labels)


def test_errors_name_the_file(tmp_path):
    Image.fromarray(_labels()).save(tmp_path / "s.png")
    with pytest.raises(SegmentMapError, match=r"s\.png.*label 2 outside \[0, 2\)"):
        read_label_map(tmp_path / "s.png", n_segments=2)
    np.save(tmp_path / "f.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(SegmentMapError, match=r"f\.npy.*integer"):
        read_label_map(tmp_path / "f.npy")
    np.save(tmp_path / "3d.npy", np.zeros((2, 4, 4), np.int64))
    with pytest.raises(SegmentMapError, match=r"3d\.npy.*2-D"):
        read_label_map(tmp_path / "3d.npy")
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(SegmentMapError, match=r"rgb\.png.*single-channel"):
        read_label_map(tmp_path / "rgb.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SegmentMapError, match=r"broken\.png"):
        read_label_map(tmp_path / "broken.png")
    with pytest.raises(SegmentMapError, match="missing.png"):
        read_label_map(tmp_path / "missing.png")


def test_per_image_folder_matches_image_id(tmp_path):
    target = tmp_path / "maps" / "test" / "bad" / "012.npy"
    target.parent.mkdir(parents=True)
    np.save(target, _labels())
    assert per_image_map_path(tmp_path / "maps", "test/bad/012.JPG") == target
    with pytest.raises(SegmentMapError, match="013"):
        per_image_map_path(tmp_path / "maps", "test/bad/013.JPG")
    config = SegmentMapConfig(**{"method": "per_image", "folder": str(tmp_path / "maps"), "n_segments": 3})
    seg = resolve_segmentation(config, ["c"], 8)
    assert not seg.is_static("c")
    assert seg.labels_for("c", ["test/bad/012.JPG"]).shape == (1, 8, 8)


def test_per_category_segment_counts(tmp_path):
    for name, n in (("pcb1/0", 6), ("candle/0", 2)):
        (tmp_path / name).parent.mkdir(parents=True)
        np.save(tmp_path / f"{name}.npy", np.arange(8)[None, :].repeat(8, 0) * n // 8)
    counts = {"default": 2, "pcb1": 6}
    config = SegmentMapConfig(method="per_image", folder=str(tmp_path), n_segments=counts)
    seg = resolve_segmentation(config, ["candle", "pcb1"], 8)
    assert seg.n_segments == {"candle": 2, "pcb1": 6}
    assert seg.labels_for("pcb1", ["pcb1/0.JPG"]).max() == 5
    with pytest.raises(SegmentMapError, match=r"0\.npy.*label 5 outside \[0, 2\)"):  # the default count is checked
        seg.labels_for("candle", ["pcb1/0.JPG"])
    assert segment_count(3, "any") == 3 and segment_count(None, "any") is None
    with pytest.raises(SegmentMapError, match="no entry for category 'pcb2' and no 'default'"):
        segment_count({"pcb1": 6}, "pcb2")
    with pytest.raises(SegmentMapError, match=r"n_segments\['pcb1'\] must be a positive integer, got 0"):
        segment_count({"pcb1": 0}, "pcb1")
    Image.fromarray(_labels()).save(tmp_path / "s.png")  # static maps check against the category's count too
    static = SegmentMapConfig(method="static", path=str(tmp_path / "s.png"), n_segments={"a": 3, "default": 2})
    assert resolve_segmentation(static, ["a"], 16).n_segments == {"a": 3}
    with pytest.raises(SegmentMapError, match="outside"):
        resolve_segmentation(static, ["b"], 16)


def test_elpv_map_places_both_busbar_layouts_border_corners():
    labels = elpv_segment_map()
    assert labels.shape == (300, 300) and set(np.unique(labels)) == set(ELPV_SEGMENTS) == set(range(5))
    assert (labels[list(ELPV_BUSBAR_ROWS), 150] == 1).all()  # 3-busbar rows
    assert (labels[list(ELPV_BUSBAR_ROWS_2), 150] == 2).all()  # 2-busbar rows
    assert labels[110, 150] == 0 and labels[190, 150] == 0  # interior between busbars
    assert labels[150, 3] == 3 and labels[296, 150] == 3  # border
    assert labels[2, 2] == 4 and labels[297, 297] == 4  # corners
    assert elpv_segment_map(64).shape == (64, 64)


def test_auto_map_separates_regions_that_look_different():
    rng = np.random.default_rng(0)
    images = rng.normal(0.5, 0.01, (10, 32, 32))
    images[:, :, :16] += 0.3  # bright left half
    images[:, 8:12, 20:30] += rng.normal(0, 0.2, (10, 4, 10))  # a noisy patch
    labels = auto_segment_map(images, 3, seed=0)
    assert labels.shape == (32, 32)
    assert len(np.unique(labels[:, :16])) == 1 and labels[0, 0] != labels[0, 31]
    assert labels[10, 25] not in (labels[0, 0], labels[0, 31])
    np.testing.assert_array_equal(labels, auto_segment_map(images, 3, seed=0))


def test_resolve_static_and_single_and_dataset_roundtrip(tmp_path):
    Image.fromarray(_labels()).save(tmp_path / "s.png")
    seg = resolve_segmentation(
        SegmentMapConfig(**{"method": "static", "path": str(tmp_path / "s.png")}), ["a", "b"], 32
    )
    assert seg.n_segments == {"a": 3, "b": 3} and seg.labels_for("a", ["x"]).shape == (32, 32)
    ds = SegmentMapsDataset(str(tmp_path / "maps.npz"))
    ds.save(seg)
    back = ds.load()
    assert back.n_segments == seg.n_segments and back.size == (32, 32)
    np.testing.assert_array_equal(back.static_maps["b"], seg.static_maps["b"])
    single = resolve_segmentation(SegmentMapConfig(method="single"), ["a"], 8)
    assert single.n_segments == {"a": 1} and not single.static_maps["a"].any()
    with pytest.raises(ValueError, match="method"):
        SegmentMapConfig(**{"method": "sam"})


def test_method_follows_from_what_is_given(tmp_path):
    unset = SegmentMapConfig(**{"auto_segments": 3})
    assert unset.method is None
    with pytest.raises(ValueError, match="for_dataset"):
        resolve_segmentation(unset, ["a"], 8)
    Image.fromarray(_labels()).save(tmp_path / "segmentation.png")
    demo = unset.for_dataset("demo", str(tmp_path))
    assert (demo.method, demo.path) == ("static", str(tmp_path / "segmentation.png"))
    # a demo without its map (parts not in register) is segmented as any other dataset
    assert unset.for_dataset("demo", str(tmp_path / "shifted")).method == "auto_select"
    with pytest.raises(ValueError, match="dataset.root"):
        unset.for_dataset("demo", None)
    assert unset.for_dataset("elpv", None).method == "elpv"
    vad = unset.for_dataset("vad", "/data/vad")  # VAD ships no map file: automatic, never the demo's
    assert (vad.method, vad.path, vad.auto_segments) == ("auto_select", None, 3)
    assert vad.image_root == "/data/vad"  # per-image segments read each image from the dataset
    given = SegmentMapConfig(**{"path": "/maps/vad.png"}).for_dataset("vad", "/data/vad")
    assert (given.method, given.path) == ("static", "/maps/vad.png")
    folder = SegmentMapConfig(**{"folder": "/maps", "n_segments": 2}).for_dataset("visa", "/v")
    assert folder.method == "per_image"
    with pytest.raises(ValueError, match="n_segments"):  # a folder still needs its segment count
        SegmentMapConfig(**{"folder": "/maps"}).for_dataset("visa", "/v")
    explicit = SegmentMapConfig(**{"method": "single"})
    assert explicit.for_dataset("demo", "x") is explicit


def test_overlay_marks_borders():
    image = np.zeros((3, 16, 16), np.float32)
    out = overlay(image, _labels())
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out[7, 8] == 255).all()  # border between label 1 and 0 rows is white
    assert not (out[12, 12] == 255).all()


def test_the_legend_names_each_segment_in_its_overlay_colour_with_its_share():
    labels = _labels()
    entries = legend_entries(labels, {2: "left band"})
    assert [text for text, _, _ in entries] == ["segment 0", "segment 1", "left band"]
    assert sum(share for _, _, share in entries) == pytest.approx(1.0)
    assert entries[2][2] == pytest.approx((labels == 2).mean())
    drawn = overlay(np.zeros((3, 16, 16), np.float32), labels, alpha=1.0)  # pure segment colours
    for label, (row, col) in enumerate([(12, 12), (2, 12), (2, 1)]):  # a pixel inside each segment
        assert labels[row, col] == label
        np.testing.assert_array_equal(drawn[row, col], (np.array(entries[label][1]) * 255).astype(np.uint8))


def test_every_method_gives_height_by_width_maps(tmp_path):
    """Non-square map resolution (24 x 40): static, elpv, single, auto, auto_per_image and per-image
    maps all come out (24, 40), and the segments follow the image, not a square crop of it."""
    from segad.storage.images import ImageSize

    size = ImageSize(24, 40)
    Image.fromarray(_labels()).save(tmp_path / "s.png")
    (tmp_path / "maps" / "c").mkdir(parents=True)
    np.save(tmp_path / "maps" / "c" / "0.npy", _labels())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):  # tall parts, 30 wide x 60 high: bright top half
        pixels = rng.normal(100, 3, (60, 30, 3))
        pixels[:30] += 100
        paths.append(str(tmp_path / f"good{i}.png"))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(paths[-1])
    configs = {
        "static": SegmentMapConfig(method="static", path=str(tmp_path / "s.png")),
        "elpv": SegmentMapConfig(method="elpv"),
        "single": SegmentMapConfig(method="single"),
        "auto": SegmentMapConfig(method="auto", auto_segments=2),
        "auto_per_image": SegmentMapConfig(method="auto_per_image", auto_segments=2),
        "per_image": SegmentMapConfig(method="per_image", folder=str(tmp_path / "maps"), n_segments=3),
    }
    for method, config in configs.items():
        seg = resolve_segmentation(config, ["c"], size, {"c": paths}, image_paths={"c/0.png": paths[0]})
        labels = seg.labels_for("c", ["c/0.png"])
        assert labels.shape[-2:] == (24, 40) and seg.size == (24, 40), method
    auto = resolve_segmentation(configs["auto"], ["c"], size, {"c": paths}).static_maps["c"]
    assert (auto[:12] == auto[0, 0]).all() and (auto[12:] != auto[0, 0]).all()  # top half vs bottom half
