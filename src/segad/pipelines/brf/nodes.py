"""Thin node over segad.meta.brf."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from segad.meta.brf import BRFParams, run_brf

log = logging.getLogger(__name__)

#: Partition name of one BRF in ``brf_models``: ``<dataset>/<benchmark>/<category>/<method>/split_seed_<s>``.
MODEL_KEY = "{dataset}/{benchmark}/{category}/{method}/split_seed_{seed}"


def model_key(dataset: str, benchmark: str, category: str, method: str, seed: int) -> str:
    """Partition name of one BRF (a file ``<key>.json`` under data/06_models/brf)."""
    return MODEL_KEY.format(dataset=dataset, benchmark=benchmark, category=category, method=method, seed=int(seed))


def parse_model_key(key: str) -> tuple[str, str, str, str, int]:
    """Inverse of `model_key`: (dataset, benchmark, category, method, split_seed)."""
    parts = key.split("/")
    if len(parts) != 5 or not parts[4].startswith("split_seed_") or not parts[4].removeprefix("split_seed_").isdigit():
        raise ValueError(f"brf_models: unexpected partition name {key!r}; "
                         "expected <dataset>/<benchmark>/<category>/<method>/split_seed_<s>")
    return parts[0], parts[1], parts[2], parts[3], int(parts[4].removeprefix("split_seed_"))


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


def train_brf(features: pd.DataFrame, image_index: pd.DataFrame, config: BRFParams, dataset: dict, seeds: list[int],
              benchmark: str, detectors: list[str]) -> tuple[dict, pd.DataFrame]:
    """Fit the BRFs of this run.

    Returns:
        (models, scores): models keyed by `model_key` (``<dataset>/<benchmark>/<category>/<method>/
        split_seed_<s>``), so runs of other datasets or regimes stay beside them; scores with columns
        dataset, benchmark, image_id, split_seed, method, score (``scores`` is partitioned by
        dataset and benchmark, so saving replaces only this regime's scores).
    """
    table = select_run(features, image_index, dataset, seeds, detectors, benchmark)
    models, scores = run_brf(table, detectors, config.model, config.combinations,
                             progress=lambda it: tqdm(it, desc="brf (category, split_seed)", unit="fit"))
    layout = str(dataset["layout"])
    keyed = {}
    for key, model in models.items():
        method, category, seed = key.split("/")  # segad.meta.brf.run_brf: <method>/<category>/split_seed_<s>
        keyed[model_key(layout, benchmark, category, method, int(seed.removeprefix("split_seed_")))] = model
    scores.insert(0, "benchmark", str(benchmark))
    scores.insert(0, "dataset", layout)
    log.info("BRF: %d models; scores for methods %s", len(keyed), sorted(scores["method"].unique()))
    return keyed, scores
