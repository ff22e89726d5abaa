"""Thin node over segad.ingestion.defects."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from segad.config import DatasetConfig
from segad.ingestion.defects import DefectConfig, empty_synthetic_index, plan_synthetic
from segad.segments.segment_maps import SegmentMaps

log = logging.getLogger(__name__)


def make_synthetic_defects(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    segmentation: SegmentMaps,
    config: DefectConfig,
    benchmark: str,
    dataset: DatasetConfig | None = None,
) -> tuple[pd.DataFrame, dict]:
    """synthetic_index and the images to write (lazily).

    The images go to ``<defects.output_dir>/dataset=<dataset id>`` (the catalog's synthetic_images
    folder), so two datasets' synthetic images never replace each other.

    one_class: a synthetic defect per brf_train good image (the bad class). Other regimes: the
    top-up, ``config.top_up_share`` of the brf_train good images, beside the real bad ones, for each
    (split seed, category) with fewer than ``config.top_up_below`` real bad images; an empty table
    when none qualifies or the share is 0.
    """
    if benchmark == "one_class":
        share, below, role = 1.0, None, "the bad class"
    else:
        share, below = float(config.top_up_share), config.top_up_below
        role = (
            f"top-up beside the real bad images ({share:.0%} of the brf_train goods where a seed and "
            f"category has fewer than {below} real bad images)"
        )
    if dataset is not None:
        config = dataclasses.replace(config, output_dir=str(Path(config.output_dir) / f"dataset={dataset.id}"))
    if share == 0.0:
        log.info("benchmark %s: no synthetic defects (defects.top_up_share is 0)", benchmark)
        return empty_synthetic_index(), {}

    def labels_for(category: str, image_id: str):
        labels = segmentation.labels_for(category, [image_id])
        return labels[0] if labels.ndim == 3 else labels

    table, renders = plan_synthetic(image_index, splits, labels_for, config, share=share, below_real_bad=below)
    log.info("synthetic defects, %s: %d images (%s)", role, len(table), table["defect_type"].value_counts().to_dict())
    return table, renders
