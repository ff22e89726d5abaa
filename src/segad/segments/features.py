"""The features stage's table: one SegAD feature row per image that needs one.

`feature_rows` picks the rows (brf_train and test rows of the splits, plus synthetic defects),
`build_feature_table` streams each detector's stored maps in batches through
`segad.segments.statistics.segment_statistics` (the four statistics per segment, their definitions
and edge cases are there) and assembles the columns in `segad.columns` order: the classifier score
when enabled, the per-segment statistics, the map maxima.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated

import numpy as np
import pydantic.dataclasses
from pydantic import Field

from segad.columns import feature_columns, vector_order
from segad.config import PARAMS
from segad.detection.stage import MAP_INDEX_COLUMNS
from segad.segments.own_scores import own_scores
from segad.segments.statistics import SegmentMap, default_threads, feature_matrix, segment_statistics
from segad.vocabulary import FEATURE_ROLES


@pydantic.dataclasses.dataclass(config=PARAMS)
class FeatureConfig:
    """Settings of the features stage (conf/base/parameters_features.yml, `features`).

    Attributes:
        batch_size: maps held in memory at once per detector (peak memory is flat in N), >= 1.
        threads: threads of the statistics kernel, >= 1; None = every CPU this process may use.
    """

    batch_size: Annotated[int, Field(ge=1)] = 64
    threads: Annotated[int, Field(ge=1)] | None = None

    @property
    def kernel_threads(self) -> int:
        return default_threads() if self.threads is None else int(self.threads)


# --------------------------------------------------------------------------------------------
# the feature table of a run

ROW_COLUMNS = ("image_id", "split_seed", "role", "label", "defect_type", "unseen", "category", "source_image_id")


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
        image_index[["image_id", "category", "label", "defect_type", "unseen"]],
        on="image_id",
        how="left",
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
    threads: int = 1,
):
    """The feature table: `rows` (from `feature_rows`) + one column per feature.

    Args:
        rows: DataFrame with `ROW_COLUMNS`.
        map_indexes: detector -> its map_index DataFrame (docs/schemas.md).
        read_maps: detector -> ``read(map_key) -> float32 (H, W)`` (a `MapStore.read`).
        segmentation: a `segad.segments.segment_maps.SegmentMaps` at map resolution.
        batch_size: maps held in memory at once per detector (peak memory is flat in N).
        classifier_scores: optional DataFrame (image_id, split_seed, score) -> ``classifier__score``.
        progress: optional tqdm-like factory ``progress(iterable, desc=...)``.
        threads: threads of the statistics kernel (see `segment_statistics`).
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
                    unique_keys.tolist(),
                    read_maps[detector],
                    segmentation.static_maps[category],
                    n_segments,
                    batch_size,
                    progress,
                    f"{detector} {category}",
                    threads,
                )
            else:
                # per-image maps: the segment map of a key is the one of its first row
                first = np.zeros(len(unique_keys), dtype=np.int64)
                first[inverse[::-1]] = np.arange(len(inverse))[::-1]
                sources = cat_rows["source_image_id"].to_numpy()[first]
                s, m = _per_image_category_stats(
                    unique_keys,
                    sources,
                    read_maps[detector],
                    segmentation,
                    category,
                    n_segments,
                    batch_size,
                    progress,
                    f"{detector} {category}",
                    threads,
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
        own = own_scores(cat_rows, map_indexes)  # detectors with their own image score: <d>__score columns
        matrix = np.concatenate([matrix, *(v[:, None] for v in own.values())], axis=1)
        columns = feature_columns(detectors, n_segments, classifier=score is not None, scored=list(own))
        frames.append(pd.concat([cat_rows, pd.DataFrame(matrix, columns=columns)], axis=1))
    table = pd.concat(frames, ignore_index=True, sort=False)
    return table[vector_order(list(table.columns), detectors)]


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
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics float64 (N, L, 4) and map maxima (N,) of maps read `batch_size` at a time.

    Peak memory: one batch of maps plus the outputs, whatever N. `labels` is a static (H, W) map;
    `threads` as in `segment_statistics`.
    """
    segment_map = SegmentMap.from_labels(labels, n_segments)
    stats = np.zeros((len(keys), n_segments, 4))
    maxima = np.zeros(len(keys))
    for start in _batches(len(keys), batch_size, progress, desc):
        batch = np.stack([_checked(read_map(k), segment_map.shape, k) for k in keys[start : start + batch_size]])
        names = list(keys[start : start + batch_size])
        stats[start : start + len(batch)] = segment_statistics(batch, segment_map, names=names, threads=threads)
        maxima[start : start + len(batch)] = batch.reshape(len(batch), -1).max(axis=1)
    return stats, maxima


def _per_image_category_stats(
    keys, sources, read_map, segmentation, category, n_segments, batch_size, progress, desc, threads
):
    stats = np.zeros((len(keys), n_segments, 4))
    maxima = np.zeros(len(keys))
    for start in _batches(len(keys), batch_size, progress, desc):
        chunk = slice(start, start + batch_size)
        labels = segmentation.labels_for(category, list(sources[chunk]))
        batch = np.stack([_checked(read_map(k), labels.shape[1:], k) for k in keys[chunk]])
        names = list(keys[chunk])
        stats[start : start + len(batch)] = segment_statistics(batch, labels, n_segments, names=names, threads=threads)
        maxima[start : start + len(batch)] = batch.reshape(len(batch), -1).max(axis=1)
    return stats, maxima


def _checked(anomaly_map: np.ndarray, shape, key: str) -> np.ndarray:
    anomaly_map = np.asarray(anomaly_map)
    if tuple(anomaly_map.shape) != tuple(shape):
        raise ValueError(f"map {key!r} has shape {anomaly_map.shape}, the segment map is {tuple(shape)}")
    return anomaly_map
