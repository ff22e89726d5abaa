"""Thin node over segad.meta.brf."""

from __future__ import annotations

import logging

import pandas as pd

from segad.config import DatasetConfig
from segad.logs import progress
from segad.meta.brf import BRFParams, model_key, run_brf, select_run

log = logging.getLogger(__name__)


def train_brf(
    features: pd.DataFrame,
    image_index: pd.DataFrame,
    config: BRFParams,
    dataset: DatasetConfig,
    seeds: list[int],
    benchmark: str,
    detectors: list[str],
) -> tuple[dict, pd.DataFrame]:
    """Fit the BRFs of this run.

    Returns:
        (models, scores): models keyed by `segad.meta.brf.model_key` (``<dataset>/<benchmark>/<category>/<method>/
        split_seed_<s>``), so runs of other datasets or regimes stay beside them; scores with columns
        dataset, benchmark, image_id, split_seed, method, score (``scores`` is partitioned by
        dataset and benchmark, so saving replaces only this regime's scores).
    """
    table = select_run(features, image_index, dataset.id, seeds, detectors, benchmark)
    models, scores = run_brf(
        table,
        detectors,
        config.model,
        config.combinations,
        progress=lambda it: progress(it, desc="brf (category, split_seed)", unit="fit"),
    )
    ident = dataset.id
    keyed = {}
    for key, model in models.items():
        method, category, seed = key.split("/")  # segad.meta.brf.run_brf: <method>/<category>/split_seed_<s>
        keyed[model_key(ident, benchmark, category, method, int(seed.removeprefix("split_seed_")))] = model
    scores.insert(0, "benchmark", str(benchmark))
    scores.insert(0, "dataset", ident)
    log.info("BRF: %d models; scores for methods %s", len(keyed), sorted(scores["method"].unique()))
    return keyed, scores
