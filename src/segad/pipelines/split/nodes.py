"""Thin node over segad.ingestion.splits."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from segad.ingestion.layouts import read_low_shot, read_sensum_folds
from segad.ingestion.splits import SplitConfig, make_splits

log = logging.getLogger(__name__)


def split(image_index: pd.DataFrame, dataset: dict, benchmark: str, seeds: list[int], options: dict) -> pd.DataFrame:
    """Roles of every image for every split seed under the `benchmark` regime."""
    options = dict(options)
    if benchmark == "low_shot" and dataset["layout"] in ("vad", "demo") and options.pop("use_low_shot_json", True):
        options["low_shot_draws"] = read_low_shot(dataset["root"])
    splits_root = options.pop("sensum_splits", None)
    if benchmark == "kfold" and dataset["layout"] == "sensum":
        root = Path(splits_root) if splits_root else Path(dataset["root"]) / "sensum_splits"
        options["official_folds"] = {c: f for c in image_index.category.unique()
                                     if (f := read_sensum_folds(root, c))}
    options.pop("use_low_shot_json", None)
    splits = make_splits(image_index, SplitConfig(benchmark=benchmark, seeds=tuple(seeds), **options))
    good = options.get("good_split", "per_seed")
    log.info("splits (%s, good split %s%s):\n%s", benchmark, good,
             f" with seed {options.get('good_split_seed', 0)}" if good == "fixed" else "",
             splits.groupby(["split_seed", "role"]).size().unstack(fill_value=0).to_string())
    return splits
