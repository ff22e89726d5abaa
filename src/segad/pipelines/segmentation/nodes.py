"""Thin nodes over segad.segments.segment_maps: the segment maps of every category and their overlays."""

from __future__ import annotations

import logging

import pandas as pd

from segad.config import DatasetConfig
from segad.segments.overlay import segmentation_figures
from segad.segments.resolve import resolve_segmentation
from segad.segments.segment_maps import SegmentMapConfig, SegmentMaps
from segad.storage.images import resolve_image_size

log = logging.getLogger(__name__)


def build_segmentation(
    image_index: pd.DataFrame, given: SegmentMapConfig, image_size: int | list[int] | str, dataset: DatasetConfig
) -> SegmentMaps:
    """Segment maps of every category at map resolution (auto: from good `train` images only).

    ``image_size`` is the parameter, resolved from ``image_index`` (`segad.storage.images.resolve_image_size`)."""
    config = given.for_dataset(dataset.layout, dataset.root)
    if given.method is None and config.method == "auto_select":
        log.warning(
            "no segment map given for dataset %r: automatic segments (one, or %d k-means segments, static or "
            "per image), chosen per category out of fold by the features stage (segmentation.method: "
            "auto_select); set segmentation.path (static) or segmentation.folder (per_image) to use your own",
            dataset.layout,
            config.auto_segments,
        )
    goods = image_index[(image_index["split"] == "train") & (image_index["label"] == 0)]
    paths = goods.groupby("category")["path"].apply(list).to_dict()
    size = resolve_image_size(image_size, image_index)
    files = dict(zip(image_index["image_id"], image_index["path"]))
    categories = sorted(image_index["category"].unique())
    segmentation = resolve_segmentation(config, categories, size, paths, image_paths=files)
    for category, source in segmentation.sources.items():
        log.info("segments of %s: %s (%d segments)", category, source, segmentation.n_segments[category])
    return segmentation


def segmentation_overlays(image_index: pd.DataFrame, segmentation: SegmentMaps, config: SegmentMapConfig) -> dict:
    """A few images per category with their segments drawn over them (`segmentation_figures`). An
    `auto_select` category is drawn once per candidate (``<category>__<image>__<candidate>.png``),
    so its options can be compared by eye; the report shows the one the features stage chose."""
    fixed = image_index[~image_index["category"].isin(list(segmentation.alternatives))]
    figures = segmentation_figures(fixed, segmentation, config.overlay_images)
    for category, options in segmentation.alternatives.items():
        rows = image_index[image_index["category"] == category]
        for name in options:
            drawn = segmentation_figures(
                rows, segmentation.with_choice({category: name}, why="candidate"), config.overlay_images
            )
            figures.update({f"{key.removesuffix('.png')}__{name}.png": fig for key, fig in drawn.items()})
    return figures
