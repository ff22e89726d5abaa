"""Supervised classifier g(I): trains a few steps on tiny images with the packaged weights (both modes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segad.evaluation.metrics import auroc
from segad.meta.classifier import (
    ClassifierConfig,
    build_model,
    fit_classifier,
    predict_scores,
)
from segad.meta.classifier_protocol import classifier_scores
from segad.meta.classifier_stem import ActivationCache
from tests.meta.conftest import tiny_config


def _images(tmp_path, n=8, size=32):
    rows = []
    for i in range(n):
        label = int(i % 2)
        rng = np.random.default_rng(i)
        pixels = np.clip(rng.normal(170 if label else 90, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        rows.append({"image_id": f"{i}.png", "category": "c", "label": label, "path": str(path)})
    return pd.DataFrame(rows)


def test_packaged_weights_are_loaded_not_random(backbones):
    import torch

    from segad.storage.weights import packaged_efficientnet_lite0_state_dict

    a = build_model(
        ClassifierConfig(enabled=True, cache_dir=backbones, mode="full", cross_fit_folds=0, backend="eager")
    )

    assert torch.equal(a.net.conv_stem.weight.detach(), packaged_efficientnet_lite0_state_dict()["conv_stem.weight"])
    assert a.net.get_classifier().out_features == 1
    assert a(torch.rand(2, 3, 32, 32)).shape == (2, 1)


def test_needs_both_labels():
    with pytest.raises(ValueError, match="good and bad"):
        fit_classifier(
            ["x.png"], [0], ClassifierConfig(enabled=True, mode="full", cross_fit_folds=0, backend="eager"), 32, 0
        )


def test_fine_tuning_learns_to_separate_good_from_bad(tmp_path, backbones):
    """Mode full, dark (good) vs bright (bad) 64 px textures: after 4 Adam steps the logits rank them apart."""
    index = _images(tmp_path, n=16, size=64)
    # default learning rate; without re-estimating the batch-norm running statistics after
    # training, eval mode normalises with ImageNet's and this gives AUROC 0.52
    config = ClassifierConfig(
        enabled=True, mode="full", epochs=2, batch_size=8, cache_dir=backbones, cross_fit_folds=0, backend="eager"
    )
    untrained = predict_scores(build_model(config), index.path.tolist(), image_size=64)
    model = fit_classifier(index.path.tolist(), index.label.to_numpy(), config, image_size=64, seed=0)
    trained = predict_scores(model, index.path.tolist(), image_size=64)
    assert auroc(index.label.to_numpy(), trained) == 1.0
    assert not np.allclose(trained, untrained)


def _stem_state(model) -> dict:
    return {
        f"{i}.{k}": v.detach().clone() for i, m in enumerate(model.stem_modules()) for k, v in m.state_dict().items()
    }


def test_frozen_mode_learns_and_leaves_the_stem_unchanged(tmp_path, backbones):
    """Mode frozen: the same task after 8 steps on cached activations; stem weights and BN statistics untouched."""
    index = _images(tmp_path, n=16, size=64)
    config = tiny_config(backbones, frozen_blocks=5, epochs=4, batch_size=8)
    fresh = build_model(config)
    before, tail_before = _stem_state(fresh), [p.detach().clone() for p in fresh.tail.parameters()]
    cache = ActivationCache()
    model = fit_classifier(index.path.tolist(), index.label.to_numpy(), config, image_size=64, seed=0, cache=cache)
    assert model.steps == 8 and cache.computed == 16
    after = _stem_state(model)
    assert before.keys() == after.keys() and all(torch_equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for m in model.stem_modules() for p in m.parameters())
    assert not all(torch_equal(a, b) for a, b in zip(tail_before, model.tail.parameters()))
    cached = predict_scores(model, index.path.tolist(), image_size=64, cache=cache)
    assert cache.computed == 16  # scoring the training images reuses their activations
    np.testing.assert_allclose(cached, predict_scores(model, index.path.tolist(), image_size=64), rtol=1e-5, atol=1e-4)
    assert auroc(index.label.to_numpy(), cached) == 1.0


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_frozen_mode_is_deterministic_per_seed(tmp_path, backbones):
    index = _images(tmp_path, n=8, size=32)
    splits = pd.DataFrame(
        {
            "image_id": index.image_id.tolist() * 2,
            "split_seed": [0] * 8 + [1] * 8,
            "role": (["brf_train"] * 4 + ["test"] * 4) * 2,
        }
    )
    config = tiny_config(backbones)
    a = classifier_scores(index, splits, None, config, image_size=32)
    b = classifier_scores(index, splits, None, config, image_size=32)
    pd.testing.assert_frame_equal(a, b)
    by_seed = a.pivot(index="image_id", columns="split_seed", values="score").dropna()
    assert not np.allclose(by_seed[0], by_seed[1])  # seeds differ (head initialisation, order, share)


def test_mode_settings_are_checked():
    with pytest.raises(ValueError, match="mode"):
        ClassifierConfig(mode="fast")
    with pytest.raises(ValueError, match="frozen_blocks"):
        ClassifierConfig(mode="frozen", frozen_blocks=8)
    with pytest.raises(ValueError, match="cross_fit_folds"):
        ClassifierConfig(cross_fit_folds=1)
    with pytest.raises(ValueError, match="needs pretrained weights"):
        ClassifierConfig(mode="frozen", pretrained=False)
    assert ClassifierConfig(mode="full", pretrained=False).mode == "full"
