"""Supervised SuperSimpleNet: trains on good + bad images (masks or labels only), deterministic, errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from segad.detection.supervised import (
    SupervisedImages,
    build_supervised,
    fit_supervised,
    iter_supervised,
    predict_supervised,
)
from segad.detection.supervised_config import SupervisedConfig, SupervisedConfigError, TrainImage, supervised_model_key
from segad.detection.supervised_stage import load_supervised, save_supervised
from segad.storage.images import ImageSize, read_image

SIZE = 64  # blocks.1 (stride 4) -> 16 px features, upscaled 2x -> 32 px: the least anomalib's Perlin noise takes
SETTINGS = {
    "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"]},
    "weights": "packaged:efficientnet_lite0",
    "trainer": {"max_epochs": 4},
    "train_batch_size": 4,
}


def _write(folder, name, rng, bad, with_mask):
    pixels = rng.integers(90, 110, size=(SIZE, SIZE, 3))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    if bad:  # a bright square somewhere
        y, x = rng.integers(4, SIZE - 20, 2)
        pixels[y : y + 16, x : x + 16] = 255
        mask[y : y + 16, x : x + 16] = 255
    path = folder / f"{name}.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    mask_path = None
    if with_mask:
        mask_path = folder / f"{name}_mask.png"
        Image.fromarray(mask).save(mask_path)
    return str(path), (str(mask_path) if mask_path else None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("supervised")
    rng = np.random.default_rng(0)
    goods = [_write(folder, f"good{i}", rng, False, False)[0] for i in range(8)]
    bads = [_write(folder, f"bad{i}", rng, True, True) for i in range(4)]
    test_good = [_write(folder, f"test_good{i}", rng, False, False)[0] for i in range(3)]
    test_bad = [_write(folder, f"test_bad{i}", rng, True, False)[0] for i in range(3)]
    items = [TrainImage(p, 0) for p in goods] + [TrainImage(p, 1, m) for p, m in bads]
    return {"items": items, "test": test_good + test_bad, "backbones": folder / "backbones"}


def _config(**overrides):
    return SupervisedConfig.from_dict({**SETTINGS, **overrides})


def _test_images(data):
    return np.stack([read_image(p, SIZE) for p in data["test"]])


@pytest.fixture(scope="module")
def with_masks(data):
    return fit_supervised(_config(), data["items"], SIZE, backbone_cache_dir=data["backbones"])


@pytest.mark.slow
def test_trains_on_masks_and_bad_images_score_higher(with_masks, data):
    maps, scores = predict_supervised(with_masks, _test_images(data))
    assert maps.shape == (6, SIZE, SIZE) and maps.dtype == np.float32
    assert scores.shape == (6,) and scores.dtype == np.float32
    assert scores[3:].min() > scores[:3].max()
    peaks = maps.reshape(6, -1).max(1)
    assert peaks[3:].min() > peaks[:3].max()


@pytest.mark.slow
def test_label_only_trains_the_classification_head(data):
    config = _config(masks="label_only")
    model = fit_supervised(config, data["items"], SIZE, backbone_cache_dir=data["backbones"])
    _, scores = predict_supervised(model, _test_images(data))
    assert scores[3:].min() > scores[:3].max()


def test_label_only_images_are_left_out_of_the_segmentation_loss(data):
    dataset = SupervisedImages(data["items"], SIZE, "label_only")
    bad = [i.path for i in data["items"] if i.label == 1]
    assert dataset.unknown_mask_paths == frozenset(bad)
    assert not bool(dataset[len(dataset) - 1].gt_mask.any())  # placeholder mask, never read by the loss
    assert SupervisedImages(data["items"], SIZE, "auto").unknown_mask_paths == frozenset()
    no_masks = [TrainImage(i.path, i.label) for i in data["items"]]
    assert SupervisedImages(no_masks, SIZE, "auto").unknown_mask_paths == frozenset(bad)


def test_deterministic_per_seed(data):
    short = {"max_epochs": 1, "max_steps": 2}
    states = [
        fit_supervised(
            _config(trainer=short, seed=seed, masks="auto"), data["items"], SIZE, backbone_cache_dir=data["backbones"]
        ).state_dict()
        for seed in (0, 0, 1)
    ]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_save_load_roundtrip_gives_the_same_outputs(with_masks, data, tmp_path):
    save_supervised(with_masks, _config(), SIZE, tmp_path / "model")
    loaded, config, size = load_supervised(tmp_path / "model", backbone_cache_dir=data["backbones"])
    assert size == ImageSize(SIZE, SIZE) and config == _config()
    images = _test_images(data)
    for a, b in zip(predict_supervised(with_masks, images), predict_supervised(loaded, images), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    streamed = list(iter_supervised(loaded, data["test"], SIZE, batch_size=4))
    assert [i for i, _, _ in streamed] == list(range(6))
    np.testing.assert_allclose([s for _, _, s in streamed], predict_supervised(loaded, images)[1], rtol=1e-5)


def test_no_bad_image_is_a_clear_error(data):
    goods = [i for i in data["items"] if i.label == 0]
    with pytest.raises(SupervisedConfigError, match="no bad image"):
        fit_supervised(_config(), goods, SIZE, backbone_cache_dir=data["backbones"])


def test_masks_policy_requires_every_mask(data):
    items = [*data["items"], TrainImage(data["test"][-1], 1)]
    with pytest.raises(SupervisedConfigError, match="have no mask"):
        fit_supervised(_config(masks="masks"), items, SIZE, backbone_cache_dir=data["backbones"])


def test_too_small_feature_map_is_a_clear_error(data):
    config = _config(model={"backbone": "tf_efficientnet_lite0", "layers": ["blocks.2", "blocks.4"]})
    with pytest.raises(SupervisedConfigError, match="Perlin"):
        fit_supervised(config, data["items"], SIZE, backbone_cache_dir=data["backbones"])


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"epochs": 3}, "unknown settings"),
        ({"masks": "some"}, "masks: Input should be .auto., .masks. or .label_only."),
        ({"cross_fit_folds": 1}, "cross_fit_folds"),
        ({"model": {"supervised": False}}, "set by segad"),
        ({"seed": "0"}, "seed: Input should be a valid integer"),
    ],
)
def test_bad_settings_name_the_key(values, match):
    with pytest.raises(SupervisedConfigError, match=match):
        SupervisedConfig.from_dict(values)


def test_model_key_holds_the_bad_images_and_their_masks(data):
    config = _config()
    goods = [i for i in data["items"] if i.label == 0]
    bads = [i for i in data["items"] if i.label == 1]
    full = supervised_model_key(config, SIZE, data["items"])
    assert supervised_model_key(config, SIZE, list(reversed(data["items"]))) == full
    assert supervised_model_key(config, SIZE, goods + bads[:-1]) != full
    assert supervised_model_key(_config(masks="label_only"), SIZE, data["items"]) != full
    assert supervised_model_key(_config(batch_size=2, cross_fit_folds=5), SIZE, data["items"]) == full


def test_anomalib_alone_refuses_bad_images_without_masks(data):
    """What anomalib 2.7 does on its own (docs/anomaly_maps.md): masks=None with a bad label fails."""
    model = build_supervised(_config(), SIZE, data["backbones"]).model.train()
    with pytest.raises(RuntimeError, match="without GT masks"):
        model(torch.rand(2, 3, SIZE, SIZE), masks=None, labels=torch.tensor([0, 1]))
