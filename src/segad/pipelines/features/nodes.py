"""Thin node over segad.segments.features: the feature table of every split seed."""

from __future__ import annotations

import logging

import pandas as pd

from segad.config import DatasetConfig
from segad.logs import progress as progress_bar
from segad.segments.features import FeatureConfig, build_feature_table, feature_rows
from segad.segments.segment_maps import SegmentMaps

log = logging.getLogger(__name__)


def compute_features(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame,
    segmentation: SegmentMaps,
    classifier_scores: pd.DataFrame,
    config: FeatureConfig,
    dataset: DatasetConfig,
    benchmark: str,
    **maps,
) -> pd.DataFrame:
    """Feature table of brf_train, test and synthetic rows for every split seed.

    `maps` holds ``<detector>__map_index`` and ``<detector>__map_store`` for each detector, in the
    order of the `detectors` list.
    """
    detectors = [k[: -len("__map_index")] for k in maps if k.endswith("__map_index")]
    rows = feature_rows(image_index, splits, synthetic_index)
    use_classifier = classifier_scores is not None and len(classifier_scores) > 0
    table = build_feature_table(
        rows,
        {d: maps[f"{d}__map_index"] for d in detectors},
        {d: maps[f"{d}__map_store"].read for d in detectors},
        segmentation,
        batch_size=config.batch_size,
        classifier_scores=classifier_scores if use_classifier else None,
        progress=lambda it, desc: progress_bar(it, desc=f"features {desc}", unit="batch"),
        threads=config.kernel_threads,
    )
    table.insert(0, "dataset", dataset.id)
    table.insert(1, "benchmark", benchmark)
    table["detectors"] = "+".join(sorted(detectors))
    log.info("feature table: %d rows x %d columns", *table.shape)
    return table
