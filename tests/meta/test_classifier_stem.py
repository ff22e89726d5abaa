"""The classifier's frozen stem: activations cached by file content, run eagerly or by a converted CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segad.evaluation.metrics import auroc
from segad.meta.classifier import ClassifierConfig, build_model, fit_classifier, predict_scores
from segad.meta.classifier_stem import ActivationCache
from tests.meta.conftest import tiny_config
from tests.meta.test_classifier import _images, torch_equal


def test_activation_cache_follows_the_file_contents(tmp_path, backbones):
    index = _images(tmp_path, n=4, size=32)
    model = build_model(
        ClassifierConfig(
            enabled=True, mode="frozen", frozen_blocks=2, cache_dir=backbones, cross_fit_folds=0, backend="eager"
        )
    )
    cache = ActivationCache()
    paths = index.path.tolist()
    first = cache.activations(model, paths, 32)
    assert first.shape[0] == 4 and cache.computed == 4
    again = cache.activations(model, paths[::-1], 32)
    assert cache.computed == 4 and torch_equal(again.flip(0), first)
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(paths[1])  # the image changes on disk
    changed = cache.activations(model, paths, 32)
    assert cache.computed == 5 and not torch_equal(changed[1], first[1]) and torch_equal(changed[0], first[0])
    cache.activations(model, paths, 64)  # another image size is another input
    assert cache.computed == 9


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
@pytest.mark.slow
def test_converted_stem_gives_the_eager_activations_and_scores(tmp_path, backends_root, backbones, backend):
    """A frozen stem run by a CPU backend: activations and trained scores equal eager within tolerance."""
    from segad.storage.backends import TOLERANCE

    index = _images(tmp_path, n=16, size=64)
    paths, labels = index.path.tolist(), index.label.to_numpy()
    config = tiny_config(backbones, frozen_blocks=5, epochs=4, batch_size=8)
    model = build_model(config)
    eager, converted = ActivationCache(4), ActivationCache(4, backend)
    want, got = eager.activations(model, paths, 64).numpy(), converted.activations(model, paths, 64).numpy()
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.abs(got - want).max() <= TOLERANCE * (want.max() - want.min())
    a = predict_scores(fit_classifier(paths, labels, config, 64, 0, cache=eager), paths, 64, cache=eager)
    b = predict_scores(fit_classifier(paths, labels, config, 64, 0, cache=converted), paths, 64, cache=converted)
    # training amplifies the ~1e-6 relative activation differences (a few Adam steps): the same
    # ranking quality, scores close but not bit-equal
    assert auroc(labels, a) == auroc(labels, b) == 1.0
    assert np.abs(b - a).max() <= 0.05 * (a.max() - a.min()) and np.corrcoef(a, b)[0, 1] > 0.99


@pytest.mark.slow
def test_the_converted_stem_is_reused_by_models_whose_tails_differ(backends_root, backbones):
    import torch

    from segad.meta.classifier_stem import _stem_module
    from segad.storage.backends import converted_path

    config = ClassifierConfig(
        enabled=True, mode="frozen", frozen_blocks=2, cache_dir=backbones, cross_fit_folds=0, backend="eager"
    )
    a, b = build_model(config), build_model(config)
    with torch.no_grad():
        b.tail.head[-1].weight.add_(1.0)  # another fold's trained tail
    first = converted_path(a, "openvino", 32, key="stem", wrap=_stem_module)
    assert converted_path(b, "openvino", 32, key="stem", wrap=_stem_module) == first
    with torch.no_grad():
        b.net.conv_stem.weight.mul_(2.0)  # other stem weights: converted again
    assert converted_path(b, "openvino", 32, key="stem", wrap=_stem_module) != first


@pytest.mark.slow
def test_a_converted_stem_that_disagrees_with_eager_is_refused(tmp_path, backends_root, backbones, monkeypatch):
    import segad.storage.backends as backends
    from segad.storage.backends import BackendMismatchError

    index = _images(tmp_path, n=2, size=32)
    model = build_model(
        ClassifierConfig(
            enabled=True, mode="frozen", frozen_blocks=2, cache_dir=backbones, cross_fit_folds=0, backend="eager"
        )
    )
    real = backends.runner
    monkeypatch.setattr(backends, "runner", lambda *a: lambda x: real(*a)(x) + 1.0)
    with pytest.raises(BackendMismatchError, match="classifier.backend: eager"):
        ActivationCache(2, "openvino").activations(model, index.path.tolist(), 32)
