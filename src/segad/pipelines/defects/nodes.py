"""Thin node over segad.ingestion.defects."""

from __future__ import annotations

import logging

import pandas as pd

from segad.ingestion.defects import DefectConfig, empty_synthetic_index, plan_synthetic
from segad.segments.segment_maps import SegmentMaps

log = logging.getLogger(__name__)


def make_synthetic_defects(
    image_index: pd.DataFrame, splits: pd.DataFrame, segmentation: SegmentMaps, config: DefectConfig, benchmark: str
) -> tuple[pd.DataFrame, dict]:
    """For benchmark one_class: synthetic_index and the images to write (lazily); else empty."""
    if benchmark != "one_class":
        log.info("benchmark %s: no synthetic defects (real bad training images)", benchmark)
        return empty_synthetic_index(), {}

    def labels_for(category: str, image_id: str):
        labels = segmentation.labels_for(category, [image_id])
        return labels[0] if labels.ndim == 3 else labels

    table, renders = plan_synthetic(image_index, splits, labels_for, config)
    log.info("synthetic defects: %d images (%s)", len(table), table["defect_type"].value_counts().to_dict())
    return table, renders
