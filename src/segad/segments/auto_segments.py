"""Automatic segment maps: static k-means (`auto`) and per-image backbone-feature clusters (`auto_per_image`).

`auto_segment_map` is the static map of aligned images (k-means on each pixel's mean and
standard deviation of the gray level across the good training images).

The static `auto` map (k-means on per-pixel mean / std over aligned good images) assumes every
part sits at the same place. For unaligned parts the segments must follow each image's content:

1. `backbone_features`: the packaged ImageNet EfficientNet-Lite0 (`segad.storage.weights`, no
   download) runs on the image at map resolution (H, W); the outputs of the chosen stages
   (default blocks.2, stride 8, 40 channels, and blocks.4, stride 16, 112 channels) are resized
   bilinearly to the grid of the finest chosen stage (ceil(H/s), ceil(W/s)), each stage is
   L2-normalised per grid cell and the stages are concatenated (unit-norm vectors);
2. `fit_feature_clusters` samples (seeded) grid vectors of the category's good training images,
   optionally projects them on their first `pca` principal components, and fits k-means once:
   the centres are shared, so segment l is the same part in every image, wherever it lies;
3. `FeatureClusters.labels` assigns every pixel of any image (brf_train, test, a synthetic
   image's source, a new image) to its nearest centre: the K squared distances are computed on
   the grid, resized bilinearly to (H, W), optionally smoothed by a Gaussian (sigma = `smooth` x
   the longer image side) and the smallest wins: int64 (N, H, W) in [0, K). Then every connected
   piece of a segment smaller than `min_area` (a fraction of the image, default 0.01) is absorbed
   by the pieces around it (`segad.segments.coherence`): on a uniform texture the clusters would
   otherwise be speckle, not parts. With `border` > 0 the pixels within that
   fraction of the shorter side from the image edge get one more label, K (`border_band`):
   unaligned parts' border effects kept apart from the part (opt-in; docs/features.md).

Labels are ordered by ascending mean gray level of the training pixels of each cluster, so the
order does not depend on k-means' internal numbering. Everything is deterministic for a seed
(k-means seeded, the backbone in eval mode).

Example:
    >>> import numpy as np
    >>> from segad.segments.auto_segments import fit_feature_clusters
    >>> images = np.random.default_rng(0).random((4, 3, 64, 48)).astype("float32")
    >>> clusters = fit_feature_clusters(images, n_segments=3, seed=0)   # doctest: +SKIP
    >>> clusters.labels(images).shape                                    # doctest: +SKIP
    (4, 64, 48)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from segad.segments.coherence import coherent_stack

#: the backbone (timm name) whose packaged weights are used; `segad.storage.weights`
BACKBONE = "tf_efficientnet_lite0"
#: stride of each usable stage of BACKBONE (timm's `blocks.<i>`)
STRIDES = {"blocks.1": 4, "blocks.2": 8, "blocks.3": 16, "blocks.4": 16, "blocks.5": 32}
#: channels of each stage of BACKBONE
CHANNELS = {"blocks.1": 24, "blocks.2": 40, "blocks.3": 80, "blocks.4": 112, "blocks.5": 192}
#: where BACKBONE's weights come from (`segad.storage.weights`)
WEIGHTS = "packaged:efficientnet_lite0"
DEFAULT_LAYERS = ("blocks.2", "blocks.4")
BATCH = 16  # images per backbone forward pass


def _as_rgb(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:  # (N, H, W) gray
        images = np.repeat(images[:, None], 3, axis=1)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"per-image segmentation needs (N, H, W) gray or (N, 3, H, W) RGB images, got {images.shape}")
    return images


def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
    layers = tuple(layers)
    unknown = [layer for layer in layers if layer not in STRIDES]
    if not layers or unknown:
        raise ValueError(f"auto_layers must be a non-empty list of {sorted(STRIDES)}, got {list(layers)}")
    return layers


def backbone_fingerprint() -> str:
    """`segad.storage.weights.weights_fingerprint` of the packaged weights the segments are computed with."""
    from segad.storage.weights import WeightsSource, weights_fingerprint

    return weights_fingerprint(WeightsSource.parse(WEIGHTS), pretrained=True)


@lru_cache(maxsize=1)
def _backbone():
    """(network in eval mode, input mean, input std): EfficientNet-Lite0 with the packaged weights."""
    import timm
    import torch

    from segad.storage.weights import packaged_efficientnet_lite0_state_dict

    with torch.random.fork_rng(devices=[]):  # a random init must not move the caller's RNG
        net = timm.create_model(BACKBONE, pretrained=False)
    net.load_state_dict(packaged_efficientnet_lite0_state_dict())
    net.eval()
    config = dict(net.pretrained_cfg)
    mean = torch.tensor(config.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(config.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
    return net, mean, std


def backbone_features(images: np.ndarray, layers: Sequence[str] = DEFAULT_LAYERS) -> np.ndarray:
    """Unit-norm feature vectors float32 (N, C, h, w) on the grid of the finest layer.

    Args:
        images: float (N, 3, H, W) RGB or (N, H, W) gray in [0, 1], any H x W.
        layers: stages of the backbone (`STRIDES`); each is L2-normalised per grid cell, then
            all are concatenated and divided by sqrt(len(layers)).
    Returns: (N, C, ceil(H/s), ceil(W/s)) with s the smallest stride among `layers` and C the
        sum of the stages' channels (blocks.2 + blocks.4: 152).
    """
    import torch
    import torch.nn.functional as F

    layers, images = _check_layers(layers), _as_rgb(images)
    net, mean, std = _backbone()
    wanted = {int(layer.split(".")[1]): layer for layer in layers}
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), BATCH):
            x = (torch.from_numpy(images[start : start + BATCH]) - mean) / std
            x = net.bn1(net.conv_stem(x))
            grabbed: dict[str, torch.Tensor] = {}
            for index, block in enumerate(net.blocks):
                x = block(x)
                if index in wanted:
                    grabbed[wanted[index]] = x
                if len(grabbed) == len(wanted):
                    break
            grid = min((grabbed[layer] for layer in layers), key=lambda t: -t.shape[-1]).shape[-2:]
            parts = [
                F.normalize(F.interpolate(grabbed[layer], size=grid, mode="bilinear", align_corners=False), dim=1)
                for layer in layers
            ]
            out.append((torch.cat(parts, dim=1) / len(layers) ** 0.5).numpy())
    return np.concatenate(out).astype(np.float32)


def auto_segment_map(images: np.ndarray, n_segments: int, seed: int = 0, max_pixels: int = 20000) -> np.ndarray:
    """k-means segment map from aligned good images: int64 (H, W), labels 0..n_segments-1.

    Args:
        images: float (N, H, W) gray or (N, 3, H, W) RGB in [0, 1], good training images only.
        n_segments: number of clusters.
        seed: k-means seed.
        max_pixels: pixels sampled to fit k-means (all pixels are then assigned).
    Per-pixel features: mean and standard deviation of the gray level over the images, each
    standardised. Labels are ordered by ascending cluster mean gray level (deterministic).
    """
    from sklearn.cluster import KMeans

    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images.mean(axis=1)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"auto segmentation needs (N, H, W) or (N, 3, H, W) images, got {images.shape}")
    height, width = images.shape[1:]
    mean, std = images.mean(axis=0), images.std(axis=0)
    features = np.stack([mean.ravel(), std.ravel()], axis=1)
    features = (features - features.mean(0)) / np.where(features.std(0) > 0, features.std(0), 1.0)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(features), size=min(max_pixels, len(features)), replace=False)
    kmeans = KMeans(n_clusters=n_segments, n_init=4, random_state=seed).fit(features[sample])
    raw = kmeans.predict(features)
    centre_gray = np.array([mean.ravel()[raw == k].mean() if (raw == k).any() else np.inf for k in range(n_segments)])
    rank = np.empty(n_segments, dtype=np.int64)
    rank[np.argsort(centre_gray, kind="stable")] = np.arange(n_segments)
    return rank[raw].reshape(height, width)


def border_band(size: tuple[int, int], border: float) -> np.ndarray:
    """bool (H, W): pixels closer to the image edge than round(border x the shorter side), at least 1."""
    height, width = size
    width_px = max(1, int(round(border * min(height, width))))
    band = np.zeros((height, width), dtype=bool)
    band[:width_px], band[-width_px:], band[:, :width_px], band[:, -width_px:] = True, True, True, True
    return band


def _grid_gray(images: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Gray level averaged onto the feature grid: float32 (N, h, w)."""
    import torch
    import torch.nn.functional as F

    gray = torch.from_numpy(_as_rgb(images).mean(axis=1, keepdims=True))
    return F.adaptive_avg_pool2d(gray, grid)[:, 0].numpy()


@dataclass(frozen=True)
class FeatureClusters:
    """Shared k-means centres of backbone feature vectors, and how to make those vectors.

    Attributes:
        centres: float32 (K, P) in the projected space, ordered by ascending gray level.
        mean: float32 (C,) subtracted before the projection.
        components: float32 (C, P) projection (the identity when PCA is off).
        layers: backbone stages (`backbone_features`).
        smooth: Gaussian sigma of the distance maps, fraction of the longer side (0 = none).
        border: width of an image-border band, fraction of the shorter side (0 = none): its
            pixels get the extra label K whatever their features (`labels`).
        min_area: smallest connected segment piece, fraction of the image (0 = no clean-up;
            `segad.segments.coherence`).
    """

    centres: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    layers: tuple[str, ...]
    smooth: float
    border: float = 0.0
    min_area: float = 0.0

    @property
    def n_segments(self) -> int:
        return int(len(self.centres)) + (self.border > 0)

    def project(self, features: np.ndarray) -> np.ndarray:
        """(M, C) feature vectors -> (M, P) in the centres' space."""
        return (features - self.mean) @ self.components

    def labels(self, images: np.ndarray) -> np.ndarray:
        """Segment labels int64 (N, H, W) of images (float (N, 3, H, W) or (N, H, W) in [0, 1])."""
        import torch
        import torch.nn.functional as F

        images = _as_rgb(images)
        height, width = images.shape[2:]
        out = []
        for start in range(0, len(images), BATCH):
            features = backbone_features(images[start : start + BATCH], self.layers)
            n, channels, h, w = features.shape
            flat = self.project(features.transpose(0, 2, 3, 1).reshape(-1, channels))
            # squared distances |x|^2 - 2 x.c + |c|^2 (the |x|^2 term keeps the interpolation exact)
            distances = (flat * flat).sum(1, keepdims=True) - 2 * flat @ self.centres.T + (self.centres**2).sum(1)
            grid = torch.from_numpy(np.ascontiguousarray(distances.reshape(n, h, w, -1).transpose(0, 3, 1, 2)))
            full = F.interpolate(grid.float(), size=(height, width), mode="bilinear", align_corners=False).numpy()
            if self.smooth > 0:
                from scipy.ndimage import gaussian_filter

                sigma = self.smooth * max(height, width)
                full = gaussian_filter(full, sigma=(0, 0, sigma, sigma), mode="nearest")
            out.append(full.argmin(axis=1).astype(np.int64))
        labels = coherent_stack(np.concatenate(out), self.min_area)
        if self.border > 0:
            band = border_band((height, width), self.border)
            labels[:, band] = len(self.centres)
        return labels

    def settings_key(self, size: tuple[int, int]) -> str:
        """16-hex digest of everything that decides the labels at map size (H, W): cache identity."""
        settings = [BACKBONE, list(self.layers), self.smooth, list(size)] + ([self.border] if self.border else [])
        settings += [{"min_area": self.min_area}] if self.min_area else []
        digest = hashlib.sha256(json.dumps(settings).encode())
        for array in (self.centres, self.mean, self.components):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()[:16]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no pickle) for an ``.npz``; `from_arrays` reverses it."""
        return {
            "centres": self.centres,
            "mean": self.mean,
            "components": self.components,
            "layers": np.array(list(self.layers)),
            "smooth": np.array(self.smooth),
            "border": np.array(self.border),
            "min_area": np.array(self.min_area),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FeatureClusters:
        return cls(
            np.asarray(arrays["centres"], np.float32),
            np.asarray(arrays["mean"], np.float32),
            np.asarray(arrays["components"], np.float32),
            tuple(str(layer) for layer in np.asarray(arrays["layers"]).tolist()),
            float(arrays["smooth"]),
            float(arrays["border"]) if "border" in arrays else 0.0,  # files written before the border band
            float(arrays["min_area"]) if "min_area" in arrays else 0.0,  # written before the clean-up
        )

    def check(self) -> FeatureClusters:
        """Itself, after checking that the arrays fit each other and the layers; ValueError saying what does not."""
        layers = _check_layers(self.layers)
        channels = sum(CHANNELS[layer] for layer in layers)
        centres, mean, components = (np.asarray(a) for a in (self.centres, self.mean, self.components))
        if (
            centres.ndim != 2
            or len(centres) < 1
            or mean.shape != (channels,)
            or components.shape != (channels, centres.shape[1])
        ):
            raise ValueError(
                f"centres {centres.shape}, mean {mean.shape} and components {components.shape} do not fit "
                f"{'+'.join(layers)} ({channels} channels): expected (K, P), ({channels},), ({channels}, P)"
            )
        if not all(np.isfinite(a).all() for a in (centres, mean, components)) or not 0 <= self.smooth <= 0.25:
            raise ValueError(f"non-finite centres, mean or components, or smooth {self.smooth} outside [0, 0.25]")
        if not 0 <= self.min_area < 0.5:
            raise ValueError(f"min_area {self.min_area} outside [0, 0.5)")
        return self


def fit_feature_clusters(
    images: np.ndarray,
    n_segments: int,
    seed: int = 0,
    layers: Sequence[str] = DEFAULT_LAYERS,
    pca: int = 0,
    smooth: float = 0.0,
    max_vectors: int = 50000,
    border: float = 0.0,
    min_area: float = 0.01,
) -> FeatureClusters:
    """Fit the shared centres on good training images (float (N, 3, H, W) or (N, H, W) in [0, 1]).

    Args:
        n_segments: k-means clusters K.
        seed: seeds the sample of grid vectors and k-means.
        layers: backbone stages (`backbone_features`).
        pca: principal components kept (0 = none: the centres live in the C-dim feature space).
        smooth: see `FeatureClusters.smooth`.
        border: see `FeatureClusters.border` (the centres are fitted on all grid cells either way).
        max_vectors: grid vectors sampled over all images for PCA and k-means.
        min_area: see `FeatureClusters.min_area`.
    Raises ValueError for empty or badly shaped images, n_segments < 1 or too few distinct vectors.
    """
    from sklearn.cluster import KMeans

    if isinstance(n_segments, bool) or not isinstance(n_segments, (int, np.integer)) or n_segments < 1:
        raise ValueError(f"n_segments must be a positive integer, got {n_segments!r}")
    images = _as_rgb(images)
    features = backbone_features(images, layers)
    n, channels, h, w = features.shape
    flat = features.transpose(0, 2, 3, 1).reshape(-1, channels).astype(np.float64)
    gray = _grid_gray(images, (h, w)).reshape(-1)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(flat), size=min(max_vectors, len(flat)), replace=False))
    sample, sample_gray = flat[pick], gray[pick]
    mean = sample.mean(axis=0)
    if pca:
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        components = vt[: min(pca, len(vt))].T
    else:
        components = np.eye(channels)
    projected = (sample - mean) @ components
    if len(np.unique(projected.round(5), axis=0)) < n_segments:
        raise ValueError(
            f"per-image segmentation: the training images have fewer than {n_segments} distinct "
            "feature vectors; lower auto_segments"
        )
    kmeans = KMeans(n_clusters=int(n_segments), n_init=4, random_state=seed).fit(projected)
    cluster_gray = np.array(
        [sample_gray[kmeans.labels_ == k].mean() if (kmeans.labels_ == k).any() else np.inf for k in range(n_segments)]
    )
    order = np.argsort(cluster_gray, kind="stable")
    return FeatureClusters(
        centres=kmeans.cluster_centers_[order].astype(np.float32),
        mean=mean.astype(np.float32),
        components=components.astype(np.float32),
        layers=_check_layers(layers),
        smooth=float(smooth),
        border=float(border),
        min_area=float(min_area),
    )
