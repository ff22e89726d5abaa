"""Thin node over segad.ingestion.splits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from segad.config import DatasetConfig, SplitOptions
from segad.ingestion.layouts import read_low_shot, read_sensum_folds
from segad.ingestion.splits import SplitConfig, make_splits

log = logging.getLogger(__name__)


def split(
    image_index: pd.DataFrame, dataset: DatasetConfig, benchmark: str, seeds: list[int], options: SplitOptions
) -> pd.DataFrame:
    """Roles of every image for every split seed under the `benchmark` regime."""
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
    config = SplitConfig.from_options(options, benchmark, seeds, **extra)
    splits = make_splits(image_index, config)
    log.info(
        "splits (%s, good split %s%s):\n%s",
        benchmark,
        config.good_split,
        f" with seed {config.good_split_seed}" if config.good_split == "fixed" else "",
        splits.groupby(["split_seed", "role"]).size().unstack(fill_value=0).to_string(),
    )
    return splits
