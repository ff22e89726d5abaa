"""Fixtures shared by the classifier tests."""

from __future__ import annotations

import pytest

from segad.meta.classifier import ClassifierConfig


def tiny_config(cache_dir: str, **changes) -> ClassifierConfig:
    """The classifier the tests train on tiny images: enabled, frozen stem, eager backend, one model
    (``cross_fit_folds: 0``), one epoch of batches of 4; `changes` on top."""
    settings = {"enabled": True, "mode": "frozen", "epochs": 1, "batch_size": 4, "cross_fit_folds": 0}
    return ClassifierConfig(**{**settings, "backend": "eager", "cache_dir": cache_dir, **changes})


@pytest.fixture(scope="session")
def backbones(tmp_path_factory):
    """One folder for the converted packaged weights, shared by the classifier tests."""
    return str(tmp_path_factory.mktemp("backbones"))


@pytest.fixture
def backends_root(tmp_path, monkeypatch):
    """Converted models (segad.storage.backends' default cache in the system temp dir) under tmp_path."""
    import tempfile

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root
