"""Per-segment statistics of raw anomaly maps, vectorised: what the SegAD feature vector is made of.

For one image, detector k and segment l, with ``sel = map_k[S == l]`` (1-D, raw map values):

- ``q995``: ``numpy.quantile(sel, 0.995)`` (linear interpolation, numpy's default);
- ``skew``: ``scipy.stats.skew(sel)`` (bias=True: the biased population estimator m3 / m2**1.5);
- ``kurtosis``: ``scipy.stats.kurtosis(sel)`` (fisher=True, bias=True: m4 / m2**2 - 3);
- ``mean``: ``sel.mean()``.

Edge cases, kept exactly as the reference (abc-125/segad) has them:

- empty segment: all four statistics are 0.0;
- constant or 1-pixel segment: skew and kurtosis are NaN (scipy's rule: NaN where
  ``m2 <= (eps * mean)**2``, eps of the map's dtype, so float32 maps use float32's eps as scipy
  does on a float32 array). XGBoost reads NaN as a missing value; nothing here crashes on it.

Moments are accumulated in float64 from the stored values (more accurate than scipy run on a
float32 array; equal to scipy run on the float64 values to ~1e-9 relative). Feature vector per
image: when enabled, the supervised classifier score first (the paper's equation); then
``4 * K * L`` segment statistics in segment-major order, then detector, then
[q995, skew, kurtosis, mean]; then the K per-detector map maxima. Column names and their order:
`segad.columns`. The same statistics on torch tensors (maps already on a GPU):
`segad.segments.features_torch`.

How it is fast: `segad.segments.kernels` (numba, compiled on first use and cached on disk) copies
each map into segment-contiguous order by runs of equal labels, computes the moments in two
vectorised float64 passes per segment, and finds the two order statistics around the 99.5 %
position by quickselect among the few values above a threshold drawn from a strided subsample
(the whole segment when that leaves too few values, so it stays exact). No per-pixel Python.
`benchmarks/bench_features.py` measures it against the reference loop (docs/features.md).

Example:
    >>> import numpy as np
    >>> from segad.segments.statistics import segment_statistics
    >>> maps = np.random.default_rng(0).gamma(2.0, 1.0, (4, 32, 32)).astype(np.float32)
    >>> labels = np.repeat(np.arange(4), 256).reshape(32, 32)
    >>> segment_statistics(maps, labels, n_segments=4).shape   # (images, segments, 4 stats)
    (4, 4, 4)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: the upper quantile of each segment's values (the paper's 99.5 %)
QUANTILE: float = 0.995


@dataclass(frozen=True)
class SegmentMap:
    """A static label map checked once, ready for `segment_statistics`.

    Attributes:
        labels: int64 (H, W) segment labels in [0, n_segments).
        counts: int64 (L,) pixels per segment (0 for an empty segment).
    """

    labels: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_labels(cls, labels: np.ndarray, n_segments: int) -> SegmentMap:
        """Build from an integer (H, W) label map with values in [0, n_segments)."""
        labels = _check_labels(labels, n_segments)
        if labels.ndim != 2:
            raise ValueError(f"a static label map must be (H, W), got shape {labels.shape}")
        counts = np.bincount(labels.ravel(), minlength=n_segments).astype(np.int64)
        return cls(labels=labels, counts=counts)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.labels.shape)

    @property
    def n_segments(self) -> int:
        return int(self.counts.size)


def _check_labels(labels: np.ndarray, n_segments: int, check_range: bool = True) -> np.ndarray:
    """Labels as int64, after checking they are integers (in [0, n_segments) with `check_range`)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"segment labels must be integers, got dtype {labels.dtype}")
    if check_range and labels.size and (labels.min() < 0 or labels.max() >= n_segments):
        raise ValueError(f"segment labels must lie in [0, {n_segments}), got [{labels.min()}, {labels.max()}]")
    return np.ascontiguousarray(labels, dtype=np.int64)


def segment_statistics(
    maps: np.ndarray,
    labels: np.ndarray | SegmentMap,
    n_segments: int | None = None,
    names: Sequence[str] | None = None,
    threads: int = 1,
) -> np.ndarray:
    """q995, skew, kurtosis, mean of every segment of every map: float64 (N, L, 4).

    Args:
        maps: raw anomaly maps, float (N, H, W); every value must be finite.
        labels: integer segment labels, (H, W) shared by all maps (or a prepared
            `SegmentMap`), or (N, H, W) one label map per image.
        n_segments: L; required unless `labels` is a `SegmentMap`.
        names: optional name of each map (e.g. its map_key), used in error messages.
        threads: the batch is cut into this many chunks of consecutive maps, summarised at once on
            as many threads (the compiled kernel releases the GIL); the result does not depend on it.
    Raises:
        ValueError: on a shape or label mismatch, or a map holding NaN or infinity (named).
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {maps.shape}")
    stored = maps.dtype if np.issubdtype(maps.dtype, np.floating) else np.dtype(np.float64)
    n = maps.shape[0]
    if isinstance(labels, SegmentMap):
        flat_labels, label_of_map, n_segments = labels.labels.reshape(1, -1), np.zeros(n, np.int64), labels.n_segments
        label_shape = labels.shape
    else:
        if n_segments is None:
            raise ValueError("n_segments is required with a label array")
        labels = _check_labels(labels, n_segments, check_range=False)  # the kernel checks the range
        if labels.ndim == 3:
            if labels.shape != maps.shape:
                raise ValueError(f"per-image labels {labels.shape} do not match maps {maps.shape}")
            flat_labels, label_of_map = labels.reshape(n, -1), np.arange(n, dtype=np.int64)
            label_shape = labels.shape[1:]
        elif labels.ndim == 2:
            flat_labels, label_of_map = labels.reshape(1, -1), np.zeros(n, np.int64)
            label_shape = labels.shape
        else:
            raise ValueError(f"labels must be (H, W) or (N, H, W), got shape {labels.shape}")
    if tuple(maps.shape[1:]) != tuple(label_shape):
        raise ValueError(f"label map {tuple(label_shape)} does not match maps {maps.shape[1:]}")
    compute = np.float64 if stored == np.float64 else np.float32
    flat = np.ascontiguousarray(maps.reshape(n, -1), dtype=compute)
    out = np.empty((n, n_segments, 4), dtype=np.float64)
    if n == 0:
        return out
    first_bad, bad_labels = _run_kernel(flat, flat_labels, label_of_map, float(np.finfo(stored).eps), out, threads)
    if bad_labels >= 0:
        wrong = flat_labels[label_of_map[bad_labels]]
        raise ValueError(
            f"segment labels must lie in [0, {n_segments}), got [{wrong.min()}, {wrong.max()}]"
            + (f" for map {names[bad_labels]!r}" if names is not None else "")
        )
    if first_bad >= 0:
        name = repr(names[first_bad]) if names is not None else f"number {first_bad} of the batch"
        raise ValueError(f"anomaly map {name} contains NaN or infinite values")
    return out


def _run_kernel(flat, flat_labels, label_of_map, eps: float, out: np.ndarray, threads: int) -> tuple[int, int]:
    """`segment_statistics_kernel` over `threads` chunks of the batch; (first bad map, first bad
    label map) as batch indices, -1 for none."""
    from segad.segments.kernels import segment_statistics_kernel

    n = flat.shape[0]
    chunks = min(max(int(threads), 1), n)
    if chunks == 1:
        return segment_statistics_kernel(flat, flat_labels, label_of_map, eps, out)
    bounds = np.linspace(0, n, chunks + 1).astype(int)
    parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    results = _thread_pool(chunks).map(
        lambda part: segment_statistics_kernel(flat[part], flat_labels, label_of_map[part], eps, out[part]), parts
    )
    first_bad = bad_labels = -1
    for part, (bad, wrong) in zip(parts, results):
        if bad >= 0 and first_bad < 0:
            first_bad = part.start + bad
        if wrong >= 0 and bad_labels < 0:
            bad_labels = part.start + wrong
    return first_bad, bad_labels


@functools.cache
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="segad-features")


def default_threads() -> int:
    """Threads for the feature kernel when none is configured: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def feature_matrix(
    stats: Sequence[np.ndarray], maxima: Sequence[np.ndarray], classifier: np.ndarray | None = None
) -> np.ndarray:
    """Stack per-detector (N, L, 4) statistics and (N,) maxima into float64 (N, 4*K*L + K [+1]).

    The order matches `segad.columns.feature_columns(detectors, L, classifier is not None)`:
    the classifier score first, the maxima last.
    """
    blocks = np.stack([np.asarray(s, dtype=np.float64) for s in stats], axis=2)  # (N, L, K, 4)
    n = blocks.shape[0]
    parts = [blocks.reshape(n, -1), np.stack([np.asarray(m, np.float64) for m in maxima], axis=1)]
    if classifier is not None:
        parts.insert(0, np.asarray(classifier, dtype=np.float64).reshape(n, 1))
    return np.concatenate(parts, axis=1)
