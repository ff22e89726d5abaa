"""Overlays of rejected parts: the image with its most suspicious segment, beside the anomaly map.

Example:
    >>> from segad.production.render import overlay_name
    >>> overlay_name("line3/part7.png")      # the image's own name, folders joined by '__'
    'line3__part7.png'
    >>> overlay_name("line3/part7.jpg")
    'line3__part7.jpg.png'
    >>> overlay_name("line3/part 7.png")     # a name that had to change gets a short hash
    'line3__part_7-d24ffe4c.png'
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

#: A path part that an overlay name keeps as it is.
_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")
#: Height in pixels of the title strip above an overlay.
TITLE_HEIGHT = 12


def overlay_name(image: str) -> str:
    """File name of the overlay of `image` (a path relative to the scored folder): the image's own
    name with its folders joined by '__', '.png' appended unless it is a PNG already. When that
    would not map back to one image (a character outside [A-Za-z0-9_.-], a '__' in the path, or a
    PNG whose stem has a suffix of its own, like 'a.jpg.png', or no suffix at all), the sanitised name gets '-' and the
    first 8 hex digits of the SHA-1 of `image` instead, so two images never share an overlay name."""
    path = Path(image)
    parts = path.as_posix().lstrip("/").split("/")
    is_png = path.suffix.lower() == ".png"
    safe = all(_SAFE.fullmatch(part) and "__" not in part for part in parts)
    plain = safe and path.suffix != "" and not (is_png and Path(path.stem).suffix)
    if plain:
        name = "__".join(parts)
        return name if is_png else name + ".png"
    stem = path.with_suffix("").as_posix().lstrip("/")
    digest = hashlib.sha1(image.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", stem.replace("/", "__")) + f"-{digest}.png"


def render_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    segments: np.ndarray,
    highlight: int | None,
    title: str = "",
) -> np.ndarray:
    """Side-by-side picture of a rejected part: uint8 (S, 2S, 3), plus a title strip on top.

    Left: the image with the `highlight` segment (the one that pushed the score most) tinted red
    (45 % red) and its outline drawn. Right: the anomaly map as matplotlib's 'jet' heat map (256
    bins) blended half and half with the image, min-max scaled per image (for looking at, not for
    comparing images). A non-empty `title` is written in a black strip of `TITLE_HEIGHT` pixels
    above the pictures. Drawn at 8 bits per channel with Pillow's blends (within 1 level of the
    same arithmetic in floats).

    Args:
        image: float (3, S, S) in [0, 1].
        anomaly_map: float (S, S).
        segments: int (S, S) segment labels.
        highlight: segment index to highlight, or None / -1 for none.
    """
    from PIL import ImageDraw

    height, width = np.shape(anomaly_map)
    rgb = Image.fromarray(_to_uint8(np.asarray(image, dtype=np.float32).transpose(1, 2, 0)))
    amap = np.asarray(anomaly_map, dtype=np.float64)
    finite = np.isfinite(amap)
    lo, hi = (amap[finite].min(), amap[finite].max()) if finite.any() else (0.0, 1.0)
    scaled = np.where(finite, (amap - lo) / (hi - lo if hi > lo else 1.0), 0.0)
    heat = Image.fromarray(_jet()[np.minimum((scaled * 256).astype(np.intp), 255)])  # the colormap's own bins
    left = rgb
    if highlight is not None and highlight >= 0:
        mask = np.asarray(segments) == highlight
        red = Image.new("RGB", (width, height), (255, 0, 0))
        left = Image.composite(Image.blend(rgb, red, 0.45), rgb, Image.fromarray(mask))
        left = Image.composite(red, left, Image.fromarray(mask & ~_erode(mask)))  # the outline
    top = TITLE_HEIGHT if title else 0
    picture = Image.new("RGB", (2 * width, height + top), (0, 0, 0))
    if title:
        strip = Image.new("RGB", (2 * width, TITLE_HEIGHT), (0, 0, 0))
        ImageDraw.Draw(strip).text((2, 1), title, fill=(255, 255, 0))
        picture.paste(strip, (0, 0))
    picture.paste(left, (0, top))
    picture.paste(Image.blend(rgb, heat, 0.5), (width, top))
    return np.asarray(picture)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """float in [0, 1] (clipped) -> uint8, rounded to the nearest level."""
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@cache
def _jet() -> np.ndarray:
    """uint8 (256, 3): matplotlib's 'jet' colormap, one row per bin."""
    from matplotlib import colormaps

    return _to_uint8(colormaps["jet"](np.arange(256))[:, :3])


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (border pixels count as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
