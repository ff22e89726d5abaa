"""Spatially coherent per-image segments: no segment piece smaller than a minimum area.

Per-image clusters of a uniform texture can be speckle: many small, interleaved pieces that are
no part of anything. `coherent_labels` keeps every connected piece (4-connectivity) of at least
`min_pixels` pixels, and the largest piece of the image in any case, and gives every pixel of a
smaller piece the label of the nearest kept pixel (Euclidean distance transform), so each
smaller piece is absorbed by the pieces around it. Afterwards every connected piece of every
segment has at least `min_pixels` pixels (or is the image's largest piece); a label may vanish
from an image, which the segment statistics treat as an empty segment.

Example:
    >>> import numpy as np
    >>> from segad.segments.coherence import coherent_labels
    >>> labels = np.zeros((8, 8), np.int64); labels[4:, :] = 1; labels[1, 1] = 1
    >>> coherent_labels(labels, min_pixels=4)[1, 1]
    np.int64(0)
"""

from __future__ import annotations

import numpy as np


def pieces(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(piece id per pixel int64 (H, W) from 0, pixel count per piece) of a label map (4-connectivity)."""
    from scipy.ndimage import label as connected

    ids = np.full(labels.shape, -1, dtype=np.int64)
    offset = 0
    for value in np.unique(labels):
        found, count = connected(labels == value)
        inside = found > 0
        ids[inside] = found[inside] - 1 + offset
        offset += int(count)
    return ids, np.bincount(ids.ravel(), minlength=offset)


def coherent_labels(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """`labels` (H, W) with every connected piece smaller than `min_pixels` absorbed by its neighbours."""
    from scipy.ndimage import distance_transform_edt

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"coherent_labels takes one (H, W) label map, got shape {labels.shape}")
    if min_pixels <= 1:
        return labels.copy()
    ids, sizes = pieces(labels)
    keep = sizes >= min_pixels
    keep[int(np.argmax(sizes))] = True
    small = ~keep[ids]
    if not small.any():
        return labels.copy()
    _, (rows, cols) = distance_transform_edt(small, return_indices=True)
    return labels[rows, cols]


def coherent_stack(labels: np.ndarray, min_area: float) -> np.ndarray:
    """`coherent_labels` of each map of int (N, H, W) `labels`, `min_area` a fraction of H x W."""
    if min_area <= 0:
        return labels
    height, width = labels.shape[1:]
    min_pixels = int(np.ceil(min_area * height * width))
    return np.stack([coherent_labels(one, min_pixels) for one in labels]) if len(labels) else labels
