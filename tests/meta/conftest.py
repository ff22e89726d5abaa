"""Fixtures shared by the classifier tests."""

from __future__ import annotations

import pytest


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
