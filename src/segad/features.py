"""Per-segment statistics of raw anomaly maps: the SegAD feature vector, vectorised.

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
image: ``4 * K * L`` segment statistics in segment-major order, then detector, then
[q995, skew, kurtosis, mean]; then the K per-detector map maxima; then, when enabled, the
supervised classifier score. Column names: ``seg<l>__<detector>__<stat>``, ``<detector>__max``,
``classifier__score``.

How it is fast: for a static label map (one per category), pixels are gathered once per batch into
segment-contiguous order; every segment is then a contiguous slice of a (batch, n_pixels) array,
so moments are row-wise float64 dot products and the 99.5 % quantile is found among a few
candidates above a threshold estimated from a strided subsample (falling back to a full
partition where the candidates do not provably contain the order statistics). Per-image label
maps take the same path once per image (a stable radix sort of its labels). No per-pixel Python
anywhere.

Example:
    >>> import numpy as np
    >>> from segad.features import segment_statistics
    >>> maps = np.random.default_rng(0).gamma(2.0, 1.0, (4, 32, 32)).astype(np.float32)
    >>> labels = np.repeat(np.arange(4), 256).reshape(32, 32)
    >>> segment_statistics(maps, labels, n_segments=4).shape   # (images, segments, 4 stats)
    (4, 4, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
import threading
from dataclasses import dataclass

import numpy as np

STATS: tuple[str, ...] = ("q995", "skew", "kurtosis", "mean")
QUANTILE: float = 0.995
CLASSIFIER_COLUMN = "classifier__score"


# --------------------------------------------------------------------------------------------
# column names


def feature_columns(
    detectors: Sequence[str], n_segments: int, classifier: bool = False
) -> list[str]:
    """Feature column names in the reference order (segment-major, detector, stat; maxima last)."""
    columns = [
        f"seg{segment}__{detector}__{stat}"
        for segment in range(n_segments)
        for detector in detectors
        for stat in STATS
    ]
    columns += [f"{detector}__max" for detector in detectors]
    if classifier:
        columns.append(CLASSIFIER_COLUMN)
    return columns


# --------------------------------------------------------------------------------------------
# reference implementation (the definition; used by tests and the benchmark)


def reference_segment_statistics(
    anomaly_map: np.ndarray, labels: np.ndarray, n_segments: int
) -> np.ndarray:
    """Straightforward per-segment loop, as the SegAD reference code: float64 (L, 4).

    Boolean mask per segment, ``numpy.quantile``, ``scipy.stats.skew``/``kurtosis``. Slow; the
    definition the vectorised path is tested against.
    """
    from scipy.stats import kurtosis, skew

    out = np.zeros((n_segments, 4), dtype=np.float64)
    for segment in range(n_segments):
        sel = anomaly_map[labels == segment]
        if sel.size:
            out[segment] = (
                np.quantile(sel, QUANTILE),
                skew(sel),
                kurtosis(sel),
                sel.mean(),
            )
    return out


# --------------------------------------------------------------------------------------------
# vectorised numpy path


@dataclass(frozen=True)
class SegmentLayout:
    """A static label map prepared once: the pixel permutation that makes segments contiguous.

    Attributes:
        order: int64 (P,) flat pixel indices sorted by segment (stable).
        starts: int64 (L,) start of each segment in the permuted order.
        counts: int64 (L,) pixels per segment (0 for an empty segment).
        shape: (H, W) of the label map.
    """

    order: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def from_labels(cls, labels: np.ndarray, n_segments: int) -> SegmentLayout:
        """Build from an integer (H, W) label map with values in [0, n_segments)."""
        labels = _check_labels(labels, n_segments)
        flat = labels.ravel()
        small = flat.astype(np.int16) if n_segments <= np.iinfo(np.int16).max else flat
        order = np.argsort(small, kind="stable").astype(np.int64)  # radix sort for int16 keys
        counts = np.bincount(flat, minlength=n_segments).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return cls(order=order, starts=starts, counts=counts, shape=tuple(labels.shape))

    @property
    def n_segments(self) -> int:
        return int(self.counts.size)


def _check_labels(labels: np.ndarray, n_segments: int) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"segment labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_segments):
        raise ValueError(
            f"segment labels must lie in [0, {n_segments}), got [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64, copy=False)


def segment_statistics(
    maps: np.ndarray,
    labels: np.ndarray | SegmentLayout,
    n_segments: int | None = None,
) -> np.ndarray:
    """q995, skew, kurtosis, mean of every segment of every map: float64 (N, L, 4).

    Args:
        maps: raw anomaly maps, float (N, H, W).
        labels: integer segment labels, (H, W) shared by all maps (or a prepared
            `SegmentLayout`), or (N, H, W) one label map per image.
        n_segments: L; required unless `labels` is a `SegmentLayout`.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float64)
    if isinstance(labels, SegmentLayout):
        layout = labels
    else:
        labels = np.asarray(labels)
        if n_segments is None:
            raise ValueError("n_segments is required with a label array")
        if labels.ndim == 3:
            if labels.shape != maps.shape:
                raise ValueError(
                    f"per-image labels {labels.shape} do not match maps {maps.shape}"
                )
            return _per_image_statistics(maps, _check_labels(labels, n_segments), n_segments)
        layout = SegmentLayout.from_labels(labels, n_segments)
    if tuple(maps.shape[1:]) != tuple(layout.shape):
        raise ValueError(f"label map {layout.shape} does not match maps {maps.shape[1:]}")
    return _static_statistics(maps, layout)


def _zero_rule(m2: np.ndarray, mean: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """scipy's 'numerically constant' test: m2 <= (eps * mean)**2 with eps of the data dtype."""
    eps = np.finfo(dtype).eps
    return m2 <= (eps * mean) ** 2


def _shape_stats(m2, m3, m4, mean, dtype) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        zero = _zero_rule(m2, mean, dtype)
        skew = np.where(zero, np.nan, m3 / m2**1.5)
        kurt = np.where(zero, np.nan, m4 / m2**2.0) - 3.0
    return skew, kurt


def _lerp(lower: np.ndarray, upper: np.ndarray, frac: np.ndarray | float) -> np.ndarray:
    """numpy.quantile's linear interpolation between two order statistics."""
    diff = upper - lower
    frac = np.broadcast_to(np.asarray(frac, dtype=np.float64), np.shape(lower))
    return np.where(frac >= 0.5, upper - diff * (1.0 - frac), lower + diff * frac)


def _quantile_positions(count: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """(floor index, fraction) of the linear quantile position q * (n - 1)."""
    position = QUANTILE * (np.asarray(count, dtype=np.float64) - 1.0)
    low = np.floor(position)
    return low.astype(np.int64), position - low


def _top_order_statistics(block: np.ndarray, low: int) -> tuple[np.ndarray, np.ndarray]:
    """Ascending order statistics `low` and `low + 1` (clipped) of every row of (n, c) `block`.

    Looks only at candidates at or above a per-row threshold taken from a strided subsample; a
    row whose candidates cannot contain both order statistics is partitioned in full.
    """
    n, c = block.shape
    high = min(low + 1, c - 1)
    need = c - low  # elements at ascending ranks >= low
    if c <= 512:
        part = np.partition(block, [low, high], axis=1)
        return part[:, low], part[:, high]
    stride = 8
    sub = block[:, ::stride]
    # aim for ~4x the needed tail (plus a margin) above the threshold
    keep = min(sub.shape[1], int(np.ceil(4.0 * need / stride)) + 8)
    kth = sub.shape[1] - keep
    threshold = np.partition(sub, kth, axis=1)[:, kth]
    mask = block >= threshold[:, None]
    counts = mask.sum(axis=1)
    lower = np.empty(n, dtype=block.dtype)
    upper = np.empty(n, dtype=block.dtype)
    ok = counts >= need
    if ok.any():
        rows = np.flatnonzero(ok)
        if rows.size == n:
            sub_counts, values = counts, block[mask]
        else:
            sub_counts, values = counts[rows], block[rows][mask[rows]]
        width = int(sub_counts.max())
        padded = np.full((rows.size, width), -np.inf, dtype=np.float64)
        row_of = np.repeat(np.arange(rows.size), sub_counts)
        offsets = np.arange(values.size) - np.repeat(np.cumsum(sub_counts) - sub_counts, sub_counts)
        padded[row_of, offsets] = values
        padded.sort(axis=1)
        # ascending rank r of the row is at padded column width - c + r
        lower[rows] = padded[:, width - c + low]
        upper[rows] = padded[:, width - c + high]
    if not ok.all():
        rows = np.flatnonzero(~ok)
        part = np.partition(block[rows], [low, high], axis=1)
        lower[rows] = part[:, low]
        upper[rows] = part[:, high]
    return lower, upper


_WORKSPACE = threading.local()


def _workspace(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable per-thread scratch array of at least `shape` (avoids page faults per batch)."""
    size = int(np.prod(shape))
    buffer = getattr(_WORKSPACE, name, None)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = np.empty(size, dtype=dtype)
        setattr(_WORKSPACE, name, buffer)
    return buffer[:size].reshape(shape)


def _static_statistics(maps: np.ndarray, layout: SegmentLayout) -> np.ndarray:
    n = maps.shape[0]
    flat = np.ascontiguousarray(maps.reshape(n, -1))
    grouped = _workspace("grouped", flat.shape, flat.dtype)
    np.take(flat, layout.order, axis=1, out=grouped)  # (n, P), segments contiguous
    widest = int(layout.counts.max())
    d_all = _workspace("d", (n, widest), np.float64)
    d2_all = _workspace("d2", (n, widest), np.float64)
    out = np.zeros((n, layout.n_segments, 4), dtype=np.float64)
    for segment, (start, count) in enumerate(zip(layout.starts.tolist(), layout.counts.tolist())):
        if count == 0:
            continue  # empty segment: all four statistics stay 0.0
        block = grouped[:, start : start + count]
        low, frac = _quantile_positions(count)
        lower, upper = _top_order_statistics(block, int(low))
        mean = block.sum(axis=1, dtype=np.float64) / count
        d = np.subtract(block, mean[:, None], out=d_all[:, :count], dtype=np.float64)
        d2 = np.multiply(d, d, out=d2_all[:, :count])
        m2 = np.einsum("ij->i", d2) / count
        m3 = np.einsum("ij,ij->i", d2, d) / count
        m4 = np.einsum("ij,ij->i", d2, d2) / count
        skew, kurt = _shape_stats(m2, m3, m4, mean, maps.dtype)
        out[:, segment, 0] = _lerp(lower.astype(np.float64), upper.astype(np.float64), frac)
        out[:, segment, 1] = skew
        out[:, segment, 2] = kurt
        out[:, segment, 3] = mean
    return out


def _per_image_statistics(maps: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
    """One label map per image: the static path once per image (a stable radix sort of its labels)."""
    out = np.zeros((maps.shape[0], n_segments, 4), dtype=np.float64)
    for i in range(maps.shape[0]):
        out[i] = _static_statistics(maps[i : i + 1], SegmentLayout.from_labels(labels[i], n_segments))[0]
    return out


# --------------------------------------------------------------------------------------------
# torch path (maps already on a GPU)


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


# --------------------------------------------------------------------------------------------
# assembling feature rows


def feature_matrix(
    stats: Sequence[np.ndarray], maxima: Sequence[np.ndarray], classifier: np.ndarray | None = None
) -> np.ndarray:
    """Stack per-detector (N, L, 4) statistics and (N,) maxima into float64 (N, 4*K*L + K [+1]).

    The order matches `feature_columns(detectors, L, classifier is not None)`.
    """
    blocks = np.stack([np.asarray(s, dtype=np.float64) for s in stats], axis=2)  # (N, L, K, 4)
    n = blocks.shape[0]
    parts = [blocks.reshape(n, -1), np.stack([np.asarray(m, np.float64) for m in maxima], axis=1)]
    if classifier is not None:
        parts.append(np.asarray(classifier, dtype=np.float64).reshape(n, 1))
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------------
# the feature table of a run

MAP_INDEX_COLUMNS = ("image_id", "detector", "split_seed", "map_key", "max_score", "height", "width")
ROW_COLUMNS = ("image_id", "split_seed", "role", "label", "defect_type", "unseen", "category", "source_image_id")
FEATURE_ROLES = ("brf_train", "test")


def feature_rows(image_index, splits, synthetic_index=None):
    """Rows that need features: brf_train and test rows of `splits` plus synthetic images.

    Returns a DataFrame with `ROW_COLUMNS`; ``source_image_id`` is the image whose segment map
    applies (the source image of a synthetic defect, else the image itself).
    """
    import pandas as pd

    for name, table, needed in (
        ("image_index", image_index, ("image_id", "category", "label", "defect_type", "unseen")),
        ("splits", splits, ("image_id", "split_seed", "role")),
    ):
        missing = set(needed) - set(table.columns)
        if missing:
            raise ValueError(f"{name} lacks columns {sorted(missing)}")
    chosen = splits[splits["role"].isin(FEATURE_ROLES)][["image_id", "split_seed", "role"]]
    rows = chosen.merge(
        image_index[["image_id", "category", "label", "defect_type", "unseen"]], on="image_id", how="left",
        validate="many_to_one",
    )
    if rows["category"].isna().any():
        missing = rows.loc[rows["category"].isna(), "image_id"].head(5).tolist()
        raise ValueError(f"splits name images absent from image_index, e.g. {missing}")
    rows["source_image_id"] = rows["image_id"]
    if synthetic_index is not None and len(synthetic_index):
        synthetic = synthetic_index.assign(unseen=False, source_image_id=synthetic_index["source_image_id"])
        rows = pd.concat([rows, synthetic[list(ROW_COLUMNS)]], ignore_index=True)
    rows["split_seed"] = rows["split_seed"].astype("int64")
    rows["label"] = rows["label"].astype("int8")
    rows["unseen"] = rows["unseen"].astype(bool)
    return rows[list(ROW_COLUMNS)].reset_index(drop=True)


def _attach_map_keys(rows, map_index, detector: str):
    missing = set(MAP_INDEX_COLUMNS) - set(map_index.columns)
    if missing:
        raise ValueError(f"{detector}.map_index lacks columns {sorted(missing)}")
    keys = map_index[["image_id", "split_seed", "map_key"]].drop_duplicates(["image_id", "split_seed"])
    merged = rows[["image_id", "split_seed"]].merge(keys, on=["image_id", "split_seed"], how="left")
    if merged["map_key"].isna().any():
        absent = merged[merged["map_key"].isna()].head(5)
        pairs = ", ".join(f"{i} (split_seed {s})" for i, s in zip(absent["image_id"], absent["split_seed"]))
        raise ValueError(
            f"{detector}.map_index has no map for {int(merged['map_key'].isna().sum())} needed rows, e.g. {pairs}; "
            "run the anomaly_maps pipeline first"
        )
    return merged["map_key"].to_numpy()


def build_feature_table(
    rows,
    map_indexes: Mapping[str, object],
    read_maps: Mapping[str, Callable[[str], np.ndarray]],
    segmentation,
    batch_size: int = 64,
    classifier_scores=None,
    progress: Callable[..., Iterable] | None = None,
):
    """The feature table: `rows` (from `feature_rows`) + one column per feature.

    Args:
        rows: DataFrame with `ROW_COLUMNS`.
        map_indexes: detector -> its map_index DataFrame (docs/schemas.md).
        read_maps: detector -> ``read(map_key) -> float32 (H, W)`` (a `MapStore.read`).
        segmentation: a `segad.segmentation.Segmentation` at map resolution.
        batch_size: maps held in memory at once per detector (peak memory is flat in N).
        classifier_scores: optional DataFrame (image_id, split_seed, score) -> ``classifier__score``.
        progress: optional tqdm-like factory ``progress(iterable, desc=...)``.
    Each distinct map (map_key) is summarised once, whatever the number of rows that use it.
    Categories are processed separately (each has its own segment count).
    """
    import pandas as pd

    detectors = list(map_indexes)
    frames = []
    for category, cat_rows in rows.groupby("category", sort=True):
        cat_rows = cat_rows.reset_index(drop=True)
        n_segments = segmentation.n_segments[category]
        stats, maxima = [], []
        for detector in detectors:
            keys = _attach_map_keys(cat_rows, map_indexes[detector], detector)
            unique_keys, inverse = np.unique(keys.astype(str), return_inverse=True)
            if segmentation.is_static(category):
                s, m = stream_statistics(
                    unique_keys, read_maps[detector], segmentation.static_maps[category], n_segments,
                    batch_size, progress, f"{detector} {category}",
                )
            else:
                # per-image maps: the segment map of a key is the one of its first row
                first = np.zeros(len(unique_keys), dtype=np.int64)
                first[inverse[::-1]] = np.arange(len(inverse))[::-1]
                sources = cat_rows["source_image_id"].to_numpy()[first]
                s, m = _per_image_category_stats(
                    unique_keys, sources, read_maps[detector], segmentation, category, n_segments,
                    batch_size, progress, f"{detector} {category}",
                )
            stats.append(s[inverse])
            maxima.append(m[inverse])
        score = None
        if classifier_scores is not None:
            merged = cat_rows[["image_id", "split_seed"]].merge(
                classifier_scores[["image_id", "split_seed", "score"]], on=["image_id", "split_seed"], how="left"
            )
            if merged["score"].isna().any():
                raise ValueError(f"classifier scores miss {int(merged['score'].isna().sum())} rows of {category!r}")
            score = merged["score"].to_numpy()
        matrix = feature_matrix(stats, maxima, score)
        columns = feature_columns(detectors, n_segments, classifier=score is not None)
        frames.append(pd.concat([cat_rows, pd.DataFrame(matrix, columns=columns)], axis=1))
    return pd.concat(frames, ignore_index=True, sort=False)


def _batches(n: int, batch_size: int, progress, desc: str):
    starts = range(0, n, batch_size)
    return progress(starts, desc=desc) if progress is not None else starts


def stream_statistics(
    keys: Sequence[str],
    read_map: Callable[[str], np.ndarray],
    labels: np.ndarray,
    n_segments: int,
    batch_size: int = 64,
    progress: Callable[..., Iterable] | None = None,
    desc: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics float64 (N, L, 4) and map maxima (N,) of maps read `batch_size` at a time.

    Peak memory: one batch of maps plus the outputs, whatever N. `labels` is a static (H, W) map.
    """
    layout = SegmentLayout.from_labels(labels, n_segments)
    stats = np.zeros((len(keys), n_segments, 4))
    maxima = np.zeros(len(keys))
    for start in _batches(len(keys), batch_size, progress, desc):
        batch = np.stack([_checked(read_map(k), layout.shape, k) for k in keys[start : start + batch_size]])
        stats[start : start + len(batch)] = segment_statistics(batch, layout)
        maxima[start : start + len(batch)] = batch.reshape(len(batch), -1).max(axis=1)
    return stats, maxima


def _per_image_category_stats(keys, sources, read_map, segmentation, category, n_segments, batch_size, progress, desc):
    stats = np.zeros((len(keys), n_segments, 4))
    maxima = np.zeros(len(keys))
    for start in _batches(len(keys), batch_size, progress, desc):
        chunk = slice(start, start + batch_size)
        labels = segmentation.labels_for(category, list(sources[chunk]))
        batch = np.stack([_checked(read_map(k), labels.shape[1:], k) for k in keys[chunk]])
        stats[start : start + len(batch)] = segment_statistics(batch, labels, n_segments)
        maxima[start : start + len(batch)] = batch.reshape(len(batch), -1).max(axis=1)
    return stats, maxima


def _checked(anomaly_map: np.ndarray, shape, key: str) -> np.ndarray:
    anomaly_map = np.asarray(anomaly_map)
    if tuple(anomaly_map.shape) != tuple(shape):
        raise ValueError(f"map {key!r} has shape {anomaly_map.shape}, the segment map is {tuple(shape)}")
    return anomaly_map
