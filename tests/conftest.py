"""Shared test setup: offline, no telemetry, headless plots; tiny datasets built on the fly."""

from __future__ import annotations

import os
import zlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# No MLflow run from tests unless a test asks for one (SEGAD_TRACKING=on, tests/test_tracking.py).
os.environ.setdefault("SEGAD_TRACKING", "off")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from segad.ingestion.demo import DemoConfig, write_demo  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]

TINY_DEMO = DemoConfig(n_train_good=12, n_train_bad=6, n_test_good=6, n_test_bad=5, n_test_unseen=4, image_size=64)


def write_png(path: Path, size: tuple[int, int] = (32, 32), value: int = 128, mode: str = "RGB") -> Path:
    """Write a small noisy image (width, height) at `path`, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))  # stable across processes
    channels = 3 if mode == "RGB" else 1
    pixels = np.clip(value + rng.normal(0, 10, (size[1], size[0], channels)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A small demo dataset (64 px, 33 images) in the VAD layout with its segmentation.png."""
    return write_demo(tmp_path_factory.mktemp("demo") / "demo", TINY_DEMO)
