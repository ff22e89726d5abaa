"""Per-image segments of a textured image with a defect are coherent pieces, not speckle."""

from __future__ import annotations

import numpy as np

from segad.segments.auto_segments import fit_feature_clusters
from segad.segments.coherence import coherent_labels, pieces

SIZE = (96, 64)  # tall images


def _texture(seed: int, defect: bool = False) -> np.ndarray:
    """A uniform random texture (gray, (H, W) in [0, 1]); with `defect` a small dark scratch."""
    rng = np.random.default_rng(seed)
    image = 0.5 + 0.15 * rng.standard_normal(SIZE)
    if defect:
        image[40:44, 20:34] = 0.05
    return np.clip(image, 0, 1).astype(np.float32)


def _smallest_piece(labels: np.ndarray) -> int:
    return int(pieces(labels)[1].min())


def test_per_image_segments_of_a_textured_image_with_a_defect_are_coherent():
    goods = np.stack([_texture(seed) for seed in range(6)])
    image = _texture(99, defect=True)[None]
    min_area = 0.01
    min_pixels = int(np.ceil(min_area * SIZE[0] * SIZE[1]))
    raw = fit_feature_clusters(goods, n_segments=4, seed=0, min_area=0.0).labels(image)[0]
    assert _smallest_piece(raw) < min_pixels  # without the clean-up: speckle, the test can fail
    labels = fit_feature_clusters(goods, n_segments=4, seed=0, min_area=min_area).labels(image)[0]
    assert labels.shape == SIZE and labels.min() >= 0 and labels.max() < 4
    ids, sizes = pieces(labels)
    largest = int(np.argmax(sizes))
    assert all(size >= min_pixels for piece, size in enumerate(sizes) if piece != largest)


def test_small_pieces_are_absorbed_by_their_surroundings_and_large_ones_stay():
    labels = np.zeros((20, 20), np.int64)
    labels[10:, :] = 1
    labels[3, 3] = 2  # a 1-pixel piece inside segment 0
    labels[15:17, 15:17] = 0  # a 4-pixel piece of 0 inside segment 1
    out = coherent_labels(labels, min_pixels=5)
    assert out[3, 3] == 0 and (out[15:17, 15:17] == 1).all()
    expected = np.zeros((20, 20), np.int64)
    expected[10:, :] = 1
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(coherent_labels(labels, min_pixels=1), labels)
