"""Segment maps: which segment every pixel of an anomaly map belongs to.

A segment map is an integer array (H, W) with labels 0..L-1 (mutually exclusive segments), at
the resolution of the anomaly maps. Sources (`SegmentMapConfig.method`):

- ``static``: one map file for all images of a category (VAD-style), PNG (8/16-bit gray, values =
  labels) or ``.npy`` of integers; ``path`` is one file or a mapping {category: file}. The demo
  ships ``data/01_raw/demo/segmentation.png``.
- ``per_image``: a folder of maps matched by image id (VisA-style): the map of image
  ``test/bad/012.JPG`` is ``<folder>/test/bad/012.png`` or ``.npy``. ``n_segments`` is one count
  or a mapping {category: count, default: count} (VisA: 2, but pcb1 6, pcb2 8, pcb3 8, pcb4 6).
- ``elpv``: a built-in static map for the aligned 300 x 300 ELPV solar cells (`segad.segments.elpv`):
  interior, busbars of 3-busbar cells, busbars of 2-busbar cells, border, corners.
- ``auto``: no map given; k-means (`auto_segment_map`) on two per-pixel statistics of up to
  ``auto_max_images`` good *training* images of the category (mean and standard deviation of the
  gray level over the images), so that pixels that look alike and vary alike share a segment.
  It assumes aligned images (as VAD, the demo and ELPV); it is static, never sees test images.
- ``auto_per_image``: no map given, parts need not be aligned; k-means centres of backbone
  features (packaged EfficientNet-Lite0) fitted once per category on up to ``auto_max_images``
  good training images (`segad.segments.auto_segments`), then every image's own pixels are
  assigned to the shared centres, so the segments follow the part wherever it lies. Each image's
  labels are computed once and kept in `SegmentMaps.label_store` when one is attached (a
  `MapStore` keyed by the settings and the image file's content: a second run reads them back).
- ``auto_select``: per category, `auto` when its good training images are aligned
  (`segad.segments.alignment`, share of images in register >= ``alignment_threshold``), else
  ``auto_per_image``; the choice and the measure are logged and kept in `SegmentMaps.sources`.
- ``single``: one segment covering the whole map (the ablation's "one segment + stats").

With ``method: null`` (the default) the method follows from what is given (`for_dataset`): a
``path`` means ``static``, a ``folder`` ``per_image``; with neither, the demo layout uses the map
it ships (``<dataset.root>/segmentation.png``), ELPV its built-in map, and every other dataset
``auto_select`` (`AUTO_DEFAULT`): per category the static ``auto`` map when its good images are
aligned, else ``auto_per_image``; the choice and the measure are logged, so nobody mistakes the
automatic segments for a map of theirs.

Every map is resized to the map resolution by nearest neighbour. A file whose labels fall outside
[0, n_segments) or whose shape is not 2-D raises `SegmentMapError` naming the file.

Example:
    >>> from segad.segments.segment_maps import elpv_segment_map
    >>> from segad.storage.images import resize_labels
    >>> labels = elpv_segment_map()            # (300, 300) int64, labels 0..4
    >>> resize_labels(labels, 64).shape
    (64, 64)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np
import pydantic.dataclasses
from PIL import Image
from pydantic import Field

from segad.config import PARAMS
from segad.segments.alignment import alignment, choose_method
from segad.segments.auto_segments import (
    DEFAULT_LAYERS,
    STRIDES,
    FeatureClusters,
    auto_segment_map,
    fit_feature_clusters,
)
from segad.segments.elpv import ELPV_SEGMENTS, elpv_segment_map
from segad.storage.files import file_sha256
from segad.storage.images import ImageSize, SizeLike, read_image, resize_labels
from segad.storage.map_store import MapStore, MapStoreError

log = logging.getLogger(__name__)

Method = Literal["static", "per_image", "elpv", "auto", "auto_per_image", "auto_select", "single"]
METHODS: tuple[str, ...] = get_args(Method)
#: the method `for_dataset` picks for a dataset that ships no map: static k-means segments for a
#: category whose good images are aligned, per-image segments otherwise (docs/features.md)
AUTO_DEFAULT: Method = "auto_select"
#: methods that may segment every image on its own (they read image files)
PER_IMAGE_AUTO = ("auto_per_image", "auto_select")


class SegmentMapError(ValueError):
    """A segment map is missing, unreadable or inconsistent; the message names the file."""


@pydantic.dataclasses.dataclass(config=PARAMS)
class SegmentMapConfig:
    """Where segment maps come from (see the module docstring); the `segmentation` params block."""

    method: Method | None = None
    path: str | dict[str, str] | None = None
    folder: str | None = None
    n_segments: Annotated[int, Field(ge=1)] | dict[str, Annotated[int, Field(ge=1)]] | None = None
    auto_segments: Annotated[int, Field(ge=1)] = 4
    auto_max_images: Annotated[int, Field(ge=1)] = 64
    auto_layers: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_LAYERS))
    auto_pca: Annotated[int, Field(ge=0)] = 8
    auto_smooth: Annotated[float, Field(ge=0.0, le=0.25)] = 0.0
    auto_border: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0  # auto_per_image: image-border band segment
    alignment_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    seed: int = 0
    overlay_images: Annotated[int, Field(ge=0)] = 4
    # folder the image ids are relative to (auto_per_image reads each image); for_dataset fills it
    image_root: str | None = None

    def __post_init__(self) -> None:
        # method None: chosen by `for_dataset` from what is given
        if self.method == "static" and not self.path:
            raise ValueError("segmentation.method 'static' needs segmentation.path")
        if self.method == "per_image" and (not self.folder or not self.n_segments):
            raise ValueError("segmentation.method 'per_image' needs segmentation.folder and n_segments")
        bad = [layer for layer in self.auto_layers if layer not in STRIDES]
        if not self.auto_layers or bad:
            raise ValueError(f"segmentation.auto_layers must be a non-empty list of {sorted(STRIDES)}, got {bad}")

    def for_dataset(self, layout: str, root: str | None) -> SegmentMapConfig:
        """This config with its method chosen when it is None (see the module docstring)."""
        if self.method is not None:
            if self.method in PER_IMAGE_AUTO and self.image_root is None and root:
                return dataclasses.replace(self, image_root=str(root))
            return self
        method: Method
        path: str | dict[str, str] | None
        if self.path:
            method, path = "static", self.path
        elif self.folder:
            method, path = "per_image", None
        elif layout == "demo":
            if not root:
                raise ValueError("dataset.root is needed to find the demo's segmentation.png")
            method, path = "static", str(Path(root) / "segmentation.png")
        elif layout == "elpv":
            method, path = "elpv", None
        else:
            method, path = AUTO_DEFAULT, None
            log.info("segmentation.method null and no map for dataset layout %r: using %r", layout, method)
        chosen = dataclasses.replace(self, method=method, path=path)
        return chosen.for_dataset(layout, root) if method in PER_IMAGE_AUTO else chosen


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


# --------------------------------------------------------------------------------------------
# reading and resizing


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


# --------------------------------------------------------------------------------------------
# built-in maps


def single_segment_map(size: SizeLike) -> np.ndarray:
    """One segment (label 0) everywhere: int64 (H, W)."""
    return np.zeros(ImageSize.parse(size).hw, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# resolving the segmentation of a run


@dataclass
class SegmentMaps:
    """Segment maps of a run at map resolution `size` (H, W).

    Static methods hold one map per category (`static_maps`); `per_image` reads a map per image
    from `folder`; `auto_per_image` (also chosen by `auto_select`) segments each image with the
    category's shared `clusters`. `labels_for(category, image_ids)` returns (H, W) shared or
    (N, H, W). `alignment` holds the measure of each category `auto_select` decided on.
    """

    method: str
    size: tuple[int, int]
    n_segments: dict[str, int]
    static_maps: dict[str, np.ndarray] = field(default_factory=dict)
    folder: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    # auto_per_image: shared centres per category, and where each image id's file lies
    clusters: dict[str, FeatureClusters] = field(default_factory=dict)
    image_paths: Mapping[str, str] | None = None
    image_root: str | None = None
    alignment: dict[str, float] = field(default_factory=dict)
    # per-image labels on disk (float16 maps of integer labels), keyed by settings and image content
    label_store: MapStore | None = None
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def is_static(self, category: str) -> bool:
        return category in self.static_maps

    def image_path(self, image_id: str) -> str:
        if self.image_paths is not None and image_id in self.image_paths:
            return str(self.image_paths[image_id])
        if self.image_root is not None:
            return str(Path(self.image_root) / image_id)
        raise SegmentMapError(
            f"auto_per_image segmentation: no file for image {image_id!r} (give image_paths or dataset.root)"
        )

    def labels_for(self, category: str, image_ids: Sequence[str]) -> np.ndarray:
        if category in self.static_maps:
            return self.static_maps[category]
        if category in self.clusters:
            return self._clustered_labels(category, image_ids)
        if self.folder is None:
            raise SegmentMapError(f"no segment map for category {category!r}")
        n = self.n_segments[category]
        return np.stack([read_label_map(per_image_map_path(self.folder, i), n, self.size) for i in image_ids])

    def _clustered_labels(self, category: str, image_ids: Sequence[str]) -> np.ndarray:
        """Per-image labels (N, H, W) from the shared centres; each image is segmented once."""
        clusters = self.clusters[category]
        missing = [i for i in dict.fromkeys(image_ids) if f"{category}/{i}" not in self._cache]
        keys = {}
        if missing and self.label_store is not None:
            settings = clusters.settings_key(self.size)
            keys = {i: f"auto_per_image/{settings}/{file_sha256(self.image_path(i))[:32]}" for i in missing}
            for image_id in missing:
                try:
                    self._cache[f"{category}/{image_id}"] = self.label_store.read(keys[image_id]).astype(np.uint8)
                except MapStoreError:  # not stored yet, or damaged: segmented (again) below
                    pass
            missing = [i for i in missing if f"{category}/{i}" not in self._cache]
        if missing:
            images = _rgb_images([self.image_path(i) for i in missing], self.size)
            for image_id, labels in zip(missing, clusters.labels(images)):
                self._cache[f"{category}/{image_id}"] = labels.astype(np.uint8)
                if self.label_store is not None:
                    self.label_store.write(keys[image_id], labels.astype(np.float32))
        return np.stack([self._cache[f"{category}/{i}"] for i in image_ids]).astype(np.int64)


def _rgb_images(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Images float32 (N, 3, H, W) in [0, 1] at map size (H, W)."""
    return np.stack([read_image(p, size=size) for p in paths])


def _fit_per_image(config: SegmentMapConfig, category: str, images: np.ndarray) -> FeatureClusters:
    try:
        return fit_feature_clusters(
            images,
            config.auto_segments,
            config.seed,
            config.auto_layers,
            config.auto_pca,
            config.auto_smooth,
            border=config.auto_border,
        )
    except ValueError as error:
        raise SegmentMapError(f"auto_per_image segmentation of {category!r}: {error}") from error


def resolve_segmentation(
    config: SegmentMapConfig,
    categories: Sequence[str],
    map_size: SizeLike,
    good_train_paths: Mapping[str, Sequence[str]] | None = None,
    image_paths: Mapping[str, str] | None = None,
    label_store: MapStore | None = None,
) -> SegmentMaps:
    """Build the `SegmentMaps` of every category at map resolution `map_size` (pixels: an
    `ImageSize`, (H, W) or an int N for N x N).

    `good_train_paths[category]` (image paths) is needed for methods `auto`, `auto_per_image` and
    `auto_select`. Per-image labels read each image when asked for: from `image_paths`
    (image_id -> file) when given, else ``config.image_root / image_id``; with `label_store`
    they are kept on disk and read back by a later run.
    """
    if config.method is None:
        raise ValueError("segmentation method not chosen: call SegmentMapConfig.for_dataset(layout, root) first")
    size = ImageSize.parse(map_size).hw
    seg = SegmentMaps(
        method=config.method,
        size=size,
        n_segments={},
        image_paths=image_paths,
        image_root=config.image_root,
        label_store=label_store,
    )
    for category in categories:
        method: str = config.method
        chosen = ""
        if method in ("auto", "auto_per_image", "auto_select"):
            paths = list((good_train_paths or {}).get(category, []))[: config.auto_max_images]
            if not paths:
                raise SegmentMapError(f"{method} segmentation: no good training images for {category!r}")
            images = _rgb_images(paths, size)
            if method == "auto_select":
                value = seg.alignment[category] = alignment(images)
                method = choose_method(value, config.alignment_threshold)
                relation = ">=" if method == "auto" else "<"
                chosen = f"alignment {value:.2f} {relation} {config.alignment_threshold:g} -> "
                why = (
                    "its good images are aligned: one static map fits"
                    if method == "auto"
                    else "its good images are not aligned: each image is segmented on its own"
                )
                log.info(
                    "segmentation: category %s %s%s (share of %d good train images in register; %s)",
                    category,
                    chosen,
                    method,
                    len(paths),
                    why,
                )
        if method == "static":
            path = config.path[category] if isinstance(config.path, Mapping) else config.path
            if path is None:
                raise SegmentMapError(f"segmentation.path has no map for category {category!r}")
            expected = segment_count(config.n_segments, category)
            labels = read_label_map(path, expected, size)
            n = expected or int(labels.max()) + 1
            seg.sources[category] = str(path)
        elif method == "elpv":
            labels, n = elpv_segment_map(size), len(ELPV_SEGMENTS)
            seg.sources[category] = "builtin:elpv"
        elif method == "single":
            labels, n = single_segment_map(size), 1
            seg.sources[category] = "builtin:single"
        elif method == "auto":
            labels = auto_segment_map(images, config.auto_segments, config.seed)
            n = config.auto_segments
            seg.sources[category] = f"{chosen}auto:kmeans({n}) on {len(paths)} good train images"
        elif method == "auto_per_image":
            seg.clusters[category] = _fit_per_image(config, category, images)
            seg.n_segments[category] = seg.clusters[category].n_segments
            seg.sources[category] = (
                f"{chosen}auto_per_image:kmeans({config.auto_segments}) of {'+'.join(config.auto_layers)} "
                f"features, centres from {len(paths)} good train images, assigned per image"
                + (f", image-border band {config.auto_border:g}" if config.auto_border else "")
            )
            continue
        else:  # per_image
            n_category = segment_count(config.n_segments, category)
            if n_category is None:
                raise SegmentMapError("per_image segmentation needs segmentation.n_segments")
            seg.n_segments[category] = n_category
            seg.folder = str(config.folder)
            seg.sources[category] = f"per_image:{config.folder}"
            continue
        seg.static_maps[category] = labels
        seg.n_segments[category] = n
    return seg


# --------------------------------------------------------------------------------------------
# overlays


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 (H, W, 3): `image` (float (3, H, W) or (H, W) in [0, 1]) blended with label colours.

    Segment borders are drawn in white.
    """
    from matplotlib import colormaps

    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image.transpose(1, 2, 0)
    else:
        image = np.repeat(image[..., None], 3, axis=2)
    labels = resize_labels(labels, image.shape[:2])
    colours = colormaps["tab10"](labels % 10)[..., :3]
    blended = (1 - alpha) * image + alpha * colours
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    blended[edge] = 1.0
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)
