"""Segment map files: reading a label map (PNG or ``.npy``), finding an image's map in a
per-image folder, the ``n_segments`` setting per category, and the one-segment map.

Every problem raises `SegmentMapError` naming the file or the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from segad.storage.images import ImageSize, SizeLike, resize_labels


class SegmentMapError(ValueError):
    """A segment map is missing, unreadable or inconsistent; the message names the file."""


def segment_count(n_segments: int | Mapping[str, int] | None, category: str) -> int | None:
    """The `n_segments` setting for `category`: the int itself, or the mapping's entry for the
    category, else its ``default``; None when unset. Raises `SegmentMapError` for a mapping with
    neither, or a count that is not a positive integer."""
    if n_segments is None:
        return None
    if isinstance(n_segments, Mapping):
        if category not in n_segments and "default" not in n_segments:
            raise SegmentMapError(
                f"segmentation.n_segments has no entry for category {category!r} and no "
                f"'default' (entries: {', '.join(sorted(map(str, n_segments)))})"
            )
        value = n_segments.get(category, n_segments.get("default"))
        where = (
            f"segmentation.n_segments[{category!r}]" if category in n_segments else "segmentation.n_segments.default"
        )
    else:
        value, where = n_segments, "segmentation.n_segments"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SegmentMapError(f"{where} must be a positive integer, got {value!r}")
    return value


def read_label_map(path: str | Path, n_segments: int | None = None, size: SizeLike | None = None) -> np.ndarray:
    """Integer label map int64 (H, W) from a PNG (gray values = labels) or `.npy` file.

    Raises `SegmentMapError` naming the file if it is missing, unreadable, not 2-D, not
    integer, or has labels outside [0, n_segments) when n_segments is given.
    """
    path = Path(path)
    if not path.is_file():
        raise SegmentMapError(f"{path}: no such segment map file")
    try:
        if path.suffix.lower() == ".npy":
            labels = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as image:
                image.load()
                if image.mode not in ("L", "I", "I;16", "P", "1"):
                    raise SegmentMapError(
                        f"{path}: segment map must be a single-channel label image, got mode {image.mode}"
                    )
                labels = np.asarray(image)
    except SegmentMapError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder error becomes a named file error
        raise SegmentMapError(f"{path}: unreadable segment map ({error})") from error
    if labels.ndim != 2:
        raise SegmentMapError(f"{path}: segment map must be 2-D (H, W), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise SegmentMapError(f"{path}: segment map must hold integer labels, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise SegmentMapError(f"{path}: negative segment label {labels.min()}")
    if n_segments is not None and labels.max() >= n_segments:
        raise SegmentMapError(
            f"{path}: segment label {labels.max()} outside [0, {n_segments}) (n_segments={n_segments})"
        )
    return resize_labels(labels, size) if size is not None else labels


def per_image_map_path(folder: str | Path, image_id: str) -> Path:
    """The map of `image_id` in a per-image folder: same relative path, suffix .npy or .png."""
    stem = Path(folder) / Path(image_id).with_suffix("")
    for suffix in (".npy", ".png"):
        candidate = stem.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise SegmentMapError(f"{stem}.npy / .png: no segment map for image {image_id!r}")


def single_segment_map(size: SizeLike) -> np.ndarray:
    """One segment (label 0) everywhere: int64 (H, W)."""
    return np.zeros(ImageSize.parse(size).hw, dtype=np.int64)
