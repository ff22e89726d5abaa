"""Compiled (numba) kernels behind `segad.segments.statistics.segment_statistics`.

One call summarises a batch of maps. Per map, pixels are copied, in the map's own dtype, into
segment-contiguous order by runs of equal labels (a label map with R runs costs R small copies,
computed once per label map); then, per segment:

- two vectorised passes with float64 arithmetic give the mean and the central moments m2, m3, m4;
- a threshold: the `keep`-th largest value of a ~512-value strided subsample, kept in a small
  sorted buffer during one scan, with `keep` chosen to leave about twice the values needed;
- a branch-free pass copies the values at or above it (the candidates, ~2 % of the segment);
- quickselect among the candidates gives the two order statistics around the 99.5 % position.
  When the threshold leaves too few candidates, the whole segment is used: the result is exact
  whatever the data.

Compiled on first use and cached on disk (numba ``cache=True``: ``__pycache__`` next to this file,
or numba's user-wide cache when that is read-only). Single-threaded and GIL-free (``nogil``), so
`segad.segments.statistics.segment_statistics` runs chunks of a batch on several threads.
"""

from __future__ import annotations

import numba
import numpy as np

QUANTILE = 0.995
_SUBSAMPLE = 512  # values in the strided subsample that sets the candidate threshold
_DIRECT = 1024  # segments up to this size are selected on directly
_KEEP_MAX = 64  # room of the top-values buffer (keep is ~9 for large segments, at most ~17)


@numba.njit(cache=True, nogil=True)
def _select(values, k):  # pragma: no cover - compiled
    """Reorder `values` in place so that values[k] is its k-th smallest (0-based) and
    values[:k] <= values[k] <= values[k + 1:] (Hoare quickselect, median-of-three pivot)."""
    lo = 0
    hi = values.size - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if values[mid] < values[lo]:
            values[mid], values[lo] = values[lo], values[mid]
        if values[hi] < values[lo]:
            values[hi], values[lo] = values[lo], values[hi]
        if values[hi] < values[mid]:
            values[hi], values[mid] = values[mid], values[hi]
        pivot = values[mid]
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _moments(segment):  # pragma: no cover - compiled
    """(mean, m2, m3, m4) of a 1-D float array: two passes, float64 arithmetic and sums (reassociated)."""
    count = segment.size
    total = 0.0
    for j in range(count):
        total += np.float64(segment[j])
    mean = total / count
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    for j in range(count):
        d = np.float64(segment[j]) - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    return mean, m2 / count, m3 / count, m4 / count


@numba.njit(cache=True, nogil=True)
def _candidate_threshold(segment, need, top):  # pragma: no cover - compiled
    """A value expected to leave ~2x `need` values at or above it (-inf: take them all).

    The `keep`-th largest value of a strided subsample of ~`_SUBSAMPLE` values, kept in the small
    ascending buffer `top` (at least `_KEEP_MAX` long) while scanning the subsample once.
    """
    count = segment.size
    if count <= _DIRECT:
        return -np.inf
    stride = count // _SUBSAMPLE
    size = (count + stride - 1) // stride
    keep = (2 * need * size + count - 1) // count + 4
    if keep >= size or keep > _KEEP_MAX:
        return -np.inf
    for t in range(keep):
        top[t] = -np.inf
    for j in range(0, count, stride):
        value = segment[j]
        if value > top[0]:
            t = 1
            while t < keep and top[t] < value:
                top[t - 1] = top[t]
                t += 1
            top[t - 1] = value
    return top[0]


@numba.njit(cache=True, nogil=True)
def _order_statistics(segment, low, candidates, top):  # pragma: no cover - compiled
    """Ascending order statistics `low` and `min(low + 1, n - 1)` of a 1-D float array."""
    count = segment.size
    need = count - low  # values at ascending ranks >= low
    threshold = _candidate_threshold(segment, need, top)
    k = 0
    for j in range(count):  # branch-free: every value is written, the count advances on a hit
        value = segment[j]
        candidates[k] = value
        k += value >= threshold
    if k < need:  # the threshold was too high: select on the whole segment
        candidates[:count] = segment
        k = count
    work = candidates[:k]
    rank = k - need
    _select(work, rank)
    lower = work[rank]
    if need == 1:
        return lower, lower
    upper = work[rank + 1]
    for j in range(rank + 2, k):
        if work[j] < upper:
            upper = work[j]
    return lower, upper


@numba.njit(cache=True, nogil=True)
def _runs(labels, n_segments, run_source, run_target, run_length, counts):  # pragma: no cover
    """Runs of equal labels in a flat label map and where each lands in segment order.

    Fills `counts` (pixels per segment) and the first R entries of the run arrays; returns R,
    or -1 when a label lies outside [0, n_segments).
    """
    n_pixels = labels.size
    counts[:] = 0
    n_runs = 0
    j = 0
    while j < n_pixels:
        label = labels[j]
        if label < 0 or label >= n_segments:
            return -1
        end = j + 1
        while end < n_pixels and labels[end] == label:
            end += 1
        run_source[n_runs] = j
        run_target[n_runs] = label
        run_length[n_runs] = end - j
        counts[label] += end - j
        n_runs += 1
        j = end
    position = np.zeros(n_segments, np.int64)
    start = 0
    for segment in range(n_segments):
        position[segment] = start
        start += counts[segment]
    for run in range(n_runs):
        segment = run_target[run]
        run_target[run] = position[segment]
        position[segment] += run_length[run]
    return n_runs


@numba.njit(cache=True, nogil=True)
def segment_statistics_kernel(maps, labels, label_of_map, eps, out):  # pragma: no cover
    """q995, skew, kurtosis, mean per segment of every map into `out`.

    Args:
        maps: float32/float64 (N, P) flattened maps (the caller widens float16 maps to float32).
        labels: int64 (M, P) flattened label maps, values in [0, L) (checked here).
        label_of_map: int64 (N,) row of `labels` for each map (consecutive maps sharing a label
            map reuse its runs).
        eps: machine epsilon of the stored map dtype (scipy's constant-segment rule).
        out: float64 (N, L, 4), written in full.
    Returns:
        (first map with a non-finite value, first map whose labels leave [0, L)), -1 for none;
        `out` is left incomplete after a bad label map.
    """
    n_maps, n_pixels = maps.shape
    n_segments = out.shape[1]
    grouped = np.empty(n_pixels, maps.dtype)
    candidates = np.empty(n_pixels, maps.dtype)
    top = np.empty(_KEEP_MAX, maps.dtype)
    run_source = np.empty(n_pixels, np.int64)
    run_target = np.empty(n_pixels, np.int64)
    run_length = np.empty(n_pixels, np.int64)
    counts = np.zeros(n_segments, np.int64)
    n_runs = 0
    current = -1
    first_bad = -1
    for i in range(n_maps):
        if label_of_map[i] != current:
            current = label_of_map[i]
            n_runs = _runs(labels[current], n_segments, run_source, run_target, run_length, counts)
            if n_runs < 0:
                return first_bad, i
        values = maps[i]
        for run in range(n_runs):
            source = values[run_source[run] : run_source[run] + run_length[run]]
            target = grouped[run_target[run] : run_target[run] + run_length[run]]
            for t in range(source.size):
                target[t] = source[t]
        start = 0
        for segment in range(n_segments):
            count = counts[segment]
            if count == 0:
                out[i, segment, :] = 0.0  # empty segment: all four statistics are 0
                continue
            pixels = grouped[start : start + count]
            start += count
            mean, m2, m3, m4 = _moments(pixels)
            if not np.isfinite(mean):
                out[i, segment, :] = np.nan
                if first_bad < 0:
                    first_bad = i
                continue
            position = QUANTILE * (count - 1)
            low = int(np.floor(position))
            frac = position - low
            lower, upper = _order_statistics(pixels, low, candidates, top)
            lower = np.float64(lower)
            upper = np.float64(upper)
            diff = upper - lower  # numpy.quantile's linear interpolation
            out[i, segment, 0] = upper - diff * (1.0 - frac) if frac >= 0.5 else lower + diff * frac
            if m2 <= (eps * mean) ** 2:  # numerically constant: scipy returns NaN
                out[i, segment, 1] = np.nan
                out[i, segment, 2] = np.nan
            else:
                out[i, segment, 1] = m3 / m2**1.5
                out[i, segment, 2] = m4 / m2**2.0 - 3.0
            out[i, segment, 3] = mean
    return first_bad, -1
