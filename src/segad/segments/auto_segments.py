"""Per-image automatic segments with cluster centres shared across a category (`auto_per_image`).

The static `auto` map (k-means on per-pixel mean / std over aligned good images) assumes every
part sits at the same place. For unaligned parts the segments must follow each image's content:

1. every pixel gets a small colour / texture descriptor, computed on the image at map
   resolution: the RGB colour smoothed by a Gaussian (sigma = `smooth` x image side) and the
   local standard deviation of the gray level at twice that scale (texture), i.e. 4 values;
2. `fit_pixel_clusters` standardises the descriptors of pixels sampled from the category's good
   *detector_train* images and fits k-means once (seeded): the centres are shared, so segment l
   is the same kind of region ("bright smooth ceramic", "textured brass", "dark background") in
   every image, wherever it lies;
3. `PixelClusters.labels` assigns every pixel of any image (brf_train, test, a new production
   image) to its nearest centre: int64 (N, H, W) in [0, n_segments).

Labels are ordered by ascending mean gray level of the centres, so the order does not depend on
k-means' internal numbering. Cost per image: Gaussian filters of 5 planes and a nearest-centre
search of H*W x K (measured about 0.1 s per 256 x 256 image with K = 4 on the shared 2-core
development machine at load ~6; docs/features.md). Each image is segmented once per run
(`SegmentMaps` caches the labels, uint8).

Serving new images needs only the fitted `PixelClusters` (centres, mean, scale, smooth: a few
dozen floats, `to_dict` / `from_dict`) and the image itself; a production bundle would have to
store that dict and call `labels` on every scored image instead of its static map.

Example:
    >>> import numpy as np
    >>> from segad.segments.auto_segments import fit_pixel_clusters
    >>> images = np.random.default_rng(0).random((4, 3, 32, 32))
    >>> clusters = fit_pixel_clusters(images, n_segments=3, seed=0)
    >>> clusters.labels(images).shape
    (4, 32, 32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FEATURES = 4  # smoothed R, G, B; local gray std


def _as_rgb(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:  # (N, H, W) gray
        images = np.repeat(images[:, None], 3, axis=1)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"per-image segmentation needs (N, H, W) gray or (N, 3, H, W) RGB images, got {images.shape}")
    return images


def pixel_features(images: np.ndarray, smooth: float = 0.01) -> np.ndarray:
    """Per-pixel descriptors float32 (N, H, W, 4): smoothed RGB and local gray std.

    Args:
        images: float (N, 3, H, W) RGB or (N, H, W) gray, values in [0, 1].
        smooth: Gaussian sigma as a fraction of the image side (0.01 = 2.6 px at 256 px).
    """
    from scipy.ndimage import gaussian_filter

    images = _as_rgb(images)
    n, _, height, width = images.shape
    sigma = max(smooth * max(height, width), 0.5)
    colour = gaussian_filter(images, sigma=(0, 0, sigma, sigma), mode="nearest")
    gray = images.mean(axis=1)
    mean = gaussian_filter(gray, sigma=(0, 2 * sigma, 2 * sigma), mode="nearest")
    mean_sq = gaussian_filter(gray * gray, sigma=(0, 2 * sigma, 2 * sigma), mode="nearest")
    texture = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    return np.concatenate([colour.transpose(0, 2, 3, 1), texture[..., None]], axis=3).astype(np.float32)


@dataclass(frozen=True)
class PixelClusters:
    """Shared k-means centres of pixel descriptors (standardised space) and their standardisation.

    `centres` float64 (K, 4), ordered by ascending gray level; `mean`, `scale` float64 (4,).
    """

    centres: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    smooth: float

    @property
    def n_segments(self) -> int:
        return int(len(self.centres))

    def labels(self, images: np.ndarray) -> np.ndarray:
        """Segment labels int64 (N, H, W) of `images` (as `pixel_features`): nearest shared centre."""
        features = pixel_features(images, self.smooth)
        n, height, width, _ = features.shape
        flat = (features.reshape(-1, N_FEATURES) - self.mean) / self.scale
        # squared distances |x|^2 - 2 x.c + |c|^2 without the |x|^2 term (same argmin)
        centres = self.centres.astype(np.float32)
        scores = flat.astype(np.float32) @ centres.T * -2.0 + (centres * centres).sum(axis=1)
        return scores.argmin(axis=1).astype(np.int64).reshape(n, height, width)

    def to_dict(self) -> dict:
        """JSON-able form (what a production bundle would store)."""
        return {
            "centres": self.centres.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "smooth": self.smooth,
        }

    @classmethod
    def from_dict(cls, values: dict) -> PixelClusters:
        return cls(
            np.asarray(values["centres"], float),
            np.asarray(values["mean"], float),
            np.asarray(values["scale"], float),
            float(values["smooth"]),
        )


def fit_pixel_clusters(
    images: np.ndarray, n_segments: int, seed: int = 0, max_pixels: int = 50000, smooth: float = 0.01
) -> PixelClusters:
    """Fit the shared centres on good training images (float (N, 3, H, W) or (N, H, W) in [0, 1]).

    `max_pixels` pixels are sampled (seeded) over all images for the standardisation and k-means.
    Raises ValueError for empty or badly shaped images or n_segments < 1.
    """
    from sklearn.cluster import KMeans

    if isinstance(n_segments, bool) or not isinstance(n_segments, (int, np.integer)) or n_segments < 1:
        raise ValueError(f"n_segments must be a positive integer, got {n_segments!r}")
    features = pixel_features(images, smooth).reshape(-1, N_FEATURES).astype(np.float64)
    rng = np.random.default_rng(seed)
    sample = features[rng.choice(len(features), size=min(max_pixels, len(features)), replace=False)]
    mean = sample.mean(axis=0)
    scale = sample.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    standard = (sample - mean) / scale
    if len(np.unique(standard.round(6), axis=0)) < n_segments:
        raise ValueError(
            f"per-image segmentation: the training images have fewer than {n_segments} distinct "
            "pixel descriptors; lower auto_segments"
        )
    kmeans = KMeans(n_clusters=int(n_segments), n_init=4, random_state=seed).fit(standard)
    centres = kmeans.cluster_centers_
    gray = (centres[:, :3] * scale[:3] + mean[:3]).mean(axis=1)
    order = np.argsort(gray, kind="stable")
    return PixelClusters(centres=centres[order], mean=mean, scale=scale, smooth=float(smooth))
