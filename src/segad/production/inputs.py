"""Input checks of production scoring: what new images must look like, taken from the training images.

An image is scored only if it is readable, has one of the training images' on-disk sizes and
their colour storage (grayscale or colour); otherwise it becomes an error row naming the file.

Example:
    >>> from segad.production.inputs import InputSpec, colour_of
    >>> colour_of("L"), colour_of("RGB")
    ('gray', 'rgb')
    >>> InputSpec.from_dict({"image_size": 256, "colour": "rgb", "sizes": [[640, 480]]}).sizes
    ((640, 480),)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segad.storage.images import IMAGE_SUFFIXES, ImageReadError, ImageSize, SizeLike, read_image

# PIL modes whose pixels carry no colour.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class InputMismatchError(ValueError):
    """An image is readable but does not match what the bundle was trained on."""


@dataclass(frozen=True)
class InputSpec:
    """What scored images must look like, taken from the training images.

    Attributes:
        image_size: the (height, width) in pixels images are resized to, as maps are (an int N
            given here or in the manifest means N x N; the manifest records N for square sizes,
            else [height, width]).
        colour: "rgb" or "gray": how the training images were stored.
        sizes: accepted on-disk (width, height) pairs; empty = any size.
    """

    image_size: ImageSize
    colour: str
    sizes: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", ImageSize.parse(self.image_size, "input_spec.image_size"))

    def as_dict(self) -> dict:
        return {
            "image_size": self.image_size.to_json(),
            "colour": self.colour,
            "sizes": [list(size) for size in self.sizes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        return cls(
            image_size=ImageSize.parse(data["image_size"], "input_spec.image_size"),
            colour=str(data["colour"]),
            sizes=tuple((int(w), int(h)) for w, h in data.get("sizes", ())),
        )


def colour_of(pil_mode: str) -> str:
    """'gray' for single-channel PIL modes (1, L, LA, I, I;16, F), else 'rgb'."""
    return "gray" if pil_mode in _GRAY_MODES else "rgb"


def probe_image(path: str | Path) -> tuple[int, int, str]:
    """(width, height, colour) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size[0], image.size[1], colour_of(image.mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: unreadable image ({error})") from error


def input_spec_from_paths(paths: Sequence[str | Path], image_size: SizeLike) -> InputSpec:
    """The spec of a training set: its single colour mode and its on-disk sizes.

    Raises InputMismatchError when the training images mix grayscale and colour storage.
    """
    if not paths:
        raise ValueError("input_spec_from_paths: no training image paths")
    probes = [probe_image(path) for path in paths]
    colours = {colour for _, _, colour in probes}
    if len(colours) > 1:
        examples = {colour: str(path) for path, (_, _, colour) in zip(paths, probes)}
        raise InputMismatchError(f"training images mix grayscale and colour files: {examples}")
    sizes = tuple(sorted({(w, h) for w, h, _ in probes}))
    return InputSpec(image_size=ImageSize.parse(image_size), colour=colours.pop(), sizes=sizes)


def load_checked(path: str | Path, spec: InputSpec) -> np.ndarray:
    """Read an image for scoring: float32 (3, H, W) in [0, 1], (H, W) = spec.image_size.

    Raises ImageReadError (missing, unreadable, truncated) or InputMismatchError (on-disk size
    not among the training sizes; grayscale file for a colour model or the reverse), each with a
    message naming the file.
    """
    array = read_image(path, size=spec.image_size)  # decodes fully: catches truncated files
    width, height, colour = probe_image(path)
    check_matches(str(path), width, height, colour, spec)
    return array


def check_matches(name: str, width: int, height: int, colour: str, spec: InputSpec) -> None:
    """InputMismatchError naming `name` when its on-disk size (pixels) is not among the bundle's
    training sizes, or its colour (`colour_of`) is not the bundle's."""
    if spec.sizes and (width, height) not in spec.sizes:
        expected = ", ".join(f"{w}x{h}" for w, h in spec.sizes)
        raise InputMismatchError(
            f"{name}: wrong size {width}x{height} (width x height); the bundle was trained on {expected}"
        )
    if colour != spec.colour:
        raise InputMismatchError(f"{name}: {colour} image but the bundle was trained on {spec.colour} images")


def decode_checked(data: bytes, spec: InputSpec, name: str = "image") -> np.ndarray:
    """`load_checked` of an encoded image held in memory (an upload): float32 (3, H, W) in [0, 1].

    The same checks and the same conversion as a file (decoded fully, RGB, bilinear resize to
    ``spec.image_size``); errors name the image by `name`.
    """
    import io

    if not data:
        raise ImageReadError(f"{name}: empty image (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            colour = colour_of(image.mode)
            rgb = image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{name}: too many pixels, refused as a possible decompression bomb ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{name}: unreadable or truncated image ({error})") from error
    check_matches(name, width, height, colour, spec)
    if rgb.size != spec.image_size.wh:
        rgb = rgb.resize(spec.image_size.wh, Image.Resampling.BILINEAR)  # as segad.storage.images.read_image
    return np.ascontiguousarray((np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1))


def list_images(folder: str | Path) -> list[Path]:
    """Every file under `folder` (recursive, sorted) with an image suffix (case-insensitive).

    Unreadable files with an image suffix are listed too: scoring reports them as errors.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"score input folder {folder} does not exist or is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
