"""Thin node over segad.meta.brf."""

from __future__ import annotations

import logging

import pandas as pd

from segad.config import DatasetConfig
from segad.logs import progress
from segad.meta.brf import model_key, run_brf, select_run
from segad.meta.brf_params import BRFParams
from segad.meta.brf_store import BRFStore
from segad.meta.selection import EVIDENCE_COLUMNS, run_selection, selected_scores
from segad.schemas import BRFSelection

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
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Fit the BRFs of this run and choose, out of fold on brf_train rows, the method to ship.
    With `brf_store`, a model fitted before on the same rows, settings and seed is reused instead of
    refitted (`segad.meta.brf_store`), the selection's out-of-fold BRFs too (logged apart).

    Returns:
        (models, scores, selection): models keyed by `segad.meta.brf.model_key` (``<dataset>/<benchmark>/<category>/<method>/
        split_seed_<s>``), so runs of other datasets or regimes stay beside them; scores with columns
        dataset, benchmark, image_id, split_seed, method, score (``scores`` is partitioned by
        dataset and benchmark, so saving replaces only this regime's scores), with method
        ``selected`` = the chosen method's scores per category (a combination blended with its
        strongest member, `segad.meta.blend`, unless ``brf.selection.blend`` is false); selection = the evidence table
        (`segad.meta.selection.EVIDENCE_COLUMNS`), empty when ``brf.selection.enabled`` is false.
    """
    table = select_run(features, image_index, dataset.id, seeds, detectors, benchmark)
    models, scores = run_brf(
        table,
        detectors,
        config.settings,
        config.combinations,
        progress=lambda it: progress(it, desc="brf (category, split_seed)", unit="fit"),
        fit=brf_store.fit if brf_store is not None else None,
    )
    ident = dataset.id
    reuse = f" ({brf_store.summary()} from {brf_store.root})" if brf_store is not None else ""
    evidence = pd.DataFrame(columns=EVIDENCE_COLUMNS)
    if config.selection.enabled:
        fitted_before, reused_before = (brf_store.fitted, brf_store.reused) if brf_store is not None else (0, 0)
        selection = run_selection(
            table,
            detectors,
            config.combinations,
            config.settings,
            config.selection,
            fit=brf_store.fit if brf_store is not None else None,
        )
        if brf_store is not None:
            log.info(
                "selection: out-of-fold BRFs %d fitted, %d reused (%s)",
                brf_store.fitted - fitted_before,
                brf_store.reused - reused_before,
                brf_store.root,
            )
        scores = pd.concat(
            [scores, selected_scores(scores, table, selection.chosen, selection.blends)], ignore_index=True
        )
        evidence = selection.evidence
        evidence.insert(0, "benchmark", str(benchmark))
        evidence.insert(0, "dataset", ident)
        log.info("selection: %s", ", ".join(f"{c}: {m}" for c, m in sorted(selection.chosen.items())))
    else:  # one marker row per category: the bundle then ships bundle.detectors, not an older run's choice
        markers = pd.DataFrame({"category": sorted(table["category"].astype(str).unique())}).assign(
            dataset=ident, benchmark=str(benchmark), method="", members="", n_pairs=0, blend_with=""
        )
        markers = markers.assign(baseline=False, wins=False, chosen=False)
        evidence = pd.concat([BRFSelection.empty(), markers], ignore_index=True)  # typed by the model
    keyed = {}
    for key, model in models.items():
        method, category, seed = key.split("/")  # segad.meta.brf.run_brf: <method>/<category>/split_seed_<s>
        keyed[model_key(ident, benchmark, category, method, int(seed.removeprefix("split_seed_")))] = model
    scores.insert(0, "benchmark", str(benchmark))
    scores.insert(0, "dataset", ident)
    log.info("BRF: %d models%s; scores for methods %s", len(keyed), reuse, sorted(scores["method"].unique()))
    return keyed, scores, evidence[EVIDENCE_COLUMNS]
