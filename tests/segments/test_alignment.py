"""The alignment measure: share of good images in register with the others."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segad.segments.alignment import alignment, best_shifts, choose_method


def _scene(rng, shift=(0, 0), size=(64, 80)):
    """A part (bright bar + dark block) on a gray background, shifted by `shift` pixels: (H, W)."""
    image = 0.4 + rng.normal(0, 0.02, size)
    y, x = size[0] // 2 + shift[0], size[1] // 2 + shift[1]
    image[y - 12 : y - 6, x - 20 : x + 20] = 0.9
    image[y : y + 10, x - 8 : x + 8] = 0.05
    return image


def test_aligned_set_scores_one_shifted_set_scores_low():
    rng = np.random.default_rng(0)
    aligned = np.stack([_scene(rng) * rng.uniform(0.7, 1.2) for _ in range(8)])  # contrast changes do not count
    shifts = [(-14, 18), (12, -16), (0, 20), (-10, -20), (14, 6), (6, -10), (-8, 10), (10, 16)]
    shifted = np.stack([_scene(rng, s) for s in shifts])
    assert alignment(aligned) == 1.0
    assert alignment(shifted) <= 0.25
    assert choose_method(alignment(aligned), 0.6) == "auto"
    assert choose_method(alignment(shifted), 0.6) == "auto_per_image"
    rgb = np.repeat(shifted[:, None], 3, axis=1)
    assert alignment(rgb) == alignment(shifted)
    found = best_shifts(shifted)
    assert found.shape == (8, 2) and (np.abs(found).max(axis=1) > 1).mean() >= 0.75


def test_degenerate_inputs():
    assert math.isnan(alignment(np.zeros((3, 16, 16))))  # constant images carry no layout
    assert math.isnan(alignment(np.random.default_rng(0).random((1, 16, 16))))
    assert choose_method(float("nan"), 0.6) == "auto_per_image"
    with pytest.raises(ValueError, match="images"):
        alignment(np.zeros((4, 4)))
