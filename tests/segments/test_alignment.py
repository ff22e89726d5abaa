"""The alignment measure: share of good images in register with the others."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segad.segments.alignment import MARGIN, alignment, best_shifts, choose_method, match_gaps


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


def test_parts_that_do_not_change_along_one_axis_are_aligned():
    """Bands across the whole width (as the tall parts of tests/test_nonsquare.py): every horizontal
    shift matches about as well, so noise moves the best shift anywhere along x; the parts are
    still in register (the best-shift rule alone scored such a set 0.08), and bands that move
    up and down are not."""
    rng = np.random.default_rng(0)

    def banded(dy=0):
        part = rng.normal(0.47, 0.03, (96, 48))
        part[24 + dy : 48 + dy] += 0.3
        part[72 + dy :] -= 0.3
        return part

    aligned = np.stack([banded() for _ in range(12)])
    assert (np.abs(best_shifts(aligned)[:, 1]) > 1).any()  # the ridge: best dx wanders
    assert match_gaps(aligned).max() <= MARGIN
    assert alignment(aligned) == 1.0
    moved = np.stack([banded(dy) for dy in (-20, -17, -14, -11, -8, -5, 5, 8, 11, 14, 17, 20)])
    assert alignment(moved) <= 0.25


def test_degenerate_inputs():
    assert math.isnan(alignment(np.zeros((3, 16, 16))))  # constant images carry no layout
    assert math.isnan(alignment(np.random.default_rng(0).random((1, 16, 16))))
    assert choose_method(float("nan"), 0.6) == "auto_per_image"
    with pytest.raises(ValueError, match="images"):
        alignment(np.zeros((4, 4)))
