"""Segments drawn over an image, to check a segment map by eye (the segmentation overlays and
the report's worst cases)."""

from __future__ import annotations

import numpy as np

from segad.storage.images import resize_labels


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 (H, W, 3): `image` (float (3, H, W) or (H, W) in [0, 1]) blended with label colours.

    Segment borders are drawn in white.
    """
    from matplotlib import colormaps

    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image.transpose(1, 2, 0)
    else:
        image = np.repeat(image[..., None], 3, axis=2)
    labels = resize_labels(labels, image.shape[:2])
    colours = colormaps["tab10"](labels % 10)[..., :3]
    blended = (1 - alpha) * image + alpha * colours
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    blended[edge] = 1.0
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)
