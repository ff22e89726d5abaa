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
- ``auto_select``: per category, three candidates are built: ``single``, ``auto`` and
  ``auto_per_image`` (`SegmentMaps.alternatives`). The features stage chooses among them out of
  fold on the brf_train rows (`segad.meta.segmentation_choice`); until then, and where too few bad
  training images allow no choice, a category uses `auto` when its good training images are
  aligned (`segad.segments.alignment`, share of images in register >= ``alignment_threshold``),
  else ``auto_per_image``. The measure and the choices are logged and kept in `SegmentMaps.sources`.
- ``single``: one segment covering the whole map (the ablation's "one segment + stats").

With ``method: null`` (the default) the method follows from what is given (`for_dataset`): a
``path`` means ``static``, a ``folder`` ``per_image``; with neither, the demo layout uses the map
it ships (``<dataset.root>/segmentation.png``, written when its parts are in register), ELPV its
built-in map, and every other dataset ``auto_select`` (`AUTO_DEFAULT`): one segment, static
``auto`` or ``auto_per_image`` segments per category, chosen out of fold; the choice and its
evidence are logged, so nobody mistakes the automatic segments for a map of theirs.

Every map is resized to the map resolution by nearest neighbour. A file whose labels fall outside
[0, n_segments) or whose shape is not 2-D raises `SegmentMapError` naming the file.

This module holds the settings (`SegmentMapConfig`) and a run's maps (`SegmentMaps`); they are
made by `segad.segments.resolve.resolve_segmentation`, map files are read by
`segad.segments.label_maps`, and `segad.segments.overlay` draws them over an image.

Example:
    >>> from segad.segments.elpv import elpv_segment_map
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
from pydantic import Field

from segad.config import PARAMS
from segad.segments.auto_segments import (
    DEFAULT_LAYERS,
    STRIDES,
    FeatureClusters,
)
from segad.segments.label_maps import SegmentMapError, per_image_map_path, read_label_map
from segad.storage.files import file_sha256
from segad.storage.images import read_image
from segad.storage.map_store import MapStore, MapStoreError
from segad.vocabulary import SEGMENTATION_CANDIDATES

log = logging.getLogger(__name__)

Method = Literal["static", "per_image", "elpv", "auto", "auto_per_image", "auto_select", "single"]
METHODS: tuple[str, ...] = get_args(Method)
#: the method `for_dataset` picks for a dataset that ships no map: static k-means segments for a
#: category whose good images are aligned, per-image segments otherwise (docs/features.md)
AUTO_DEFAULT: Method = "auto_select"
#: methods that may segment every image on its own (they read image files)
PER_IMAGE_AUTO = ("auto_per_image", "auto_select")


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
        elif layout == "demo" and (not root or (Path(root) / "segmentation.png").is_file()):
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


# --------------------------------------------------------------------------------------------
# resolving the segmentation of a run


#: The candidate segmentations of an `auto_select` category, simplest first.
CANDIDATES: tuple[str, ...] = SEGMENTATION_CANDIDATES


@dataclass(frozen=True)
class Alternative:
    """One candidate segmentation of a category: a static map `labels` (H, W) with labels
    0..n_segments-1, or per-image centres `clusters`; `source` says how it was made."""

    source: str
    n_segments: int
    labels: np.ndarray | None = None
    clusters: FeatureClusters | None = None


@dataclass
class SegmentMaps:
    """Segment maps of a run at map resolution `size` (H, W).

    Static methods hold one map per category (`static_maps`); `per_image` reads a map per image
    from `folder`; `auto_per_image` (also chosen by `auto_select`) segments each image with the
    category's shared `clusters`. `labels_for(category, image_ids)` returns (H, W) shared or
    (N, H, W). `alignment` holds the measure of each category `auto_select` decided on, and
    `alternatives` its candidate segmentations (`CANDIDATES`, simplest first); `with_choice` gives
    the maps with a chosen candidate per category.
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
    alternatives: dict[str, dict[str, Alternative]] = field(default_factory=dict)
    # per-image labels on disk (float16 maps of integer labels), keyed by settings and image content
    label_store: MapStore | None = None
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def is_static(self, category: str) -> bool:
        return category in self.static_maps

    def with_choice(self, chosen: Mapping[str, str], why: str = "chosen out of fold") -> SegmentMaps:
        """These maps with category -> candidate name of `chosen` in place of each category's
        current segmentation (its `alternatives`); other categories unchanged. Per-image labels
        already computed are shared."""
        out = dataclasses.replace(
            self,
            n_segments=dict(self.n_segments),
            static_maps=dict(self.static_maps),
            sources=dict(self.sources),
            clusters=dict(self.clusters),
        )  # `_cache` (per-image labels computed) is carried over: shared
        for category, name in chosen.items():
            options = self.alternatives.get(category, {})
            if name not in options:
                raise SegmentMapError(
                    f"category {category!r} has no candidate segmentation {name!r} (candidates: {sorted(options)})"
                )
            alternative = options[name]
            out.static_maps.pop(category, None)
            out.clusters.pop(category, None)
            if alternative.clusters is not None:
                out.clusters[category] = alternative.clusters
            else:
                assert alternative.labels is not None
                out.static_maps[category] = alternative.labels
            out.n_segments[category] = alternative.n_segments
            out.sources[category] = f"{name} ({why}): {alternative.source}"
        return out

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
            images = rgb_images([self.image_path(i) for i in missing], self.size)
            for image_id, labels in zip(missing, clusters.labels(images)):
                self._cache[f"{category}/{image_id}"] = labels.astype(np.uint8)
                if self.label_store is not None:
                    self.label_store.write(keys[image_id], labels.astype(np.float32))
        return np.stack([self._cache[f"{category}/{i}"] for i in image_ids]).astype(np.int64)


def rgb_images(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Images float32 (N, 3, H, W) in [0, 1] at map size (H, W)."""
    return np.stack([read_image(p, size=size) for p in paths])
