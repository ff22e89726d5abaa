"""Thin node over segad.segments.features: the feature table of every split seed."""

from __future__ import annotations

import logging

import pandas as pd

from segad.config import DatasetConfig
from segad.logs import progress as progress_bar
from segad.meta.brf_params import BRFParams
from segad.meta.brf_store import BRFStore
from segad.meta.segmentation_choice import choose_segmentations
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
    brf: BRFParams,
    brf_store: BRFStore | None = None,
    **maps,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature table of brf_train, test and synthetic rows for every split seed, segmentation
    evidence).

    Categories with candidate segmentations (`auto_select`) first get theirs chosen out of fold on
    the brf_train rows (`segad.meta.segmentation_choice`, with the ``brf`` settings and selection
    params; `brf_store` reuses earlier fits); the table uses the chosen segments. `maps` holds
    ``<detector>__map_index`` and ``<detector>__map_store`` for each detector, in the order of the
    `detectors` list.
    """
    detectors = [k[: -len("__map_index")] for k in maps if k.endswith("__map_index")]
    rows = feature_rows(image_index, splits, synthetic_index)
    use_classifier = classifier_scores is not None and len(classifier_scores) > 0

    def features_of(chosen_rows: pd.DataFrame, maps_used: SegmentMaps, scores=None) -> pd.DataFrame:
        return build_feature_table(
            chosen_rows,
            {d: maps[f"{d}__map_index"] for d in detectors},
            {d: maps[f"{d}__map_store"].read for d in detectors},
            maps_used,
            batch_size=config.batch_size,
            classifier_scores=scores,
            progress=lambda it, desc: progress_bar(it, desc=f"features {desc}", unit="batch"),
            threads=config.kernel_threads,
        )

    fitted, reused = (brf_store.fitted, brf_store.reused) if brf_store is not None else (0, 0)
    chosen, evidence = choose_segmentations(
        rows,
        segmentation,
        features_of,
        detectors,
        brf.settings,
        brf.selection,
        fit=brf_store.fit if brf_store is not None else None,
    )
    if brf_store is not None and chosen:
        log.info(
            "segmentation choice: out-of-fold BRFs %d fitted, %d reused (%s)",
            brf_store.fitted - fitted,
            brf_store.reused - reused,
            brf_store.root,
        )
    table = features_of(rows, segmentation.with_choice(chosen), classifier_scores if use_classifier else None)
    table.insert(0, "dataset", dataset.id)
    table.insert(1, "benchmark", benchmark)
    table["detectors"] = "+".join(sorted(detectors))
    evidence.insert(0, "benchmark", str(benchmark))
    evidence.insert(0, "dataset", dataset.id)
    log.info("feature table: %d rows x %d columns", *table.shape)
    return table, evidence
