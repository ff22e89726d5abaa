"""How aligned a category's good images are: the share of images already in register with the others.

`alignment(images)`: each image is reduced to gray, averaged down to a coarse grid of at most
`GRID` x `GRID` cells (the measure is about where the parts are, not fine texture) and
standardised (zero mean, unit variance per image, so brightness and contrast do not count).
Every image is cross-correlated with the mean of all *other* images over shifts (dy, dx) of up to
`MAX_SHIFT` of the side (zero-padded FFT, divided by the overlap: about Pearson's r at each shift).
An image is *in register* when a shift of at most `TOLERANCE` cell in both directions (1/32 of
the side) matches it within `MARGIN` of its best match: r(near 0) >= r(best) - MARGIN.
alignment = share of images in register, in [0, 1]: 1 = every part sits where the others do (a
static map fits), near 0 = parts at varying places.

Why "within MARGIN of the best" and not "the best shift is near 0": a part whose layout does not
change along one direction (horizontal bands, a long bar) correlates equally well at every shift
along it, and pixel noise then picks a best shift anywhere on that flat ridge; the tests' tall
banded parts, aligned by construction, scored 0.00 by the best-shift rule. Their r(near 0) is
within 0.0011 of r(best) (12 images), while truly shifted parts lose a median 0.17 of r.

Why this measure and not the share of variance the mean image explains: textured but aligned
parts (polycrystalline ELPV cells, random grains) keep much of their variance outside the mean
image, about as much as shifted parts do, while their best match is still at shift 0.
Measured with ``benchmarks/bench_segment_maps.py --alignment-only --variants aligned shifted elpv``
(128 px, first 16 / 32 / 64 / 130 good images; docs/features.md). A rotation about the part's
own centre without a shift is not detected.

`choose_method(alignment, threshold)` picks the static `auto` map for an aligned category and
`auto_per_image` otherwise; the threshold is `segmentation.alignment_threshold`
(conf/base/parameters_segmentation.yml).

Example:
    >>> import numpy as np
    >>> from segad.segments.alignment import alignment
    >>> base = np.random.default_rng(0).random((64, 64))
    >>> alignment(np.stack([base, base * 0.5 + 0.2, base]))
    1.0
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

GRID = 32  # cells per side of the coarse grid the measure is computed on
MAX_SHIFT = 0.25  # largest shift searched, fraction of the side
TOLERANCE = 1  # cells: a shift this small counts as "in place"
MARGIN = 0.01  # r: an in-place match this close to the best one counts as in register


def _coarse(images: np.ndarray) -> np.ndarray:
    """Gray images averaged onto the coarse grid, standardised per image: float64 (N, h, w)."""
    import torch
    import torch.nn.functional as F

    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images.mean(axis=1)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"alignment needs (N, H, W) or (N, 3, H, W) images, got {images.shape}")
    grid = (min(GRID, images.shape[1]), min(GRID, images.shape[2]))
    coarse = F.adaptive_avg_pool2d(torch.from_numpy(images)[:, None], grid)[:, 0].numpy().astype(np.float64)
    std = coarse.std(axis=(1, 2), keepdims=True)
    keep = std[:, 0, 0] > 1e-6  # a constant image carries no layout
    return (coarse[keep] - coarse[keep].mean(axis=(1, 2), keepdims=True)) / std[keep]


def _match_scores(images: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per non-constant image: (r over shifts (2h, 2w), dy (2h, 1), dx (1, 2w)), r = -inf outside
    the searched shifts; nothing when fewer than two such images are given."""
    z = _coarse(images)
    n, h, w = z.shape
    if n < 2:
        return
    size = (2 * h, 2 * w)
    dy = np.fft.fftfreq(size[0], 1 / size[0]).round().astype(np.int64)[:, None]
    dx = np.fft.fftfreq(size[1], 1 / size[1]).round().astype(np.int64)[None, :]
    overlap = (h - np.abs(dy)) * (w - np.abs(dx))
    allowed = (np.abs(dy) <= MAX_SHIFT * h) & (np.abs(dx) <= MAX_SHIFT * w)
    total = z.sum(axis=0)
    for i in range(n):
        rest = (total - z[i]) / (n - 1)
        rest = (rest - rest.mean()) / max(float(rest.std()), 1e-12)
        corr = np.fft.irfft2(np.fft.rfft2(z[i], size) * np.conj(np.fft.rfft2(rest, size)), size)
        yield np.where(allowed, corr / np.maximum(overlap, 1), -np.inf), dy, dx


def best_shifts(images: np.ndarray) -> np.ndarray:
    """Best shift int (N', 2) in grid cells of each non-constant image against the mean of the others."""
    shifts = []
    for score, dy, dx in _match_scores(images):
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        shifts.append((dy[y, 0], dx[0, x]))
    return np.array(shifts, dtype=np.int64).reshape(-1, 2)


def match_gaps(images: np.ndarray) -> np.ndarray:
    """float64 (N',): r(best shift) - r(best shift within TOLERANCE) of each non-constant image, >= 0."""
    gaps = []
    for score, dy, dx in _match_scores(images):
        near = (np.abs(dy) <= TOLERANCE) & (np.abs(dx) <= TOLERANCE)
        gaps.append(float(score.max() - score[near].max()))
    return np.array(gaps, dtype=np.float64)


def alignment(images: np.ndarray) -> float:
    """Share in [0, 1] of images in register (float (N, H, W) gray or (N, 3, H, W) RGB, any H x W).

    NaN when fewer than two non-constant images are given.
    """
    gaps = match_gaps(images)
    if len(gaps) == 0:
        return float("nan")
    return float((gaps <= MARGIN).mean())


def choose_method(value: float, threshold: float) -> str:
    """``auto`` (static k-means map) when `value` >= `threshold`, else ``auto_per_image``.

    A NaN alignment (too few usable images) counts as not aligned.
    """
    return "auto" if value >= threshold else "auto_per_image"
