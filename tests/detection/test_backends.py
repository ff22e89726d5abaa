"""CPU inference backends: same maps and SegAD features as eager, cached conversion, clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from segad.detection.config import DetectorConfig, DetectorConfigError
from segad.detection.fit import fit_detector
from segad.detection.inference import iter_maps, predict_maps
from segad.segments.statistics import SegmentMap, segment_statistics
from segad.storage import backends
from segad.storage.backends import TOLERANCE, BackendError, check_backend, compiled_detector, converted_path
from segad.storage.images import ImageSize, read_image
from tests.detection.tiny import SIZE, config_for

CONVERTED = [b for b in ("openvino", "onnxruntime") if __import__("importlib.util").util.find_spec(b)]


def _batch(images):
    return np.stack([read_image(p, SIZE) for p in images["probe"] + images["train"]])  # 6 images: batch > 1


@pytest.mark.parametrize("backend", CONVERTED)
@pytest.mark.parametrize("name", ["patchcore", "padim"])
@pytest.mark.slow
def test_backend_maps_and_segad_features_equal_eager(name, backend, fitted, images, tmp_path):
    model = fitted[name]
    x = _batch(images)
    eager = predict_maps(model, x)
    got = predict_maps(model, x, backend=backend, cache_root=tmp_path)
    assert got.shape == eager.shape == (len(x), SIZE, SIZE) and got.dtype == np.float32
    scale = float(eager.max() - eager.min())
    assert np.abs(got - eager).max() <= TOLERANCE * scale
    # odd batch sizes (dynamic batch) give the same maps as the full batch
    assert np.abs(predict_maps(model, x[:1], backend=backend, cache_root=tmp_path) - got[:1]).max() <= TOLERANCE * scale
    # SegAD statistics (q995, skew, kurtosis, mean per segment) move by no more than the maps allow
    labels = np.zeros((SIZE, SIZE), dtype=np.int64)
    labels[SIZE // 2 :] = 1
    segment_map = SegmentMap.from_labels(labels, 2)
    ref, new = segment_statistics(eager, segment_map), segment_statistics(got, segment_map)
    assert np.allclose(new[..., [0, 3]], ref[..., [0, 3]], rtol=0, atol=TOLERANCE * scale)  # q995, mean: map units
    # skew and kurtosis are unitless and ill-conditioned on near-flat segments (the tiny train
    # images' maps): compared where the segment's spread dwarfs the map difference
    diff = float(np.abs(got - eager).max())
    spread = np.stack([[eager[i][labels == s].std() for s in range(2)] for i in range(len(x))])
    wide = spread > 1000 * max(diff, 1e-12)
    assert wide.any()
    assert np.allclose(new[..., [1, 2]][wide], ref[..., [1, 2]][wide], rtol=0, atol=0.01)


@pytest.mark.parametrize("backend", CONVERTED)
@pytest.mark.parametrize("name", ["patchcore", "padim"])
@pytest.mark.slow
def test_non_square_detectors_convert_at_height_by_width(name, backend, images, tmp_path):
    size = ImageSize(32, 64)
    config = config_for(name, images)
    model = fit_detector(config, images["train"], size, backbone_cache_dir=tmp_path / "bb")
    x = np.stack([read_image(p, size) for p in images["probe"] + images["train"]])
    eager = predict_maps(model, x)
    got = predict_maps(model, x, backend=backend, cache_root=tmp_path / "converted")
    assert got.shape == eager.shape == (len(x), 32, 64)
    assert np.abs(got - eager).max() <= TOLERANCE * float(eager.max() - eager.min())
    assert backends.content_key(model, size) != backends.content_key(model, ImageSize(64, 32))
    assert backends.content_key(model, 32) == backends.content_key(model, ImageSize(32, 32))


@pytest.mark.parametrize("backend", CONVERTED)
@pytest.mark.slow
def test_conversion_is_cached_by_key_and_reused(backend, fitted, tmp_path, monkeypatch):
    model = fitted["padim"]
    path = converted_path(model, backend, SIZE, key="k123", cache_root=tmp_path)
    folder = tmp_path / f"k123-{backends.content_key(backends.MapModule(model), SIZE)}"  # of what is converted
    assert path.is_file() and path.parent.parent == folder
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging left over
    monkeypatch.setattr(backends, "_convert", lambda *a: pytest.fail("converted twice"))
    assert converted_path(model, backend, SIZE, key="k123", cache_root=tmp_path) == path
    # without a key: a content hash of the model, stable across calls
    assert backends.content_key(model, SIZE) == backends.content_key(model, SIZE)


@pytest.mark.parametrize("backend", CONVERTED)
@pytest.mark.slow
def test_another_model_under_the_same_key_is_converted_again(backend, fitted, tmp_path, monkeypatch):
    """Another checkout may fit another model under the same model_key: it never gets this one's file."""
    import copy

    model = fitted["padim"]
    path = converted_path(model, backend, SIZE, key="k123", cache_root=tmp_path)
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(t for t in other.parameters() if t.is_floating_point()).add_(1e-3)
    converted = []
    monkeypatch.setattr(backends, "_convert", lambda *a: converted.append(a[-1]) or (a[-1] / "x").touch())
    assert converted_path(other, backend, SIZE, key="k123", cache_root=tmp_path) != path
    assert len(converted) == 1


@pytest.mark.parametrize("backend", CONVERTED)
def test_iter_maps_with_a_backend(backend, fitted, images, tmp_path):
    model = fitted["patchcore"]
    eager = dict(iter_maps(model, images["probe"], SIZE, batch_size=2))
    got = dict(iter_maps(model, images["probe"], SIZE, batch_size=2, backend=backend, cache_root=tmp_path))
    scale = max(float(m.max() - m.min()) for m in eager.values())
    assert max(float(np.abs(got[i] - eager[i]).max()) for i in eager) <= TOLERANCE * scale


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_missing_backend_package_says_what_to_install(backend, monkeypatch, fitted, images):
    monkeypatch.setitem(sys.modules, backend, None)  # import fails as if not installed
    with pytest.raises(BackendError, match=rf"backend {backend} needs the {backend} package.*pip install {backend}=="):
        check_backend(backend)
    with pytest.raises(BackendError, match="pip install"):
        list(iter_maps(fitted["padim"], images["probe"], SIZE, backend=backend))


def test_backend_setting_is_validated_and_not_part_of_model_key():
    assert DetectorConfig.from_dict("padim", {}).backend == "eager"
    config = DetectorConfig.from_dict("padim", {"backend": "openvino"})
    assert config.identity() == DetectorConfig.from_dict("padim", {}).identity()
    assert DetectorConfig.from_dict("padim", config.to_dict()) == config
    assert DetectorConfig.from_dict("padim", {}).to_dict()["backend"] == "eager"  # every setting is saved
    with pytest.raises(
        DetectorConfigError, match="padim: backend: Input should be 'eager', 'openvino' or 'onnxruntime'"
    ):
        DetectorConfig.from_dict("padim", {"backend": "tensorrt"})
    with pytest.raises(BackendError, match="unknown backend"):
        check_backend("tensorrt")
    with pytest.raises(BackendError):
        compiled_detector(object(), "eager", SIZE)  # type: ignore[arg-type]


def test_onnxruntime_needs_onnx_to_export(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(BackendError, match="onnx==1.23.2"):
        check_backend("onnxruntime")
