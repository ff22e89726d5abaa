"""Per-image segments in a bundle: the shared centres are bundled, checked on load, and segment new images."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from segad.meta.brf import brf_scores
from segad.production.batch import batch_features, score_images
from segad.production.bundle import (
    BundleIntegrityError,
    BundleSchemaError,
    BundleVersionError,
    load_bundle,
)
from segad.production.bundle_segments import CLUSTERS_FILE, PER_IMAGE, STATIC
from segad.production.writer import write_bundle
from segad.storage.images import read_image
from tests.production.conftest import SIZE, edit_manifest, train_tiny_bundle

K = 3


@pytest.fixture(scope="module")
def per_image(tiny_demo, tmp_path_factory):
    """write_bundle's arguments of a tiny bundle with per-image segments, and the bundle folder."""
    work = tmp_path_factory.mktemp("per_image")
    trained = train_tiny_bundle(tiny_demo, work, per_image=K)
    folder = write_bundle(work / "bundle", **{k: v for k, v in trained.items() if not k.startswith("_")})
    return trained, folder


def test_the_centres_are_bundled_and_read_back(per_image):
    trained, folder = per_image
    bundle = load_bundle(folder)
    block = bundle.manifest["segmentation"]
    assert block["kind"] == PER_IMAGE and block["n_segments"] == K and block["file"] == CLUSTERS_FILE
    assert block["layers"] == list(trained["clusters"].layers) and block["weights"] == "packaged:efficientnet_lite0"
    assert CLUSTERS_FILE in bundle.manifest["files"] and not (folder / "segmentation.npy").exists()
    assert bundle.segments is None and bundle.n_segments == K
    for name, array in trained["clusters"].to_arrays().items():
        np.testing.assert_array_equal(getattr(bundle.segmentation.clusters, name), array)


def test_new_images_get_the_features_and_scores_of_training(per_image):
    """The BRF rows scored through the bundle: each image's own labels, its features and its score
    are those the training computed (labels on another batch composition than in training)."""
    trained, folder = per_image
    bundle = load_bundle(folder)
    models = bundle.load_detectors("cpu")
    paths = trained["_paths"]
    x = np.stack([read_image(p, SIZE) for p in paths])
    computed = batch_features(x[:5], bundle, models)
    np.testing.assert_array_equal(computed.labels, trained["_labels_per_image"][:5])
    assert computed.labels.shape == (5, SIZE, SIZE) and len(np.unique(computed.labels)) > 1
    np.testing.assert_allclose(computed.features, trained["_features"][:5], rtol=1e-6, atol=1e-7)
    table = score_images(paths, bundle, models, batch_size=4, explain="all", progress=False).table
    assert (table["status"] == "ok").all()
    np.testing.assert_allclose(table["score"], brf_scores(trained["brf"], trained["_features"]), atol=1e-5)
    contrib = [c for c in table.columns if c.startswith("contrib_seg")] + ["contrib_global", "contrib_bias"]
    assert len(contrib) == K + 2
    np.testing.assert_allclose(table[contrib].sum(axis=1), table["score"], atol=1e-4)
    assert set(table["top_segment_name"].dropna()) <= {f"seg{k}" for k in range(K)}


def test_an_overlay_shows_the_images_own_segments(per_image, tiny_demo):
    """A rejected part's overlay highlights its own segment (threshold below every score)."""
    import dataclasses

    _, folder = per_image
    bundle = load_bundle(folder)
    bundle.operating_point = dataclasses.replace(bundle.operating_point, threshold=-1e9)
    paths = sorted((tiny_demo / "test" / "bad").glob("*.png"))[:2]
    result = score_images(paths, bundle, bundle.load_detectors("cpu"), progress=False)
    assert (result.table["decision"] == "reject").all() and len(result.overlays) == 2
    assert result.seconds["segments"] > 0


def test_damaged_or_foreign_centres_are_refused(per_image, tmp_path, caplog):
    trained, _ = per_image
    folder = write_bundle(tmp_path / "b", **{k: v for k, v in trained.items() if not k.startswith("_")})
    edit_manifest(folder, lambda m: m["segmentation"].update(weights_fingerprint="packaged:other:0123"))
    with pytest.raises(BundleVersionError, match="packaged backbone weights differ from training"):
        load_bundle(folder)
    with caplog.at_level(logging.WARNING, logger="segad.production.bundle_segments"):
        assert load_bundle(folder, allow_version_mismatch=True).segmentation.kind == PER_IMAGE
    assert "new images would get other segments" in caplog.text
    edit_manifest(folder, lambda m: m["segmentation"].update(kind="sam"))
    with pytest.raises(BundleVersionError, match="segmentation kind 'sam'"):
        load_bundle(folder)

    folder = write_bundle(tmp_path / "c", **{k: v for k, v in trained.items() if not k.startswith("_")})
    edit_manifest(folder, lambda m: m["segmentation"].update(n_segments=K + 1))
    with pytest.raises(BundleSchemaError, match="the manifest records 4"):
        load_bundle(folder)
    data = bytearray((folder / CLUSTERS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / CLUSTERS_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=f"changed since writing.*{CLUSTERS_FILE}"):
        load_bundle(folder)


def test_write_bundle_takes_one_kind_of_segments(per_image, trained, tmp_path):
    arguments = {k: v for k, v in per_image[0].items() if not k.startswith("_")}
    with pytest.raises(ValueError, match="exactly one of segments"):
        write_bundle(tmp_path / "both", **arguments, segments=trained["segments"])
    with pytest.raises(BundleSchemaError, match="3 segment centres, but n_segments is 5"):
        write_bundle(tmp_path / "count", **arguments, n_segments=5)
    assert not (tmp_path / "both").exists() and not (tmp_path / "count").exists()


def test_a_bundle_of_an_earlier_format_is_refused_with_what_to_do(bundle_dir):
    """Bundles before format 4 (saved detectors without every setting) are not read: retrain them."""
    assert json.loads((bundle_dir / "manifest.json").read_text())["segmentation"]["kind"] == STATIC

    def as_version_1(manifest):
        manifest.update(format_version=1)
        del manifest["segmentation"]

    edit_manifest(bundle_dir, as_version_1)
    with pytest.raises(BundleVersionError, match=r"bundle format version 1, this segad reads version 4 \(retrain"):
        load_bundle(bundle_dir)
    edit_manifest(bundle_dir, lambda m: m.update(format_version=4))  # the current version, a key missing
    with pytest.raises(BundleIntegrityError, match=r"the manifest lacks \['segmentation'\]"):
        load_bundle(bundle_dir)
