"""segad.production.bundle: write, load, and refuse what does not match."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from segad.detection.config import DetectorConfig
from segad.detection.fit import fit_detector
from segad.detection.inference import predict_maps
from segad.detection.persistence import save_detector
from segad.images import read_image
from segad.meta.brf import BRFConfig, brf_scores, fit_brf
from segad.production.bundle import (
    FORMAT_VERSION,
    BundleIntegrityError,
    BundleSchemaError,
    BundleVersionError,
    load_bundle,
    package_versions,
    write_bundle,
)
from segad.production.scoring import choose_operating_point, input_spec_from_paths, out_of_fold_scores
from segad.segments.columns import feature_columns
from segad.segments.features import SegmentLayout, feature_matrix, segment_statistics
from segad.segments.segmentation import read_label_map

SIZE = 32
TINY_DETECTORS = {
    "padim": {"model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"],
                        "n_features": 16},
              "weights": "packaged:efficientnet_lite0"},
}
TINY_BRF = BRFConfig(n_estimators=3, num_parallel_tree=20, max_depth=3)


def train_tiny_bundle(demo_root: Path, work: Path, detectors: dict = TINY_DETECTORS) -> dict:
    """Fit tiny detectors and a BRF on the demo's train split; return write_bundle's arguments.

    Domain functions only (no Kedro): half of train/good fits the detectors, the other half and
    train/bad train the BRF; the operating point comes from out-of-fold BRF scores.
    """
    goods = sorted((demo_root / "train" / "good").glob("*.png"))
    bads = sorted((demo_root / "train" / "bad").glob("*.png"))
    fit_paths, brf_paths = goods[: len(goods) // 2], goods[len(goods) // 2 :] + bads
    labels = np.r_[np.zeros(len(goods) - len(goods) // 2, int), np.ones(len(bads), int)]
    segments = read_label_map(demo_root / "segmentation.png", size=SIZE)
    n_segments = int(segments.max()) + 1
    layout = SegmentLayout.from_labels(segments, n_segments)
    images = np.stack([read_image(p, SIZE) for p in brf_paths])
    dirs, stats, maxima = {}, [], []
    for name, values in detectors.items():
        config = DetectorConfig.from_dict(name, values)
        model = fit_detector(config, fit_paths, image_size=SIZE, work_dir=work)
        dirs[name] = save_detector(model, config, SIZE, work / "detectors" / name)
        maps = predict_maps(model, images)
        stats.append(segment_statistics(maps, layout))
        maxima.append(maps.reshape(len(maps), -1).max(axis=1))
    features = feature_matrix(stats, maxima)
    brf = fit_brf(features, labels, TINY_BRF, seed=0)
    held_out = out_of_fold_scores(features, labels, TINY_BRF, seed=0, n_folds=3)
    return dict(
        detector_dirs=dirs, segments=segments, brf=brf,
        feature_columns=feature_columns(list(detectors), n_segments),
        operating_point=choose_operating_point(labels, held_out, 0.02, source="3-fold out-of-fold"),
        input_spec=input_spec_from_paths(goods + bads, SIZE),
        config={"image_size": SIZE, "detectors": detectors, "split_seed": 0},
        segment_names={0: "background", 1: "disk_ring"},
        _features=features,
        _labels=labels,
    )


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    return train_tiny_bundle(tiny_demo, tmp_path_factory.mktemp("train"))


@pytest.fixture()
def bundle_dir(trained, tmp_path):
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    return write_bundle(tmp_path / "bundle", **arguments)


def _edit_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_round_trip_keeps_models_schema_and_operating_point(trained, bundle_dir, tiny_demo):
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["packages"] == package_versions()
    assert manifest["config"]["image_size"] == SIZE
    assert bundle.feature_columns == trained["feature_columns"]
    assert bundle.operating_point == trained["operating_point"]
    assert bundle.input_spec == trained["input_spec"]
    assert bundle.segment_names[:3] == ["background", "disk_ring", "seg2"]
    np.testing.assert_array_equal(bundle.segments, trained["segments"])
    np.testing.assert_array_equal(brf_scores(bundle.brf, trained["_features"]),
                                  brf_scores(trained["brf"], trained["_features"]))
    assert bundle.brf.get_booster().feature_names == trained["feature_columns"]
    # the bundled detector gives the same maps as the one saved by segad.detection.persistence
    from segad.detection.persistence import load_detector

    x = read_image(sorted((tiny_demo / "test" / "bad").glob("*.png"))[0], SIZE)[None]
    original, _, _ = load_detector(trained["detector_dirs"]["padim"])
    models = bundle.load_detectors("cpu")
    np.testing.assert_array_equal(predict_maps(models["padim"], x), predict_maps(original, x))


def test_loading_unpickles_nothing(bundle_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a bundle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    bundle = load_bundle(bundle_dir)
    assert set(bundle.load_detectors("cpu")) == {"padim"}


def test_damaged_missing_or_extra_files_are_refused(bundle_dir):
    brf = bundle_dir / "brf.ubj"
    data = bytearray(brf.read_bytes())
    data[len(data) // 2] ^= 0xFF
    brf.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"changed since writing.*brf.ubj"):
        load_bundle(bundle_dir)
    brf.unlink()
    with pytest.raises(BundleIntegrityError, match=r"missing.*brf.ubj"):
        load_bundle(bundle_dir)
    with pytest.raises(BundleIntegrityError, match="no bundle manifest"):
        load_bundle(bundle_dir / "detectors")


def test_extra_file_is_refused(bundle_dir):
    (bundle_dir / "detectors" / "padim" / "intruder.pt").write_bytes(b"x")
    with pytest.raises(BundleIntegrityError, match="not in the manifest.*intruder.pt"):
        load_bundle(bundle_dir)


def test_format_and_package_versions_are_checked(bundle_dir, caplog):
    _edit_manifest(bundle_dir, lambda m: m["packages"].update(torch="1.13.1", xgboost="1.7.6"))
    with pytest.raises(BundleVersionError, match=r"torch: bundle 1.13.1, installed 2\.14.*xgboost"):
        load_bundle(bundle_dir)
    with caplog.at_level(logging.WARNING, logger="segad.production.bundle"):
        assert load_bundle(bundle_dir, allow_version_mismatch=True).detectors == ["padim"]
    assert "package versions differ" in caplog.text
    _edit_manifest(bundle_dir, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleVersionError, match="upgrade segad"):
        load_bundle(bundle_dir, allow_version_mismatch=True)
    _edit_manifest(bundle_dir, lambda m: m.update(format="something-else"))
    with pytest.raises(BundleVersionError, match="is not 'segad-bundle'"):
        load_bundle(bundle_dir)


def test_feature_schema_is_checked(trained, bundle_dir, tmp_path):
    _edit_manifest(bundle_dir, lambda m: m["computed_columns"].reverse())
    with pytest.raises(BundleSchemaError, match="computes other feature columns"):
        load_bundle(bundle_dir)
    _edit_manifest(bundle_dir, lambda m: (m["computed_columns"].reverse(), m["feature_columns"].reverse()))
    with pytest.raises(BundleSchemaError, match="not in segad.segments.features' order"):
        load_bundle(bundle_dir)
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    arguments["feature_columns"] = [*arguments["feature_columns"], "seg99__padim__q995"]
    with pytest.raises(BundleSchemaError, match="do not match segad.segments.features"):
        write_bundle(tmp_path / "other", **arguments)
    assert not (tmp_path / "other").exists()


def test_a_brf_on_a_subset_of_the_columns_is_bundled(trained, tmp_path):
    """The brf stage drops columns that are empty for a category; the bundle selects them."""
    keep = [i for i, c in enumerate(trained["feature_columns"]) if not c.endswith("__kurtosis")]
    columns = [trained["feature_columns"][i] for i in keep]
    brf = fit_brf(trained["_features"][:, keep], trained["_labels"], TINY_BRF, seed=0)
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    arguments.update(brf=brf, feature_columns=columns)
    bundle = load_bundle(write_bundle(tmp_path / "subset", **arguments))
    assert bundle.feature_columns == columns
    np.testing.assert_array_equal(bundle.column_positions, keep)


def test_rewriting_replaces_the_bundle_atomically(trained, bundle_dir):
    first = load_bundle(bundle_dir).bundle_id
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    write_bundle(bundle_dir, **arguments)
    assert load_bundle(bundle_dir).bundle_id != first
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == ["bundle"]  # no staging left


def test_a_non_finite_map_is_that_images_error_and_the_batch_goes_on(bundle_dir, tiny_demo, monkeypatch):
    import segad.detection.inference
    from segad.production.scoring import overlay_name, score_images

    bundle = load_bundle(bundle_dir)
    models = bundle.load_detectors("cpu")
    real = segad.detection.inference.predict_maps

    def second_map_broken(model, x):
        maps = real(model, x)
        maps[1, 0, 0] = np.nan
        return maps

    monkeypatch.setattr(segad.detection.inference, "predict_maps", second_map_broken)
    paths = sorted((tiny_demo / "test" / "bad").glob("*.png"))[:3]
    table = score_images(paths, bundle, models, root=tiny_demo, batch_size=3, progress=False).table
    assert table["status"].tolist() == ["ok", "error", "ok"]
    assert table["decision"].tolist()[1] == "error"
    assert "non-finite values" in table["error"][1] and str(paths[1].resolve()) in table["error"][1]
    assert np.isfinite(table["score"][[0, 2]]).all() and np.isnan(table["score"][1])
    monkeypatch.setattr(segad.detection.inference, "predict_maps", real)
    clean = score_images(paths, bundle, models, root=tiny_demo, batch_size=3, progress=False).table
    np.testing.assert_array_equal(clean["score"][[0, 2]], table["score"][[0, 2]])
    # names that sanitise alike still get their own overlay
    assert overlay_name("a/b.png") != overlay_name("a__b.png") != overlay_name("a?b.png")


def test_each_build_is_a_new_version_and_latest_points_to_the_newest(trained, tmp_path):
    from kedro.io import DatasetError

    from segad.datasets.bundle_dataset import BundleDataset
    from segad.production.bundle import LATEST, list_bundles, resolve_bundle

    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    parent = tmp_path / "segad_bundle"
    dataset = BundleDataset(str(parent))
    assert not dataset.exists()
    dataset.save(arguments)
    first = (parent / LATEST).read_text().strip()
    dataset.save(arguments)
    second = (parent / LATEST).read_text().strip()
    assert first != second
    assert list_bundles(parent) == sorted([first, second])  # both kept
    assert sorted(p.name for p in parent.iterdir()) == sorted([LATEST, first, second])  # no temp left
    assert resolve_bundle(parent) == parent / second
    assert dataset.load().bundle_id == second  # the parent loads the latest
    assert load_bundle(parent / second).bundle_id == second  # folder name = bundle_id
    assert BundleDataset(str(parent / first)).load().bundle_id == first  # an explicit older bundle
    with pytest.raises(DatasetError, match="versioned bundle"):
        BundleDataset(str(parent / first)).save(arguments)
    (parent / "notes.txt").write_text("not ours")
    with pytest.raises(DatasetError, match="did not write"):
        dataset.save(arguments)
    assert list_bundles(parent) == sorted([first, second])


def test_an_unversioned_bundle_becomes_the_first_version(trained, bundle_dir):
    from segad.production.bundle import LATEST, list_bundles, write_versioned_bundle

    old = load_bundle(bundle_dir).bundle_id
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    new = write_versioned_bundle(bundle_dir, **arguments)
    assert list_bundles(bundle_dir) == sorted([old, new.name])
    assert (bundle_dir / LATEST).read_text().strip() == new.name
    assert load_bundle(bundle_dir / old).bundle_id == old
