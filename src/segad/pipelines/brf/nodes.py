"""Thin node over segad.meta.brf."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from segad.config import DatasetConfig
from segad.meta.brf import BRFParams, model_key, run_brf, select_run
from segad.meta.brf_store import BRFStore

log = logging.getLogger(__name__)


def train_brf(
    features: pd.DataFrame,
    image_index: pd.DataFrame,
    config: BRFParams,
    dataset: DatasetConfig,
    seeds: list[int],
    benchmark: str,
    detectors: list[str],
    brf_store: BRFStore | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Fit the BRFs of this run; with `brf_store`, a model fitted before on the same rows, settings
    and seed is reused instead of refitted (`segad.meta.brf_store`).

    Returns:
        (models, scores): models keyed by `segad.meta.brf.model_key` (``<dataset>/<benchmark>/<category>/<method>/
        split_seed_<s>``), so runs of other datasets or regimes stay beside them; scores with columns
        dataset, benchmark, image_id, split_seed, method, score (``scores`` is partitioned by
        dataset and benchmark, so saving replaces only this regime's scores).
    """
    table = select_run(features, image_index, {"layout": dataset.layout}, seeds, detectors, benchmark)
    models, scores = run_brf(
        table,
        detectors,
        config.model,
        config.combinations,
        progress=lambda it: tqdm(it, desc="brf (category, split_seed)", unit="fit"),
        fit=brf_store.fit if brf_store is not None else None,
    )
    layout = dataset.layout
    keyed = {}
    for key, model in models.items():
        method, category, seed = key.split("/")  # segad.meta.brf.run_brf: <method>/<category>/split_seed_<s>
        keyed[model_key(layout, benchmark, category, method, int(seed.removeprefix("split_seed_")))] = model
    scores.insert(0, "benchmark", str(benchmark))
    scores.insert(0, "dataset", layout)
    reuse = f" ({brf_store.summary()} from {brf_store.root})" if brf_store is not None else ""
    log.info("BRF: %d models%s; scores for methods %s", len(keyed), reuse, sorted(scores["method"].unique()))
    return keyed, scores
