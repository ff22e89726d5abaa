"""One backbone pass for several detectors, and lean heads: same maps as each detector alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from anomalib.models.components import GaussianBlur2d

from segad.detection.inference import predict_maps
from segad.detection.lean import LeanMapModule, SeparableBlur, lean_copy
from segad.detection.shared import SharedMaps, detector_maps, shared_groups, shared_module
from segad.storage.backends import TOLERANCE, BackendError, BackendMismatchError, MapModule
from segad.storage.images import read_image
from tests.detection.test_backends import CONVERTED
from tests.detection.tiny import SIZE

NAMES = ["patchcore", "padim"]


def _batch(images):
    return np.stack([read_image(p, SIZE) for p in images["probe"] + images["train"]])  # 6 images


def _close(got, expected):
    scale = float(expected.max() - expected.min())
    return float(np.abs(got - expected).max()) <= TOLERANCE * scale


@pytest.mark.parametrize(("sigma", "channels", "shape"), [(4.0, 1, (40, 56)), (1.5, 2, (17, 9)), (2.0, 1, (64, 64))])
def test_separable_blur_equals_anomalibs_2d_blur(sigma, channels, shape):
    blur = GaussianBlur2d(sigma=sigma, channels=channels)
    x = torch.rand(3, channels, *shape) * 50
    assert torch.allclose(SeparableBlur(blur)(x), blur(x), rtol=0, atol=1e-4)


def test_a_kernel_that_is_not_an_outer_product_is_refused_and_lean_copy_keeps_it():
    blur = GaussianBlur2d(sigma=2.0)
    blur.kernel = blur.kernel.clone()
    blur.kernel[0, 0, 0, 1] += 0.05  # no longer rank one
    with pytest.raises(ValueError, match="not an outer product"):
        SeparableBlur(blur)
    holder = torch.nn.Sequential(blur)
    assert isinstance(lean_copy(holder)[0], GaussianBlur2d)


@pytest.mark.parametrize("name", NAMES)
def test_lean_copy_gives_the_same_maps_and_leaves_the_detector_untouched(name, fitted, images):
    model = fitted[name]
    x = torch.from_numpy(_batch(images))
    lean = LeanMapModule(model).eval()
    assert any(isinstance(m, SeparableBlur) for m in lean.modules())
    assert not any(isinstance(m, SeparableBlur) for m in model.modules())
    with torch.inference_mode():
        assert _close(lean(x).numpy(), MapModule(model).eval()(x).numpy())


def test_patchcore_and_padim_on_one_backbone_share_a_pass(fitted, images):
    assert shared_groups(fitted, NAMES) == [NAMES]
    other = copy.deepcopy(fitted["padim"])
    with torch.no_grad():
        next(other.model.feature_extractor.parameters()).add_(1e-3)  # other weights: its own pass
    assert shared_groups({**fitted, "padim": other}, NAMES) == [["patchcore"], ["padim"]]

    module = SharedMaps([fitted[n] for n in NAMES]).eval()
    calls = {name: 0 for name in NAMES}
    hooks = [  # the detectors' own extractors: the shared pass runs one of them, once
        fitted[name].model.feature_extractor.register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)
        )
        for name in NAMES
    ]
    x = torch.from_numpy(_batch(images))
    with torch.inference_mode():
        maps = module(x).numpy()
    for hook in hooks:
        hook.remove()
    assert maps.shape == (len(x), 2, SIZE, SIZE)
    assert sorted(calls.values()) == [0, 1]  # one backbone pass for both detectors
    for k, name in enumerate(NAMES):
        assert _close(maps[:, k], predict_maps(fitted[name], x.numpy()))


@pytest.mark.parametrize("backend", CONVERTED)
@pytest.mark.slow
def test_detector_maps_on_a_converted_backend_equal_each_detector_alone(backend, fitted, images, tmp_path):
    x = _batch(images)
    got = detector_maps(fitted, NAMES, x, {n: backend for n in NAMES}, cache_root=tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("shared-")]  # one converted module
    assert list(got) == NAMES
    for name in NAMES:
        assert got[name].shape == (len(x), SIZE, SIZE) and got[name].dtype == np.float32
        assert _close(got[name], predict_maps(fitted[name], x))
    one = detector_maps(fitted, NAMES, x[:1], {n: backend for n in NAMES}, cache_root=tmp_path)
    assert all(_close(one[n], got[n][:1]) for n in NAMES)
    assert [p for p in tmp_path.iterdir()] == [folder]  # the second batch converted nothing more
    # eager is the reference: each detector's own anomalib module, bit for bit
    eager = detector_maps(fitted, NAMES, x)
    assert all(np.array_equal(eager[n], predict_maps(fitted[n], x)) for n in NAMES)


@pytest.mark.parametrize("backend", CONVERTED)
@pytest.mark.slow
def test_a_shared_pass_that_drifts_from_the_detectors_is_refused(backend, fitted, images, tmp_path):
    models = [copy.deepcopy(fitted[n]) for n in NAMES]
    with pytest.raises(BackendError, match="a shared pass runs converted"):
        shared_module(models, "eager")
    shared = shared_module(models, backend, tmp_path)
    with torch.no_grad():
        shared.module.heads[0].memory_bank.mul_(3.0)  # the copy no longer matches the patchcore it stands for
    with pytest.raises(BackendMismatchError, match="detector 0 maps differ from eager"):
        shared(_batch(images))
