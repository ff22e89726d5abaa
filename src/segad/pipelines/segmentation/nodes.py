"""Thin nodes over segad.segments.segment_maps: the segment maps of every category and their overlays."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Patch

from segad.config import DatasetConfig
from segad.segments.overlay import legend_entries, overlay
from segad.segments.resolve import resolve_segmentation
from segad.segments.segment_maps import SegmentMapConfig, SegmentMaps
from segad.storage.images import read_image, resolve_image_size

log = logging.getLogger(__name__)


def build_segmentation(
    image_index: pd.DataFrame, given: SegmentMapConfig, image_size: int | list[int] | str, dataset: DatasetConfig
) -> SegmentMaps:
    """Segment maps of every category at map resolution (auto: from good `train` images only).

    ``image_size`` is the parameter, resolved from ``image_index`` (`segad.storage.images.resolve_image_size`)."""
    config = given.for_dataset(dataset.layout, dataset.root)
    if given.method is None and config.method == "auto_select":
        log.warning(
            "no segment map given for dataset %r: automatic k-means segments (%d), static or per image "
            "by the alignment of each category (segmentation.method: auto_select); set segmentation.path "
            "(static) or segmentation.folder (per_image) to use your own",
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
    """A few images per category with their segments drawn over them, as figures: the title names
    the segmentation each category got (`SegmentMaps.sources`), the legend each segment's colour and
    share of the image."""
    figures = {}
    for category, rows in image_index.sort_values("image_id").groupby("category"):
        picked = pd.concat(
            [
                rows[rows["label"] == 0].head(config.overlay_images // 2 or 1),
                rows[rows["label"] == 1].head(config.overlay_images // 2),
            ]
        )
        for _, row in picked.iterrows():
            labels = segmentation.labels_for(category, [row["image_id"]])
            labels = labels[0] if labels.ndim == 3 else labels
            image = read_image(row["path"], size=labels.shape)
            fig, ax = plt.subplots(figsize=(5.2, 4))
            ax.imshow(overlay(image, labels))
            source = segmentation.sources.get(category, segmentation.method)
            ax.set_title(
                f"{category}: {row['image_id']}\n{source}, {segmentation.n_segments[category]} segments", fontsize=7
            )
            ax.axis("off")
            handles = [
                Patch(color=colour, label=f"{text} ({share:.0%})") for text, colour, share in legend_entries(labels)
            ]
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6, frameon=False)
            fig.tight_layout()
            name = f"{category}__{row['image_id']}".replace("/", "_").rsplit(".", 1)[0]
            figures[f"{name}.png"] = fig
    return figures
