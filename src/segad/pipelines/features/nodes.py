"""Thin nodes over segad.segments.segment_maps, segad.segments.features and segad.meta.classifier."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from segad.config import DatasetConfig
from segad.detection.map_store import MapStore
from segad.images import read_image, resolve_image_size
from segad.meta.classifier import ClassifierConfig, empty_scores
from segad.meta.classifier_protocol import classifier_scores as _classifier_scores
from segad.segments.features import FeatureConfig, build_feature_table, feature_rows
from segad.segments.segment_maps import SegmentMapConfig, SegmentMaps, overlay, resolve_segmentation

log = logging.getLogger(__name__)


def build_segmentation(
    image_index: pd.DataFrame, given: SegmentMapConfig, image_size: int | list[int] | str, dataset: DatasetConfig
) -> SegmentMaps:
    """Segment maps of every category at map resolution (auto: from good `train` images only).

    ``image_size`` is the parameter, resolved from ``image_index`` (`segad.images.resolve_image_size`)."""
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
    """A few images per category with their segments drawn over them, as figures."""
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
            fig, ax = plt.subplots(figsize=(4, 4))
            ax.imshow(overlay(image, labels))
            ax.set_title(f"{category}: {row['image_id']}", fontsize=7)
            ax.axis("off")
            name = f"{category}__{row['image_id']}".replace("/", "_").rsplit(".", 1)[0]
            figures[f"{name}.png"] = fig
    return figures


def train_classifier(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame,
    config: ClassifierConfig,
    image_size: int | list[int] | str,
    device: str,
    store: MapStore,
    models: Path | None = None,
) -> pd.DataFrame:
    """Supervised classifier scores (image_id, split_seed, score, model_key); empty when disabled.
    Images are resized to ``image_size`` resolved from ``image_index`` (`segad.images.resolve_image_size`);
    each seed's scores are kept in `store` and reused while nothing they depend on changes, the
    model(s) that produced them in the folder `models` (for the production bundle)."""
    if not config.enabled:
        return empty_scores()
    size = resolve_image_size(image_size, image_index)
    return _classifier_scores(image_index, splits, synthetic_index, config, size, device, store, models)


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
        progress=lambda it, desc: tqdm(it, desc=f"features {desc}", unit="batch"),
        threads=config.kernel_threads,
    )
    table.insert(0, "dataset", dataset.layout)
    table.insert(1, "benchmark", benchmark)
    table["detectors"] = "+".join(sorted(detectors))
    log.info("feature table: %d rows x %d columns", *table.shape)
    return table
