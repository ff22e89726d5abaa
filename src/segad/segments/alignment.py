"""How aligned a category's good images are: the share of images already in register with the others.

`alignment(images)`: each image is reduced to gray, averaged down to a coarse grid of at most
`GRID` x `GRID` cells (the measure is about where the parts are, not fine texture) and
standardised (zero mean, unit variance per image, so brightness and contrast do not count).
For every image, the shift (dy, dx) in cells, up to `MAX_SHIFT` of the side, that best matches
it with the mean of all *other* images is found by cross-correlation (zero-padded FFT, divided
by the overlap). An image is *in register* when that best shift is at most `TOLERANCE` cell in
both directions (1/32 of the side). alignment = share of images in register, in [0, 1]:
1 = every part sits where the others do (a static map fits), near 0 = parts at varying places.

Why this measure and not the share of variance the mean image explains: textured but aligned
parts (polycrystalline ELPV cells, random grains) keep much of their variance outside the mean
image, about as much as shifted parts do, while the best shift of each of them is still 0.
Measured with ``benchmarks/bench_segment_maps.py --alignment-only --variants aligned shifted elpv``
(128 px, first 16 / 32 / 64 / 130 good images; docs/features.md): aligned demo 1.00 throughout,
ELPV mono 1.00, ELPV poly 0.98-1.00, shifted demo (40 px, +-180 degrees, scale 0.8-1.2)
0.00-0.06. A rotation about the part's own centre without a shift is not detected.

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

import numpy as np

GRID = 32  # cells per side of the coarse grid the measure is computed on
MAX_SHIFT = 0.25  # largest shift searched, fraction of the side
TOLERANCE = 1  # cells: a best shift this small counts as in register


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


def best_shifts(images: np.ndarray) -> np.ndarray:
    """Best shift int (N', 2) in grid cells of each non-constant image against the mean of the others."""
    z = _coarse(images)
    n, h, w = z.shape
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    size = (2 * h, 2 * w)
    dy = np.fft.fftfreq(size[0], 1 / size[0]).round().astype(np.int64)[:, None]
    dx = np.fft.fftfreq(size[1], 1 / size[1]).round().astype(np.int64)[None, :]
    overlap = (h - np.abs(dy)) * (w - np.abs(dx))
    allowed = (np.abs(dy) <= MAX_SHIFT * h) & (np.abs(dx) <= MAX_SHIFT * w)
    total = z.sum(axis=0)
    shifts = np.zeros((n, 2), dtype=np.int64)
    for i in range(n):
        rest = (total - z[i]) / (n - 1)
        rest = (rest - rest.mean()) / max(float(rest.std()), 1e-12)
        corr = np.fft.irfft2(np.fft.rfft2(z[i], size) * np.conj(np.fft.rfft2(rest, size)), size)
        score = np.where(allowed, corr / np.maximum(overlap, 1), -np.inf)
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        shifts[i] = (dy[y, 0], dx[0, x])
    return shifts


def alignment(images: np.ndarray) -> float:
    """Share in [0, 1] of images in register (float (N, H, W) gray or (N, 3, H, W) RGB, any H x W).

    NaN when fewer than two non-constant images are given.
    """
    shifts = best_shifts(images)
    if len(shifts) == 0:
        return float("nan")
    return float((np.abs(shifts).max(axis=1) <= TOLERANCE).mean())


def choose_method(value: float, threshold: float) -> str:
    """``auto`` (static k-means map) when `value` >= `threshold`, else ``auto_per_image``.

    A NaN alignment (too few usable images) counts as not aligned.
    """
    return "auto" if value >= threshold else "auto_per_image"
