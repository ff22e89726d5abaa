"""Reading images from disk with clear errors.

Every image that enters the project goes through `read_image`, so an unreadable, truncated or
oddly shaped file fails in one place with a message that names the file and the problem.

The map resolution of a run is an `ImageSize` (height x width in pixels), parsed once from the
``image_size`` parameter by `ImageSize.parse` (an int N is N x N, ``[height, width]`` is as given)
or chosen from the good training images by `resolve_image_size` (``image_size: auto``: the
median aspect ratio at about 256 x 256 pixels, each side a multiple of 32, see `auto_image_size`).

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> from segad.storage.images import read_image
    >>> path = tempfile.mkdtemp() + "/part.png"
    >>> Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(path)
    >>> x = read_image(path, size=32)
    >>> x.shape, x.dtype
    ((3, 32, 32), dtype('float32'))
    >>> read_image(path, size=ImageSize(16, 48)).shape
    (3, 16, 48)
    >>> auto_image_size([(500, 1250)] * 3)[0]  # (width, height) on disk: tall images
    ImageSize(height=416, width=160)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: ``image_size: auto``: the target area (pixels, as 256 x 256), the multiple each side is rounded
#: to, and the smallest side.
AUTO_SIDE, AUTO_MULTIPLE, AUTO_MIN_SIDE = 256, 32, 64
AUTO = "auto"


class ImageSizeError(ValueError):
    """An ``image_size`` value is not an int > 0, ``[height, width]`` of such ints, or ``auto``."""


@dataclass(frozen=True)
class ImageSize:
    """The map resolution: images are resized to ``height x width`` pixels, maps are (height, width)."""

    height: int
    width: int

    def __post_init__(self) -> None:
        for side in (self.height, self.width):
            if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side <= 0:
                raise ImageSizeError(f"image_size: height and width must be ints > 0, got {self.height}, {self.width}")
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "width", int(self.width))

    @classmethod
    def parse(cls, value: SizeLike, key: str = "image_size") -> ImageSize:
        """An `ImageSize` of an int N (N x N), ``[height, width]`` / ``(height, width)``, a mapping
        ``{height, width}`` or an `ImageSize`; `ImageSizeError` naming ``key`` otherwise (``auto``
        included: that is resolved by `resolve_image_size`)."""
        if isinstance(value, ImageSize):
            return value
        if isinstance(value, dict) and set(value) == {"height", "width"}:
            value = [value["height"], value["width"]]
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            sides: list[Any] = [value, value]
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            sides = list(value)
        else:
            raise ImageSizeError(f"{key}: expected an int > 0, [height, width] or 'auto', got {value!r}")
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in sides):
            raise ImageSizeError(f"{key}: height and width must be ints > 0, got {value!r}")
        return cls(int(sides[0]), int(sides[1]))

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)``: the shape of a map (numpy, torch)."""
        return self.height, self.width

    @property
    def wh(self) -> tuple[int, int]:
        """``(width, height)``: PIL's order."""
        return self.width, self.height

    def to_json(self) -> int | list[int]:
        """N for N x N (so square runs keep the keys and manifests they had), else [height, width]."""
        return self.height if self.height == self.width else [self.height, self.width]

    def tag(self) -> str:
        """``"256"`` for 256 x 256, ``"416x160"`` (height x width) otherwise: for names and hashes."""
        return str(self.height) if self.height == self.width else f"{self.height}x{self.width}"

    def __str__(self) -> str:
        return f"{self.height} x {self.width}"


#: What a library function accepts as a size: an `ImageSize`, an int N (N x N) or (height, width).
SizeLike = ImageSize | int | tuple[int, int] | list[int]


def check_image_size_setting(value: Any, key: str = "image_size") -> int | list[int] | str:
    """The ``image_size`` parameter as given (``auto``, an int, ``[height, width]``), checked."""
    if value == AUTO:
        return AUTO
    size = ImageSize.parse(value, key)
    return size.height if isinstance(value, (int, np.integer)) else [size.height, size.width]


def auto_image_size(sizes: Sequence[tuple[int, int]]) -> tuple[ImageSize, str]:
    """(size, why) of ``image_size: auto`` for images of on-disk ``(width, height)`` pixels.

    The median aspect ratio r = height / width is kept at an area of about 256 x 256 pixels:
    height = 256 * sqrt(r), width = 256 / sqrt(r), each rounded to the nearest multiple of 32 and
    at least 64. Square images give 256 x 256.
    """
    if not sizes:
        raise ImageSizeError(
            "image_size: auto takes the aspect of the good (label 0) train images, and there are none; "
            "set image_size to N or [height, width]"
        )
    aspect = float(np.median([h / w for w, h in sizes]))
    root = math.sqrt(aspect)
    height, width = (
        max(AUTO_MIN_SIDE, AUTO_MULTIPLE * math.floor(AUTO_SIDE * factor / AUTO_MULTIPLE + 0.5))
        for factor in (root, 1 / root)
    )
    size = ImageSize(height, width)
    why = f"image_size auto: median aspect {aspect:.2f} (h/w) over {len(sizes)} good train images -> {size}"
    return size, why


@lru_cache(maxsize=8)
def _auto_logged(sizes: tuple[tuple[int, int], ...]) -> ImageSize:
    size, why = auto_image_size(sizes)
    log.info(why)  # once per process and image set: every stage resolves the same value
    return size


def resolve_image_size(setting: SizeLike | str, image_index: pd.DataFrame | None = None) -> ImageSize:
    """The concrete `ImageSize` of the ``image_size`` parameter.

    ``auto`` is resolved from the good (label 0) ``train`` rows of ``image_index`` (columns
    split, label, width, height) by `auto_image_size`, over all categories together; anything
    else is parsed by `ImageSize.parse`. A pure function of its inputs, so every stage that
    resolves the same parameter over the same index gets the same size.
    """
    if setting != AUTO:
        return ImageSize.parse(setting)  # type: ignore[arg-type]
    if image_index is None:
        raise ImageSizeError("image_size: auto needs the image index (the good train images' sizes)")
    missing = [c for c in ("split", "label", "width", "height") if c not in image_index.columns]
    if missing:
        raise ImageSizeError(f"image_size: auto: image_index lacks the columns {missing}")
    goods = image_index[(image_index["split"] == "train") & (image_index["label"] == 0)]
    return _auto_logged(tuple(zip(goods["width"].astype(int).tolist(), goods["height"].astype(int).tolist())))


class ImageReadError(ValueError):
    """An image or mask file could not be read; the message names the file and the cause."""


def is_image_file(path: Path) -> bool:
    """True for a regular file with a known image suffix (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in pixels after fully decoding the file (catches truncated files)."""
    with _open(path) as image:
        return image.size


def read_image(path: str | Path, size: SizeLike | None = None) -> np.ndarray:
    """RGB image as float32 (3, H, W) in [0, 1], resized bilinearly to ``size`` if given
    (an `ImageSize`, (height, width) or an int N for N x N).

    Grayscale images are repeated to three channels.
    """
    with _open(path) as image:
        rgb = image.convert("RGB")
        target = None if size is None else ImageSize.parse(size).wh
        if target is not None and rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.BILINEAR)
        array = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def read_mask(path: str | Path, size: SizeLike | None = None) -> np.ndarray:
    """Binary mask as bool (H, W) (nonzero = defect), resized by nearest neighbour to ``size`` if given."""
    with _open(path) as image:
        gray = image.convert("L")
        target = None if size is None else ImageSize.parse(size).wh
        if target is not None and gray.size != target:
            gray = gray.resize(target, Image.Resampling.NEAREST)
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


def resize_labels(labels: np.ndarray, size: SizeLike) -> np.ndarray:
    """Nearest-neighbour resize of an integer (H, W) label map to `size` (int N for N x N, or (H, W))."""
    height, width = ImageSize.parse(size).hw
    labels = np.asarray(labels)
    if labels.shape == (height, width):
        return labels.astype(np.int64, copy=False)
    image = Image.fromarray(labels.astype(np.int32), mode="I")
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST)).astype(np.int64)
