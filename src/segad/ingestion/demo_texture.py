"""The textured-surface variant of the demo: tall images of a uniform brushed surface, small defects.

A user's inspection images are often no part at all but a surface: a uniform texture with no part
structure, where a defect is a few pixels among many. `render_texture` draws one such image,
``width`` x ``2 * width`` (tall): a gray surface with vertical brushing streaks, fine grain and a
slow lighting gradient, all varying per image; defects are small (`TEXTURE_DEFECTS`): a thin
scratch, a pit, a faint stain. `DemoConfig(surface="texture")` writes it in the demo's layout
(`segad.ingestion.demo`), with seen defects `TEXTURE_SEEN` and unseen `TEXTURE_UNSEEN` and no
segment map: as for a user's surface images, the run chooses its segments (one, or automatic ones).

Example:
    >>> import numpy as np
    >>> from segad.ingestion.demo_texture import render_texture
    >>> render_texture(np.random.default_rng(0), 64, "scratch").size
    (64, 128)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

TEXTURE_SEEN = ("scratch", "pit")
TEXTURE_UNSEEN = ("stain",)
TEXTURE_DEFECTS = TEXTURE_SEEN + TEXTURE_UNSEEN
TEXTURE_SEGMENTS = {0: "surface"}


def texture_size(width: int) -> tuple[int, int]:
    """(height, width) of a textured image: twice as tall as wide."""
    return 2 * int(width), int(width)


def render_texture(rng: np.random.Generator, width: int, defect: str | None = None) -> Image.Image:
    """One RGB textured image (PIL size width x 2 width); `defect` None (good) or one of TEXTURE_DEFECTS."""
    from scipy.ndimage import gaussian_filter

    height, width = texture_size(width)
    s = width / 128.0
    streaks = gaussian_filter(rng.standard_normal((height, width)), sigma=(6 * s, 0.6 * s))
    grain = gaussian_filter(rng.standard_normal((height, width)), sigma=0.7)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0.04, 0.08) * (np.cos(angle) * x + np.sin(angle) * y)
    gray = rng.uniform(0.5, 0.58) + 0.35 * streaks / (streaks.std() + 1e-9) * 0.1 + 0.03 * grain + light
    if defect is not None:
        if defect not in TEXTURE_DEFECTS:
            raise ValueError(f"unknown texture defect {defect!r}; expected one of {TEXTURE_DEFECTS}")
        gray = gray + _defect(rng, defect, height, width, s)
    rgb = np.clip(gray, 0, 1)[..., None] * np.array([1.0, 0.98, 0.95])
    return Image.fromarray((255 * np.clip(rgb, 0, 1)).astype(np.uint8))


def _defect(rng: np.random.Generator, defect: str, height: int, width: int, s: float) -> np.ndarray:
    """The additive intensity change of a small defect, float (height, width)."""
    from scipy.ndimage import gaussian_filter

    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.15, 0.85) * width
    if defect == "scratch":
        length, angle = rng.uniform(10, 22) * s, rng.uniform(0, np.pi)
        along = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        across = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        mask = (np.abs(along) < length / 2) & (np.abs(across) < 0.8 * s)
        return -rng.uniform(0.15, 0.25) * gaussian_filter(mask.astype(np.float64), 0.6)
    if defect == "pit":
        radius = rng.uniform(1.5, 3.0) * s
        mask = (x - cx) ** 2 + (y - cy) ** 2 < radius**2
        return -rng.uniform(0.2, 0.3) * gaussian_filter(mask.astype(np.float64), 0.8)
    radius = rng.uniform(4, 7) * s  # stain: a faint, soft, lighter blob
    return rng.uniform(0.06, 0.1) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
