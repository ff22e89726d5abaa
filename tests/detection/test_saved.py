"""Saved detectors and model_key: plain tensors, damage reported, key tracks what computes the maps."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from segad.detection.config import DetectorConfig
from segad.detection.saved import load_detector, save_detector
from tests.detection.tiny import SIZE


def test_saved_detector_holds_plain_tensors_and_damage_is_reported(fitted_padim, tmp_path):
    from segad.storage.persistence import DetectorLoadError

    model, config = fitted_padim
    save_detector(model, config, SIZE, tmp_path / "d")
    state = torch.load(tmp_path / "d" / "state_dict.pt", weights_only=True)  # no pickled objects inside
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["detector.json", "state_dict.pt"]
    (tmp_path / "d" / "state_dict.pt").write_bytes(b"broken")
    with pytest.raises(DetectorLoadError, match="checksum"):
        load_detector(tmp_path / "d")


def test_model_key_changes_with_the_libraries_that_compute_maps(monkeypatch):
    import segad.detection.saved as detectors

    config = DetectorConfig.from_dict("padim", {"model": {"backbone": "resnet18"}, "pretrained": False})
    key = detectors.model_key(config, 64, ["a", "b"])
    assert detectors.model_key(config, 64, ["b", "a"]) == key  # order of the training set is irrelevant
    installed = detectors.library_versions()
    assert set(installed) == set(detectors.MAP_LIBRARIES) and installed["torch"] == torch.__version__.split("+")[0]
    for name in detectors.MAP_LIBRARIES:
        monkeypatch.setattr(detectors, "library_versions", lambda name=name: {**installed, name: "0.0.1"})
        assert detectors.model_key(config, 64, ["a", "b"]) != key, name
    monkeypatch.setattr(detectors, "library_versions", lambda: installed)
    monkeypatch.setattr(detectors, "FORMAT_VERSION", detectors.FORMAT_VERSION + 1)
    assert detectors.model_key(config, 64, ["a", "b"]) != key
