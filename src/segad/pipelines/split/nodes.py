"""Thin node over segad.ingestion.splits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from segad.config import DatasetConfig, SplitOptions
from segad.ingestion.defects import DefectConfig
from segad.ingestion.layouts import read_low_shot, read_sensum_folds
from segad.ingestion.splits import SplitConfig, check_training_rows, make_splits
from segad.meta.classifier import ClassifierConfig
from segad.production.assemble import BundleOptions

log = logging.getLogger(__name__)


def split(
    image_index: pd.DataFrame,
    dataset: DatasetConfig,
    benchmark: str,
    seeds: list[int],
    options: SplitOptions,
    bundle: BundleOptions | None = None,
    classifier: ClassifierConfig | None = None,
    defects: DefectConfig | None = None,
) -> pd.DataFrame:
    """Roles of every image for every split seed under the `benchmark` regime.

    With the `bundle`, `classifier` and `defects` parameters (the pipeline passes them) the rows
    that later stages need are checked here (`segad.ingestion.splits.check_training_rows`): a
    regime without the bad rows the BRF or the bundle's calibration needs fails now, not after
    every map is computed."""
    extra: dict[str, Any] = {}
    if (
        benchmark == "low_shot"
        and dataset.layout in ("vad", "demo")
        and options.use_low_shot_json
        and dataset.root is not None
    ):  # ingestion has read the root (no root: it failed naming it)
        extra["low_shot_draws"] = read_low_shot(dataset.root)
    if benchmark == "kfold" and dataset.layout == "sensum":
        root = Path(options.sensum_splits) if options.sensum_splits else Path(str(dataset.root)) / "sensum_splits"
        extra["official_folds"] = {c: f for c in image_index.category.unique() if (f := read_sensum_folds(root, c))}
    config = SplitConfig(benchmark=benchmark, seeds=tuple(seeds), options=options, **extra)
    splits = make_splits(image_index, config)
    if bundle is not None:
        for warning in check_training_rows(
            splits,
            image_index,
            benchmark,
            bundle=(int(bundle.split_seed if bundle.split_seed is not None else seeds[0]), bundle.category)
            if bundle.build
            else None,
            cross_fit_folds=int(classifier.cross_fit_folds) if classifier is not None and classifier.enabled else 0,
            top_up_share=float(defects.top_up_share) if defects is not None else 0.0,
            top_up_below=defects.top_up_below if defects is not None else None,
        ):
            log.warning(warning)
    log.info(
        "splits (%s, good split %s%s):\n%s",
        benchmark,
        options.good_split,
        f" with seed {options.good_split_seed}" if options.good_split == "fixed" else "",
        splits.groupby(["split_seed", "role"]).size().unstack(fill_value=0).to_string(),
    )
    return splits
