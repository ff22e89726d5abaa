"""Fixtures shared by the classifier tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def backbones(tmp_path_factory):
    """One folder for the converted packaged weights, shared by the classifier tests."""
    return str(tmp_path_factory.mktemp("backbones"))
