"""Per-segment statistics on torch tensors, for maps that are already on a GPU.

The same definitions as `segad.segments.statistics.segment_statistics` (q995 by linear
interpolation, biased skew, excess biased kurtosis, mean; empty segment -> 0.0; constant segment
-> NaN skew and kurtosis) with float64 scatter sums, so no host round trip is needed. The
pipeline's features stage uses the numpy/numba path; this one serves the GPU benchmark
(`benchmarks/bench_features.py`) and is checked against the reference in the tests.
"""

from __future__ import annotations

import numpy as np

from segad.segments.statistics import QUANTILE

#: The statistics this path computes, in the order of its last axis (the paper's four).
TORCH_STATS: tuple[str, ...] = ("q995", "skew", "kurtosis", "mean")


def segment_statistics_torch(maps, labels, n_segments: int):
    """Same statistics as `segment_statistics` for torch tensors on any device: float64 (N, L, 4).

    Args:
        maps: float tensor (N, H, W).
        labels: integer tensor (H, W) shared, or (N, H, W), values in [0, n_segments).
    Uses float64 scatter sums for the moments and a stable two-key sort for the quantile, so it
    needs no host round trip. The zero rule uses the eps of `maps.dtype`, as the numpy path.
    """
    import torch

    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {tuple(maps.shape)}")
    n = maps.shape[0]
    device = maps.device
    labels = labels.to(device=device, dtype=torch.int64)
    if labels.ndim == 2:
        if tuple(labels.shape) != tuple(maps.shape[1:]):
            raise ValueError(f"labels {tuple(labels.shape)} do not match maps {tuple(maps.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_segments):
            raise ValueError(f"segment labels must lie in [0, {n_segments})")
        return _torch_static(maps, labels, n_segments)
    if labels.shape != maps.shape:
        raise ValueError(f"labels {tuple(labels.shape)} do not match maps {tuple(maps.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_segments):
        raise ValueError(f"segment labels must lie in [0, {n_segments})")
    keys = (torch.arange(n, device=device)[:, None] * n_segments + labels.reshape(n, -1)).reshape(-1)
    values = maps.reshape(-1).to(torch.float64)
    # lexicographic sort: by value, then stably by key
    by_value = torch.argsort(values, stable=True)
    by_key = torch.argsort(keys[by_value], stable=True)
    order = by_value[by_key]
    values, keys = values[order], keys[order]
    groups = n * n_segments
    counts = torch.bincount(keys, minlength=groups)
    starts = torch.cumsum(counts, 0) - counts
    cf = counts.to(torch.float64)
    safe = cf.clamp(min=1.0)

    def seg_sum(x):
        return torch.zeros(groups, dtype=torch.float64, device=device).index_add_(0, keys, x)

    mean = seg_sum(values) / safe
    d = values - mean[keys]
    d2 = d * d
    m2 = seg_sum(d2) / safe
    m3 = seg_sum(d2 * d) / safe
    m4 = seg_sum(d2 * d2) / safe
    eps = torch.finfo(maps.dtype).eps
    zero = m2 <= (eps * mean) ** 2
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
    skew = torch.where(zero, nan, m3 / m2**1.5)
    kurt = torch.where(zero, nan, m4 / m2**2.0) - 3.0
    position = QUANTILE * (cf - 1.0)
    low = torch.floor(position)
    frac = position - low
    low = low.to(torch.int64).clamp(min=0)
    high = torch.minimum(low + 1, (counts - 1).clamp(min=0))
    last = max(values.numel() - 1, 0)
    lower = values[(starts + low).clamp(max=last)]
    upper = values[(starts + high).clamp(max=last)]
    diff = upper - lower
    q = torch.where(frac >= 0.5, upper - diff * (1.0 - frac), lower + diff * frac)
    out = torch.stack([q, skew, kurt, mean], dim=1)
    out = torch.where((counts > 0)[:, None], out, torch.zeros_like(out))
    return out.reshape(n, n_segments, 4)


def _torch_static(maps, labels, n_segments: int):
    """Shared (H, W) labels: gather once into segment order, then per segment moments + top-k."""
    import torch

    n = maps.shape[0]
    flat_labels = labels.reshape(-1)
    order = torch.argsort(flat_labels, stable=True)
    counts = torch.bincount(flat_labels, minlength=n_segments).tolist()
    grouped = maps.reshape(n, -1)[:, order]
    eps = torch.finfo(maps.dtype).eps
    out = torch.zeros((n, n_segments, 4), dtype=torch.float64, device=maps.device)
    start = 0
    for segment, count in enumerate(counts):
        if count == 0:
            continue  # empty segment: zeros
        block = grouped[:, start : start + count].to(torch.float64)
        start += count
        mean = block.mean(dim=1)
        d = block - mean[:, None]
        d2 = d * d
        m2, m3, m4 = d2.mean(dim=1), (d2 * d).mean(dim=1), (d2 * d2).mean(dim=1)
        zero = m2 <= (eps * mean) ** 2
        nan = torch.full_like(m2, float("nan"))
        position = QUANTILE * (count - 1)
        low = int(np.floor(position))
        frac = position - low
        need = count - low  # order statistics at ascending ranks >= low
        top = torch.topk(block, need, dim=1, largest=True, sorted=True).values  # descending
        lower = top[:, need - 1]
        upper = top[:, max(need - 2, 0)]
        diff = upper - lower
        q = upper - diff * (1.0 - frac) if frac >= 0.5 else lower + diff * frac
        out[:, segment, 0] = q
        out[:, segment, 1] = torch.where(zero, nan, m3 / m2**1.5)
        out[:, segment, 2] = torch.where(zero, nan, m4 / m2**2.0) - 3.0
        out[:, segment, 3] = mean
    return out
