"""Thin node over segad.brf."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from segad.brf import BRFConfig, run_brf

log = logging.getLogger(__name__)


def select_run(features: pd.DataFrame, image_index: pd.DataFrame, dataset: dict, seeds: list[int],
               detectors: list[str], benchmark: str) -> pd.DataFrame:
    """Rows of the feature table that belong to this run (dataset, benchmark, categories, detectors,
    seeds).

    The table folder caches earlier runs beside this one; only this run's partitions are used.
    """
    key = "+".join(sorted(detectors))
    chosen = features[
        (features["dataset"] == dataset["layout"])
        & (features["benchmark"] == benchmark)
        & (features["detectors"] == key)
        & (features["category"].isin(image_index["category"].unique()))
        & (features["split_seed"].isin([int(s) for s in seeds]))
    ]
    if chosen.empty:
        raise ValueError(
            f"no features for dataset={dataset['layout']}, benchmark={benchmark}, detectors={key}, "
            f"split_seed in {list(seeds)}: "
            "run the features pipeline first"
        )
    missing = sorted(set(int(s) for s in seeds) - set(chosen["split_seed"].unique()))
    if missing:
        raise ValueError(f"features lack split_seed {missing} for dataset={dataset['layout']}, "
                         f"benchmark={benchmark}, detectors={key}")
    return chosen.dropna(axis=1, how="all").reset_index(drop=True)


def train_brf(features: pd.DataFrame, image_index: pd.DataFrame, params: dict, dataset: dict, seeds: list[int],
              benchmark: str, detectors: list[str]) -> tuple[dict, pd.DataFrame]:
    """Fit the BRFs of this run; return (models by `<method>/<category>/split_seed_<s>`, test scores)."""
    table = select_run(features, image_index, dataset, seeds, detectors, benchmark)
    params = dict(params)
    combinations = params.pop("combinations", None)
    config = BRFConfig.from_params(params.pop("model", {}))
    if params:
        raise ValueError(f"unknown brf parameters {sorted(params)}")
    models, scores = run_brf(table, detectors, config, combinations,
                             progress=lambda it: tqdm(it, desc="brf (category, split_seed)", unit="fit"))
    log.info("BRF: %d models; scores for methods %s", len(models), sorted(scores["method"].unique()))
    return models, scores
