"""Reading images from disk with clear errors.

Every image that enters the project goes through `read_image`, so an unreadable, truncated or
oddly shaped file fails in one place with a message that names the file and the problem.

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> from segad.images import read_image
    >>> path = tempfile.mkdtemp() + "/part.png"
    >>> Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(path)
    >>> x = read_image(path, size=32)
    >>> x.shape, x.dtype
    ((3, 32, 32), dtype('float32'))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image or mask file could not be read; the message names the file and the cause."""


def is_image_file(path: Path) -> bool:
    """True for a regular file with a known image suffix (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in pixels after fully decoding the file (catches truncated files)."""
    with _open(path) as image:
        return image.size


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """RGB image as float32 (3, H, W) in [0, 1], resized to (size, size) bilinearly if given.

    Grayscale images are repeated to three channels.
    """
    with _open(path) as image:
        rgb = image.convert("RGB")
        if size is not None and rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def read_mask(path: str | Path, size: int | None = None) -> np.ndarray:
    """Binary mask as bool (H, W) (nonzero = defect), resized by nearest neighbour if given."""
    with _open(path) as image:
        gray = image.convert("L")
        if size is not None and gray.size != (size, size):
            gray = gray.resize((size, size), Image.Resampling.NEAREST)
        return np.asarray(gray) > 0


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        image = Image.open(path)
        image.load()  # decode fully: a truncated file fails here, not later
    except Image.DecompressionBombError as error:  # not an OSError: would escape unnamed
        raise ImageReadError(f"{path}: too many pixels, refused as a possible decompression bomb ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"{path}: unreadable or truncated image ({error})") from error
    return image
