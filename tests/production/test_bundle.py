"""segad.production.bundle: load what was written, and refuse what does not match."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from segad.detection.inference import predict_maps
from segad.meta.brf import brf_scores, fit_brf
from segad.production.bundle import (
    FORMAT_VERSION,
    BundleIntegrityError,
    BundleSchemaError,
    BundleVersionError,
    load_bundle,
    package_versions,
)
from segad.production.writer import write_bundle
from segad.storage.images import read_image
from tests.production.conftest import SIZE, TINY_BRF, edit_manifest


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
    np.testing.assert_array_equal(
        brf_scores(bundle.brf, trained["_features"]), brf_scores(trained["brf"], trained["_features"])
    )
    assert bundle.brf.get_booster().feature_names == trained["feature_columns"]
    # the bundled detector gives the same maps as the one saved by segad.storage.persistence
    from segad.detection.saved import load_detector

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
    edit_manifest(bundle_dir, lambda m: m["packages"].update(torch="1.13.1", xgboost="1.7.6"))
    with pytest.raises(BundleVersionError, match=r"torch: recorded 1.13.1, installed 2\.14.*xgboost"):
        load_bundle(bundle_dir)
    with caplog.at_level(logging.WARNING, logger="segad.production.bundle"):
        assert load_bundle(bundle_dir, allow_version_mismatch=True).detectors == ["padim"]
    assert "package versions differ" in caplog.text
    edit_manifest(bundle_dir, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleVersionError, match="upgrade segad"):
        load_bundle(bundle_dir, allow_version_mismatch=True)
    edit_manifest(bundle_dir, lambda m: m.update(format="something-else"))
    with pytest.raises(BundleVersionError, match="is not 'segad-bundle'"):
        load_bundle(bundle_dir)


def test_feature_schema_is_checked(trained, bundle_dir, tmp_path):
    edit_manifest(bundle_dir, lambda m: m["computed_columns"].reverse())
    with pytest.raises(BundleSchemaError, match="computes other feature columns"):
        load_bundle(bundle_dir)
    edit_manifest(bundle_dir, lambda m: (m["computed_columns"].reverse(), m["feature_columns"].reverse()))
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


@pytest.mark.parametrize(
    "field, value, refused",
    [
        ("detectors", ["../../elsewhere/padim"], "detector '../../elsewhere/padim' is not one of segad's detectors"),
        ("detectors", ["/abs/padim"], "detector '/abs/padim' is not one of segad's detectors"),
        ("detectors", ["not_a_detector"], "detector 'not_a_detector' is not one of segad's detectors"),
        ("files", {"../outside.bin": "0" * 64}, "file '../outside.bin' is not a plain relative name"),
        ("files", {"detectors/padim/../../x": "0" * 64}, "is not a plain relative name"),
    ],
)
def test_names_in_a_manifest_are_plain_names_checked_before_anything_is_read(
    bundle_dir, tmp_path, monkeypatch, field, value, refused
):
    """A crafted manifest cannot make loading read a file outside the bundle: names are refused
    before any file they name is opened or hashed."""
    import segad.production.bundle as bundle_module

    outside = tmp_path / "elsewhere" / "padim"
    outside.mkdir(parents=True)
    (outside / "detector.json").write_text("{}")
    edit_manifest(bundle_dir, lambda m: m.__setitem__(field, value))
    opened = []
    monkeypatch.setattr(bundle_module, "file_sha256", lambda p: opened.append(p) or "0")
    with pytest.raises(BundleIntegrityError, match=refused):
        load_bundle(bundle_dir)
    assert opened == []  # refused before any bundle file was hashed or read


def test_latest_naming_a_missing_bundle_has_its_own_message(trained, tmp_path):
    from kedro.io import DatasetError

    from segad.datasets.bundle_dataset import BundleDataset
    from segad.production.writer import write_versioned_bundle

    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    parent = tmp_path / "segad_bundle"
    kept = write_versioned_bundle(parent, **arguments).name
    (parent / "LATEST").write_text("20260101T000000Z-0badc0de\n")
    dataset = BundleDataset(str(parent))
    assert dataset.exists()  # so a run does not say that no run has written a bundle
    with pytest.raises(DatasetError) as error:
        dataset.load()
    message = str(error.value)
    assert "names the bundle '20260101T000000Z-0badc0de', which is missing" in message
    assert f"bundles there: 1, the newest {kept}" in message
    assert "no run" not in message


def test_a_blended_bundle_scores_with_its_blend_and_refuses_one_that_reads_no_feature(trained, tmp_path):
    from segad.meta.blend import Blend

    features, labels = trained["_features"], trained["_labels"]
    column = "padim__max"
    member = features[:, trained["feature_columns"].index(column)]
    blend = Blend.of(column, brf_scores(trained["brf"], features)[labels == 0], member[labels == 0])
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    bundle = load_bundle(write_bundle(tmp_path / "blended", **arguments, blend=blend))
    assert bundle.blend is not None and bundle.blend.column == column
    assert "blend" in bundle.manifest["score"]
    expected = blend.score(brf_scores(trained["brf"], features), member)
    np.testing.assert_allclose(bundle.score(features), expected)
    assert not np.allclose(bundle.score(features), brf_scores(trained["brf"], features))
    # an unblended bundle scores with the BRF's raw margin
    plain = load_bundle(write_bundle(tmp_path / "plain", **arguments))
    assert plain.blend is None and plain.manifest["blend"] is None
    np.testing.assert_array_equal(plain.score(features), brf_scores(trained["brf"], features))

    edit_manifest(tmp_path / "blended", lambda m: m["blend"].update(column="patchcore__max"))
    with pytest.raises(BundleSchemaError, match="the blend reads patchcore__max, not a feature column"):
        load_bundle(tmp_path / "blended")
    with pytest.raises(BundleSchemaError, match="not one of the feature columns"):
        write_bundle(tmp_path / "wrong", **arguments, blend=Blend.of("patchcore__max", [0.0], [0.0]))
