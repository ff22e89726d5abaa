"""Catalogue of bad inputs (docs/bad_inputs.md): each case asserts the type and message the user sees."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segad.detection.config import DetectorConfig, DetectorConfigError
from segad.storage.images import ImageReadError, image_size, read_image, read_mask
from tests.conftest import write_png


def test_missing_image(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: no such image file"):
        read_image(tmp_path / "nope.png")


def test_zero_byte_png(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: unreadable or truncated image"):
        read_image(tmp_path / "empty.png")


def test_truncated_png(tmp_path):
    path = write_png(tmp_path / "cut.png", (64, 64))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match=r"cut\.png: unreadable or truncated image"):
        read_image(path)


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.png: unreadable or truncated image"):
        image_size(tmp_path / "notes.png")


def test_directory_named_png(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageReadError, match=r"dir\.png: no such image file"):
        read_image(tmp_path / "dir.png")


def test_truncated_mask(tmp_path):
    path = write_png(tmp_path / "m.png", (64, 64), mode="L")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ImageReadError, match=r"m\.png: unreadable or truncated image"):
        read_mask(path)


def test_jpeg_named_png_accepted(tmp_path):
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "x.png", format="JPEG")
    assert read_image(tmp_path / "x.png").shape == (3, 8, 8)


def test_16bit_png_accepted(tmp_path):
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").shape == (3, 8, 8)


def test_rgba_accepted_alpha_dropped(tmp_path):
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (3, 8, 8) and np.isclose(out[0, 0, 0], 10 / 255)


def test_cmyk_jpeg_accepted(tmp_path):
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (3, 8, 8)


def test_grayscale_accepted(tmp_path):
    write_png(tmp_path / "g.png", (8, 6), mode="L")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (3, 6, 8) and np.array_equal(out[0], out[2])


def test_one_pixel_accepted_resized(tmp_path):
    write_png(tmp_path / "p.png", (1, 1))
    assert read_image(tmp_path / "p.png", size=16).shape == (3, 16, 16)


def test_exif_rotation_not_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (8, 4)).save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (3, 4, 8)


def test_decompression_bomb(tmp_path, monkeypatch):
    write_png(tmp_path / "big.png", (64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match=r"big\.png: too many pixels, refused as a possible decompression bomb"):
        read_image(tmp_path / "big.png")


def test_decompression_bomb_in_layout_skip(tmp_path, monkeypatch):
    root = _vad(tmp_path)
    write_png(root / "test" / "bad" / "huge.png", (64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # error above 2x: 16x16 passes, 64x64 fails
    index, problems = build_index("vad", root, on_bad_image="skip")
    assert list(problems.path.str.endswith("huge.png")) == [True]
    assert "decompression bomb" in problems.problem.iloc[0]


@pytest.mark.parametrize("name", ["patchcore_x", "PatchCore", ""])
def test_unknown_detector(name):
    with pytest.raises(DetectorConfigError, match="unknown detector"):
        DetectorConfig.from_dict(name, {})


def test_unknown_detector_setting():
    with pytest.raises(DetectorConfigError, match="max_epoch"):
        DetectorConfig.from_dict("patchcore", {"max_epoch": 1})


def test_unknown_params_key():
    from segad.meta.brf_params import BRFParams

    with pytest.raises(ValueError, match=r"model\.max_depht\n  Unexpected keyword argument"):
        BRFParams(**{"model": {"max_depht": 5}})


# --- layouts ---------------------------------------------------------------------------------

from segad.ingestion.layouts import LayoutError, build_index  # noqa: E402


def _vad(root, n=2):
    for split in ("train", "test"):
        for i in range(n):
            write_png(root / split / "good" / f"{split}_g{i}.png", (16, 16))
    write_png(root / "test" / "bad" / "b0.png", (16, 16))
    return root


def _mvtec(root, cat="cat"):
    write_png(root / cat / "train" / "good" / "000.png", (16, 16))
    write_png(root / cat / "test" / "good" / "000.png", (16, 16))
    write_png(root / cat / "test" / "crack" / "000.png", (16, 16))
    write_png(root / cat / "ground_truth" / "crack" / "000_mask.png", (16, 16), mode="L")
    return root


def test_root_not_set():
    with pytest.raises(LayoutError, match="dataset.root is not set"):
        build_index("vad", None)


def test_root_missing(tmp_path):
    with pytest.raises(LayoutError, match=r"dataset.root .*nowhere does not exist or is not a folder"):
        build_index("vad", tmp_path / "nowhere")


def test_root_is_a_file(tmp_path):
    """Stands in for an unwritable/unusable data folder: root ignores chmod, a file path is testable."""
    (tmp_path / "data").write_text("x")
    with pytest.raises(LayoutError, match=r"data does not exist or is not a folder"):
        build_index("vad", tmp_path / "data")


def test_unknown_layout(tmp_path):
    with pytest.raises(LayoutError, match="unknown dataset.layout 'vda'"):
        build_index("vda", tmp_path)


def test_bad_on_bad_image(tmp_path):
    with pytest.raises(ValueError, match="dataset.on_bad_image must be 'fail' or 'skip', got 'ignore'"):
        build_index("vad", _vad(tmp_path), on_bad_image="ignore")


def test_vad_missing_folders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(LayoutError, match=r"not a VAD-style folder: expected train/good.*found train/"):
        build_index("vad", tmp_path)


def test_vad_without_the_optional_folders_is_read(tmp_path):
    # the error names train/bad, test/bad and test/bad_unseen_defects as optional: a folder without them works
    write_png(tmp_path / "train" / "good" / "a.png")
    write_png(tmp_path / "test" / "good" / "b.png")
    write_png(tmp_path / "train" / "bad" / "c.png")
    index, _ = build_index("vad", tmp_path)
    assert sorted(index["label"]) == [0, 0, 1] and not index["unseen"].any()


def test_vad_empty_folders(tmp_path):
    (tmp_path / "train" / "good").mkdir(parents=True)
    (tmp_path / "test" / "good").mkdir(parents=True)
    with pytest.raises(LayoutError, match="no images found for layout 'vad'"):
        build_index("vad", tmp_path)


def test_vad_truncated_image_fail(tmp_path):
    root = _vad(tmp_path)
    bad = root / "test" / "bad" / "b0.png"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(ImageReadError, match=r"1 unreadable image or mask file\(s\)[\s\S]*b0\.png"):
        build_index("vad", root)


def test_vad_truncated_image_skip(tmp_path):
    root = _vad(tmp_path)
    bad = root / "test" / "bad" / "b0.png"
    bad.write_bytes(b"")
    index, problems = build_index("vad", root, on_bad_image="skip")
    assert len(problems) == 1 and problems.path.iloc[0].endswith("b0.png")
    assert not index.image_id.str.endswith("b0.png").any()


def test_vad_wrong_extension_ignored(tmp_path):
    root = _vad(tmp_path)
    (root / "test" / "bad" / "notes.txt").write_text("x")
    index, _ = build_index("vad", root)
    assert not index.image_id.str.endswith(".txt").any()


def test_low_shot_bad_json(tmp_path):
    root = _vad(tmp_path)
    (root / "low_shot_train.json").write_text("{")
    with pytest.raises(LayoutError, match=r"low_shot_train\.json: not valid JSON"):
        build_index("vad", root)


def test_low_shot_names_missing_file(tmp_path):
    root = _vad(tmp_path)
    (root / "low_shot_train.json").write_text('{"1": ["ghost.png"]}')
    with pytest.raises(LayoutError, match=r"low_shot_train\.json: draw '1' names files not in train/bad"):
        build_index("vad", root)


def test_mvtec_not_mvtec(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(LayoutError, match="not an MVTec-style folder"):
        build_index("mvtec", tmp_path)


def test_mvtec_masks_without_images(tmp_path):
    root = _mvtec(tmp_path)
    write_png(root / "cat" / "ground_truth" / "crack" / "777_mask.png", (16, 16), mode="L")
    with pytest.raises(LayoutError, match=r"crack: masks without images in test/crack: \['777'\]"):
        build_index("mvtec", root)


def test_mvtec_no_test_folder(tmp_path):
    write_png(tmp_path / "train" / "good" / "0.png")
    with pytest.raises(LayoutError, match="expected a test/ folder beside train/"):
        build_index("mvtec", tmp_path)


def test_mvtec_unknown_category(tmp_path):
    with pytest.raises(LayoutError, match=r"categories \['dog'\] not found; present: \['cat'\]"):
        build_index("mvtec", _mvtec(tmp_path), category="dog")


def test_mvtec_case_only_category(tmp_path):
    with pytest.raises(LayoutError, match=r"categories \['Cat'\] not found; present: \['cat'\]"):
        build_index("mvtec", _mvtec(tmp_path), category="Cat")


def test_names_differing_by_case_accepted(tmp_path):
    root = _vad(tmp_path)
    write_png(root / "train" / "good" / "A.png", (16, 16))
    write_png(root / "train" / "good" / "a.png", (16, 16))
    index, _ = build_index("vad", root)
    if (root / "train" / "good" / "A.png").samefile(root / "train" / "good" / "a.png"):
        pytest.skip("case-insensitive file system")
    assert {"train/good/A.png", "train/good/a.png"} <= set(index.image_id)


def test_symlink_loop(tmp_path):
    root = _vad(tmp_path)
    (root / "test" / "bad" / "loop.png").symlink_to(root / "test" / "bad" / "loop.png")
    index, _ = build_index("vad", root)  # a looping link is not a file: ignored
    assert not index.image_id.str.endswith("loop.png").any()


def test_elpv_root_without_labels(tmp_path):
    with pytest.raises(LayoutError, match=r"no labels\.csv, so it is not an ELPV folder"):
        build_index("elpv", tmp_path)


# --- parameters and splits -------------------------------------------------------------------

import pandas as pd  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from segad.config import SplitOptions  # noqa: E402
from segad.ingestion.splits import SplitConfig, SplitError, make_splits  # noqa: E402
from segad.segments.features import FeatureConfig  # noqa: E402
from segad.segments.statistics import segment_statistics  # noqa: E402


def _index(n_train_bad=3, n_test_bad=4, cat="a"):
    rows = []
    for split, label, n in (("train", 0, 6), ("train", 1, n_train_bad), ("test", 0, 4), ("test", 1, n_test_bad)):
        rows += [
            {"image_id": f"{cat}/{split}/{label}/{i}.png", "category": cat, "split": split, "label": label}
            for i in range(n)
        ]
    return pd.DataFrame(rows)


def test_empty_seeds():
    with pytest.raises(SplitError, match="seeds is empty: give at least one split seed"):
        SplitConfig(seeds=())


def test_unknown_benchmark():
    with pytest.raises(SplitError, match="unknown benchmark 'highshot'"):
        SplitConfig(benchmark="highshot")


def test_detector_share_out_of_range():
    with pytest.raises(ValidationError, match="detector_share\n  Input should be less than 1"):
        SplitOptions(detector_share=1.5)


def test_supervised_regime_category_without_bad():
    with pytest.raises(SplitError, match="a: the high_shot regime needs bad training images; this category has none"):
        make_splits(_index(n_train_bad=0), SplitConfig(benchmark="high_shot", seeds=(0,)))


def test_visa_moved_bad_larger_than_exists():
    with pytest.raises(SplitError, match="a: 4 test bad image\\(s\\); cannot move 10 to brf_train"):
        make_splits(
            _index(), SplitConfig(benchmark="visa_supervised", seeds=(0,), options=SplitOptions(visa_moved_bad=10))
        )


def test_low_shot_n_larger_than_exists():
    with pytest.raises(SplitError, match="low_shot_n=100 but only 3 training bad images"):
        make_splits(_index(), SplitConfig(benchmark="low_shot", seeds=(0,), options=SplitOptions(low_shot_n=100)))


def test_one_good_training_image():
    index = _index()
    index = (
        index[~((index.split == "train") & (index.label == 0))]
        .iloc[:0]
        ._append(index[(index.split == "train") & (index.label == 0)].iloc[:1])
        ._append(index[index.split == "test"])
    )
    with pytest.raises(SplitError, match="a: 1 good training image\\(s\\); need at least 2"):
        make_splits(index, SplitConfig(benchmark="one_class", seeds=(0,)))


def test_features_wrong_type():
    with pytest.raises(ValueError, match="batch_size\n  Input should be greater than or equal to 1"):
        FeatureConfig(batch_size=0)
    with pytest.raises(ValueError, match="batch_size\n  Input should be a valid integer"):
        FeatureConfig(**{"batch_size": "many"})


# --- data: maps and segments -----------------------------------------------------------------


def test_nan_map_named():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="anomaly map 'img_b' contains NaN or infinite values"):
        segment_statistics(maps, np.zeros((4, 4), np.int64), 1, names=["img_a", "img_b"])


def test_segment_map_wrong_shape():
    with pytest.raises(ValueError, match=r"label map \(8, 8\) does not match maps \(4, 4\)"):
        segment_statistics(np.zeros((1, 4, 4)), np.zeros((8, 8), np.int64), 1)


def test_image_size_differs_from_cached_maps():
    """Maps cached at 4 px, segmentation at the new image_size 6: shape mismatch is named."""
    with pytest.raises(ValueError, match=r"label map \(6, 6\) does not match maps \(4, 4\)"):
        segment_statistics(np.zeros((3, 4, 4)), np.zeros((6, 6), np.int64), 1)


def test_segment_labels_float():
    with pytest.raises(ValueError, match="segment labels must be integers, got dtype float64"):
        segment_statistics(np.zeros((1, 4, 4)), np.zeros((4, 4)), 1)


def test_segment_labels_out_of_range():
    with pytest.raises(ValueError, match=r"segment labels must lie in \[0, 2\)"):
        segment_statistics(np.zeros((1, 4, 4)), np.full((4, 4), 5, np.int64), 2)


def test_maps_not_3d():
    with pytest.raises(ValueError, match=r"maps must be \(N, H, W\), got shape \(4, 4\)"):
        segment_statistics(np.zeros((4, 4)), np.zeros((4, 4), np.int64), 1)


def test_constant_maps_accepted_nan_moments():
    out = segment_statistics(np.full((2, 4, 4), 0.5), np.zeros((4, 4), np.int64), 1)
    assert np.allclose(out[:, 0, [0, 3]], 0.5) and np.isnan(out[:, 0, [1, 2]]).all()  # XGBoost: missing


# --- production: scoring inputs, output folders, bundles -------------------------------------

from segad.production.inputs import InputMismatchError, input_spec_from_paths, list_images, load_checked  # noqa: E402
from segad.storage.files import NotOwnedError, check_owned  # noqa: E402


def test_mixed_sizes_at_scoring(tmp_path):
    spec = input_spec_from_paths([write_png(tmp_path / "t.png", (16, 16))], 16)
    other = write_png(tmp_path / "big.png", (20, 16))
    with pytest.raises(
        InputMismatchError, match=r"big\.png: wrong size 20x16 \(width x height\); the bundle was trained on 16x16"
    ):
        load_checked(other, spec)


def test_grayscale_for_colour_bundle(tmp_path):
    spec = input_spec_from_paths([write_png(tmp_path / "t.png", (16, 16))], 16)
    gray = write_png(tmp_path / "g.png", (16, 16), mode="L")
    with pytest.raises(InputMismatchError, match=r"g\.png: gray image but the bundle was trained on rgb images"):
        load_checked(gray, spec)


def test_training_mixes_gray_and_colour(tmp_path):
    paths = [write_png(tmp_path / "c.png"), write_png(tmp_path / "g.png", mode="L")]
    with pytest.raises(InputMismatchError, match="training images mix grayscale and colour files"):
        input_spec_from_paths(paths, 16)


def test_truncated_image_at_scoring(tmp_path):
    spec = input_spec_from_paths([write_png(tmp_path / "t.png", (16, 16))], 16)
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        load_checked(tmp_path / "cut.png", spec)


def test_score_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"score input folder .*absent does not exist or is not a folder"):
        list_images(tmp_path / "absent")


def test_output_folder_not_owned(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("x")
    with pytest.raises(NotOwnedError, match=r"out: not empty and not written by demo"):
        check_owned(tmp_path / "out", None, "demo")


def test_output_path_is_a_file(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(NotOwnedError, match=r"out: exists and is not a folder"):
        check_owned(tmp_path / "out", None, "demo")


def test_bundle_folder_without_manifest(tmp_path):
    from segad.production.bundle import BundleIntegrityError, load_bundle

    with pytest.raises(BundleIntegrityError, match="no bundle manifest"):
        load_bundle(tmp_path)


from tests.production.conftest import bundle_dir, edit_manifest, trained  # noqa: E402,F401  (fixtures)


def test_bundle_of_another_version(bundle_dir):  # noqa: F811
    from segad.production.bundle import FORMAT_VERSION, BundleVersionError, load_bundle

    edit_manifest(bundle_dir, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleVersionError, match="upgrade segad"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("batch_size", "8", "integer"),
        ("seed", 1.5, "integer"),
        ("amp", "yes", "boolean"),
        ("num_workers", True, "integer"),
    ],
)
def test_detector_setting_of_the_wrong_type(key, value, kind):
    from segad.detection.config import DetectorConfig, DetectorConfigError

    message = rf"detector padim: {key}: Input should be a valid {kind} \(got {value!r}\)"
    with pytest.raises(DetectorConfigError, match=message):
        DetectorConfig.from_dict("padim", {key: value})


def test_garbage_parquet_table(tmp_path):
    """What an in-place write leaves on a full disk: the error names the file."""
    from kedro.io import DatasetError

    from segad.datasets.atomic import ParquetDataset

    path = tmp_path / "image_index.parquet"
    path.write_bytes(b"\0" * 8192)
    with pytest.raises(DatasetError, match=rf"^{path}: not a parquet file or damaged \(ArrowInvalid: .*magic bytes"):
        ParquetDataset(filepath=str(path)).load()


def test_garbage_feature_partition(tmp_path):
    import pandas as pd
    from kedro.io import DatasetError

    from segad.datasets.partitioned_parquet_dataset import PartitionedParquetDataset

    dataset = PartitionedParquetDataset(str(tmp_path / "features"), ["dataset"], lazy=True)
    dataset.save(pd.DataFrame({"dataset": ["demo"], "x": [1.0]}))
    part = tmp_path / "features" / "dataset=demo" / "part-0.parquet"
    part.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=rf"^{part}: not a parquet file or damaged \(ArrowInvalid"):
        dataset.load().read(dataset="demo")


@pytest.mark.parametrize("content", [b"PK\x03\x04truncated", b"not a zip at all", b""])
def test_garbage_npz(tmp_path, content):
    from kedro.io import DatasetError

    from segad.datasets.segment_maps_dataset import SegmentMapsDataset
    from segad.storage.map_store import MapStore, MapStoreError

    path = tmp_path / "segment_maps.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=rf"^{path}: unreadable segment maps \("):
        SegmentMapsDataset(str(path)).load()
    store = MapStore(tmp_path / "maps")
    store.write("k1", np.ones((4, 4), np.float32))
    store.path("k1").write_bytes(content)
    with pytest.raises(MapStoreError, match=rf"^{store.path('k1')}: damaged map file \("):
        store.read("k1")
