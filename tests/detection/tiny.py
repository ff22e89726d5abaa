"""Tiny offline detector settings and images shared by the detection tests."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from segad.detection.config import DetectorConfig

SIZE = 32
LITE0 = {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"]}
PACKAGED = "packaged:efficientnet_lite0"
# cheap settings per detector; the ResNet-only models run with explicit random weights (offline)
CHEAP = {
    "patchcore": {"model": {**LITE0, "coreset_sampling_ratio": 0.1, "num_neighbors": 3}, "weights": PACKAGED},
    "padim": {"model": {**LITE0, "n_features": 16}, "weights": PACKAGED},
    "fastflow": {"model": {"backbone": "resnet18", "flow_steps": 2}, "pretrained": False, "trainer": {"max_steps": 1}},
    "reverse_distillation": {
        "model": {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"]},
        "pretrained": False,
        "trainer": {"max_steps": 1},
    },
    "efficient_ad": {
        "model": {"model_size": "small", "teacher_out_channels": 8},
        "pretrained": False,
        "train_batch_size": 1,
        "trainer": {"max_steps": 2},  # anomalib's LR schedule needs >= 2 steps
    },
    "supersimplenet": {"model": LITE0, "weights": PACKAGED, "trainer": {"max_steps": 1}},
    "stfpm": {"model": LITE0, "weights": PACKAGED, "trainer": {"max_steps": 1}},
}


def write_images(folder, n, seed, size=SIZE, bright=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(90, 110, size=(size, size, 3))
        if bright:
            base[size // 4 : size // 2, size // 4 : size // 2] = 255
        path = folder / f"{i:03d}.png"
        Image.fromarray(base.astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def config_for(name, images):
    values = dict(CHEAP[name])
    if name == "efficient_ad":
        values["imagenet_dir"] = str(os.path.dirname(os.path.dirname(images["imagenet"][0])))
    return DetectorConfig.from_dict(name, values)
