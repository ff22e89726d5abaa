"""Building and fitting: every supported model fits on tiny good images and gives raw maps."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from segad.detection.config import SUPPORTED_DETECTORS, DetectorConfig, DetectorConfigError
from segad.detection.fit import build_detector, fit_detector
from segad.detection.inference import predict_maps
from segad.detection.saved import load_detector, save_detector
from segad.storage.images import ImageSize, read_image
from segad.storage.weights import WeightsError
from tests.detection.tiny import CHEAP, PACKAGED, SIZE, config_for, write_images


def test_every_supported_detector_has_cheap_settings():
    assert set(CHEAP) == set(SUPPORTED_DETECTORS)


@pytest.mark.parametrize("name", SUPPORTED_DETECTORS)
@pytest.mark.slow
def test_detector_fits_on_good_images_and_maps_survive_save_and_reload(name, images, tmp_path):
    # EfficientAD's autoencoder needs >= 256 px; SuperSimpleNet's Perlin noise needs > 32 px
    size = {"efficient_ad": 256, "supersimplenet": 64}.get(name, SIZE)
    train = images["train256"] if name == "efficient_ad" else images["train"]
    config = config_for(name, images)
    model = fit_detector(config, train, size, backbone_cache_dir=tmp_path / "bb")
    probe = np.stack([read_image(p, size) for p in images["probe"]])
    maps = predict_maps(model, probe)
    assert maps.shape == (2, size, size) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.std() > 0
    save_detector(model, config, size, tmp_path / "saved")
    reloaded, reloaded_config, reloaded_size = load_detector(tmp_path / "saved", backbone_cache_dir=tmp_path / "bb2")
    assert reloaded_config == config and reloaded_size == ImageSize(size, size)
    np.testing.assert_allclose(predict_maps(reloaded, probe), maps, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_non_square_maps_are_height_by_width_and_keyed_apart(name, images, tmp_path):
    """EfficientNet-Lite0 PatchCore / PaDiM at 32 x 64 (feature maps 8 x 16 and 4 x 8): maps are
    (32, 64), survive save and reload, and the model key differs from the square runs'."""
    from segad.detection.saved import model_key

    size = ImageSize(32, 64)
    config = config_for(name, images)
    model = fit_detector(config, images["train"], size, backbone_cache_dir=tmp_path / "bb")
    probe = np.stack([read_image(p, size) for p in images["probe"]])
    maps = predict_maps(model, probe)
    assert probe.shape == (2, 3, 32, 64) and maps.shape == (2, 32, 64) and maps.std() > 0
    save_detector(model, config, size, tmp_path / "saved")
    reloaded, _, reloaded_size = load_detector(tmp_path / "saved", backbone_cache_dir=tmp_path / "bb2")
    assert reloaded_size == size
    np.testing.assert_allclose(predict_maps(reloaded, probe), maps, rtol=1e-5, atol=1e-5)
    keys = {str(s): model_key(config, s, ["a"]) for s in (size, ImageSize(64, 32), ImageSize(32, 32))}
    assert len(set(keys.values())) == 3  # (h, w), (w, h) and square never share a cache entry
    assert model_key(config, 32, ["a"]) == keys["32 x 32"]  # an int N keys as before


def test_maps_are_raw_not_normalised(images, fitted_padim):
    model, _ = fitted_padim
    assert model.post_processor is None
    maps = predict_maps(model, np.stack([read_image(p, SIZE) for p in images["probe"]]))
    assert maps.max() > 1.0  # PaDiM Mahalanobis distances, not min-max scaled to [0, 1]


def test_missing_hub_weights_offline_say_how_to_supply_them(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = DetectorConfig.from_dict("patchcore", {"model": {"backbone": "resnet18", "layers": ["layer2"]}})
    with pytest.raises(WeightsError, match="pretrained: false"):
        build_detector(config, SIZE)


def test_missing_local_weights_file_fails_clearly(tmp_path):
    config = DetectorConfig.from_dict(
        "padim", {"model": {"backbone": "resnet18", "layers": ["layer1"]}, "weights": str(tmp_path / "none.pth")}
    )
    with pytest.raises(WeightsError, match="none.pth: backbone weights file not found"):
        build_detector(config, SIZE)


def test_efficient_ad_needs_its_local_teacher_and_folder(tmp_path, images):
    imagenet = os.path.dirname(os.path.dirname(images["imagenet"][0]))
    no_teacher = DetectorConfig.from_dict("efficient_ad", {"train_batch_size": 1, "imagenet_dir": imagenet})
    with pytest.raises(WeightsError, match="teacher_weights"):
        build_detector(no_teacher, 256)
    no_folder = DetectorConfig.from_dict(
        "efficient_ad", {"train_batch_size": 1, "pretrained": False, "imagenet_dir": str(tmp_path / "absent")}
    )
    with pytest.raises(DetectorConfigError, match="absent: no such folder"):
        build_detector(no_folder, 256)


def test_invalid_settings_are_refused():
    with pytest.raises(DetectorConfigError, match="unknown detector"):
        DetectorConfig.from_dict("patchcore2", {})
    with pytest.raises(DetectorConfigError, match="unknown settings"):
        DetectorConfig.from_dict("padim", {"weight": "hub"})
    with pytest.raises(DetectorConfigError, match="post_processor"):
        DetectorConfig.from_dict("padim", {"model": {"post_processor": True}})
    with pytest.raises(DetectorConfigError, match="not possible"):
        build_detector(DetectorConfig.from_dict("stfpm", {"pretrained": False}), SIZE)
    with pytest.raises(WeightsError, match="only ResNet"):
        build_detector(
            DetectorConfig.from_dict("fastflow", {"model": {"backbone": "resnet18"}, "weights": PACKAGED}), SIZE
        )


def test_fit_is_deterministic_whatever_the_global_random_state(images, tmp_path):
    """PaDiM draws its channel subset when built: the seed must be set before that, or a fit in
    another process (a Dask worker) would pick other channels under the same model_key."""
    import random

    config = config_for("padim", images)
    fitted = []
    for state in (1, 2):
        random.seed(state)
        torch.manual_seed(state)
        fitted.append(fit_detector(config, images["train"], SIZE, "cpu", work_dir=tmp_path))
    assert torch.equal(fitted[0].model.idx, fitted[1].model.idx)
    probe = np.stack([read_image(p, SIZE) for p in images["probe"]])
    np.testing.assert_allclose(predict_maps(fitted[0], probe), predict_maps(fitted[1], probe), rtol=1e-5)


def test_padim_channel_subset_does_not_depend_on_the_backbone_cache(images, tmp_path):
    """Writing the backbone cache on first use drew from the global RNG, so PaDiM's channel subset
    (drawn in its constructor) differed between a fresh data folder and one that held a run."""
    config = config_for("padim", images)
    fresh = build_detector(config, SIZE, tmp_path / "cache")  # writes the backbone folder
    torch.rand(7)  # whatever ran before must not matter either
    warm = build_detector(config, SIZE, tmp_path / "cache")  # reads it
    other_seed = build_detector(
        DetectorConfig(**{**config.__dict__, "seed": config.seed + 1}), SIZE, tmp_path / "cache"
    )
    assert torch.equal(fresh.model.idx, warm.model.idx)
    assert not torch.equal(fresh.model.idx, other_seed.model.idx)


def _efficient_ad(images, **settings):
    values = {**config_for("efficient_ad", images).to_dict(), **settings}
    return DetectorConfig.from_dict("efficient_ad", values)


def test_efficient_ad_pad_maps_reaches_the_anomalib_constructor(images):
    default = build_detector(_efficient_ad(images), 256)
    assert default.model.pad_maps is True  # anomalib's default is kept
    model = {**CHEAP["efficient_ad"]["model"], "pad_maps": False}
    assert build_detector(_efficient_ad(images, model=model), 256).model.pad_maps is False


@pytest.mark.slow
def test_efficient_ad_quantiles_come_from_the_brf_train_goods_when_asked(images, tmp_path, monkeypatch):
    """quantiles_from: brf_train (the SegAD reference): the map-normalisation quantiles are computed on
    the held-out good images given as quantile_paths, not on the training images."""
    from anomalib.models import EfficientAd

    seen = []
    real = EfficientAd.map_norm_quantiles

    def spy(self, loader):
        seen.append(list(loader.dataset.paths))
        return real(self, loader)

    monkeypatch.setattr(EfficientAd, "map_norm_quantiles", spy)
    held_out = write_images(tmp_path / "held_out", 1, 5, size=256, bright=True)
    config = _efficient_ad(images, quantiles_from="brf_train")
    model = fit_detector(config, images["train256"], 256, backbone_cache_dir=tmp_path / "bb", quantile_paths=held_out)
    assert seen == [held_out]
    expected = real(model, _quantile_loader(held_out, config))
    for name, value in expected.items():
        torch.testing.assert_close(model.model.quantiles[name], value)
    with pytest.raises(ValueError, match="quantiles_from: brf_train needs good brf_train images"):
        fit_detector(config, images["train256"], 256)


def _quantile_loader(paths, config):
    from segad.detection.fit import _train_loader

    return _train_loader(paths, config, 256, shuffle=False)


def test_quantiles_from_is_checked_and_saved():
    assert (
        DetectorConfig.from_dict("efficient_ad", {"train_batch_size": 1}).to_dict()["quantiles_from"]
        == "detector_train"
    )
    chosen = DetectorConfig.from_dict("efficient_ad", {"train_batch_size": 1, "quantiles_from": "brf_train"})
    assert DetectorConfig.from_dict("efficient_ad", chosen.to_dict()) == chosen
    with pytest.raises(DetectorConfigError, match="quantiles_from: Input should be 'detector_train' or 'brf_train'"):
        DetectorConfig.from_dict("efficient_ad", {"train_batch_size": 1, "quantiles_from": "test"})
    with pytest.raises(DetectorConfigError, match="quantiles_from applies to efficient_ad only"):
        DetectorConfig.from_dict("padim", {"quantiles_from": "brf_train"})
