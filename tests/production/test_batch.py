"""segad.production.batch: scoring a list of images with a bundle."""

from __future__ import annotations

import numpy as np

import segad.detection.inference
from segad.production.batch import score_images
from segad.production.bundle import load_bundle


def test_a_non_finite_map_is_that_images_error_and_the_batch_goes_on(bundle_dir, tiny_demo, monkeypatch):
    bundle = load_bundle(bundle_dir)
    models = bundle.load_detectors("cpu")
    real = segad.detection.inference.predict_maps

    def second_map_broken(model, x, **options):
        maps = real(model, x, **options)
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
