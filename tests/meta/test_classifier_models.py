"""Kept classifier models: the model(s) of each seed reload and give the seed's test scores again."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import segad.meta.classifier_protocol as protocol
from segad.meta.classifier_models import combined_logits, kept_folders, load_classifier, model_folders, models_kept
from segad.meta.classifier_protocol import classifier_scores
from segad.storage.images import read_image
from segad.storage.persistence import DetectorLoadError
from tests.meta.conftest import tiny_config
from tests.meta.test_classifier import _images


def _split(index: pd.DataFrame) -> pd.DataFrame:
    roles = ["detector_train"] * 4 + ["brf_train"] * 8 + ["test"] * 4
    return pd.DataFrame({"image_id": index.image_id, "split_seed": 0, "role": roles})


@pytest.mark.parametrize("mode, folds", [("frozen", 0), ("frozen", 2), ("full", 0)])
def test_kept_models_reproduce_the_test_scores(tmp_path, backbones, mode, folds):
    index = _images(tmp_path, n=16)
    splits = _split(index)
    config = tiny_config(backbones, max_steps=2, mode=mode, cross_fit_folds=folds)
    scores = classifier_scores(index, splits, None, config, image_size=32, models=tmp_path / "models")
    (key,) = scores["model_key"].unique()
    assert key.startswith("classifier/seed_0/") and models_kept(tmp_path / "models", key, max(folds, 1))
    test = splits[splits.role == "test"].image_id
    expected = scores.set_index("image_id").loc[test, "score"].to_numpy()
    before = torch.random.get_rng_state()
    loaded = [load_classifier(folder)[0] for folder in model_folders(tmp_path / "models", key, max(folds, 1))]
    assert torch.equal(torch.random.get_rng_state(), before)  # reloading draws no random numbers
    x = np.stack([read_image(p, 32) for p in index.set_index("image_id").loc[test, "path"]])
    # the same function of each image; another batch composition than training's may move it by ~1e-5
    np.testing.assert_allclose(combined_logits(loaded, x), expected, rtol=1e-5, atol=1e-4)
    _, kept_config, size = load_classifier(model_folders(tmp_path / "models", key, 1)[0], device="auto")
    assert kept_config == config and size.hw == (32, 32)


def test_stored_scores_without_kept_models_are_computed_again(tmp_path, monkeypatch, backbones):
    from segad.storage.map_store import MapStore

    index = _images(tmp_path, n=16)
    splits = _split(index)
    store, models = MapStore(tmp_path / "store"), tmp_path / "models"
    config = tiny_config(backbones, max_steps=1)
    first = classifier_scores(index, splits, None, config, image_size=32, store=store)  # no models kept
    fits = []
    real = protocol.fit_classifier
    monkeypatch.setattr(protocol, "fit_classifier", lambda *a, **k: fits.append(1) or real(*a, **k))
    second = classifier_scores(index, splits, None, config, image_size=32, store=store, models=models)
    assert len(fits) == 1 and models_kept(models, first["model_key"][0], 1)
    third = classifier_scores(index, splits, None, config, image_size=32, store=store, models=models)
    assert len(fits) == 1  # scores and models kept: nothing trained
    pd.testing.assert_frame_equal(second, third)


def test_a_damaged_kept_model_is_named(tmp_path, backbones):
    index = _images(tmp_path, n=16)
    config = tiny_config(backbones, max_steps=1)
    scores = classifier_scores(index, _split(index), None, config, image_size=32, models=tmp_path / "models")
    (folder,) = model_folders(tmp_path / "models", scores["model_key"][0], 1)
    state = folder / "state_dict.pt"
    state.write_bytes(state.read_bytes()[:-10])
    with pytest.raises(DetectorLoadError, match="checksum mismatch"):
        load_classifier(folder)
    # verified before reuse: the scores' models count as not kept (trained again), and a bundle
    # refuses to take them
    assert not models_kept(tmp_path / "models", scores["model_key"][0], 1)
    with pytest.raises(ValueError, match=rf"{state}: checksum mismatch"):
        kept_folders(tmp_path / "models", scores["model_key"][0])
    shutil.rmtree(folder)
    with pytest.raises(DetectorLoadError, match="not a saved detector"):
        load_classifier(folder)
