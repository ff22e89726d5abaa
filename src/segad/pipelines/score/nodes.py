"""Thin node over segad.production.batch: score a folder of new images with a SegAD bundle."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from segad.config import ScoreOptions
from segad.production.batch import STAGES, score_images
from segad.production.bundle import Bundle
from segad.production.inputs import list_images
from segad.production.operating_point import ERROR, REJECT

log = logging.getLogger(__name__)


def score_folder(bundle: Bundle, params: ScoreOptions, device: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Score every image under ``params.input``: (inspection table, overlays of rejected parts).

    ``params`` is the `score` block, typed (Kedro checks it before any node runs). ``params.bundle`` (when given with ``--params score.bundle=...``) is read by the catalog
    entry of the bundle, not here: a parent folder resolves to its ``LATEST`` bundle, a bundle
    folder is used as is. The table's ``bundle_id`` column records the version used.
    """
    folder = params.input
    if not folder:
        raise ValueError("no input folder: run `kedro run --pipelines score --params score.input=<folder>`")
    paths = list_images(folder)
    if not paths:
        log.warning("score: %s holds no image files; writing an empty inspection table", folder)
    models = bundle.load_models(device=device)  # detectors, and the classifier model(s) when bundled
    start = time.perf_counter()
    result = score_images(
        paths,
        bundle,
        models,
        root=folder,
        batch_size=params.batch_size,
        explain=params.explain,
        overlays=params.overlays,
        progress=params.progress,
        backends={name: params.backend for name in bundle.detectors},
    )
    elapsed = time.perf_counter() - start
    table = result.table
    counts = table["decision"].value_counts().to_dict()
    op = bundle.operating_point
    log.info(
        "score: %d images in %.1f s (%.1f images/s) with bundle %s at threshold %.4f "
        "(target miss rate %.1f%%, expected good pass rate %.1f%%): %s",
        len(table),
        elapsed,
        len(table) / elapsed if elapsed else float("nan"),
        bundle.bundle_id,
        op.threshold,
        100 * op.target_miss_rate,
        100 * op.expected_pass_rate,
        counts,
    )
    log.info("score: seconds per stage %s", {k: round(result.seconds[k], 3) for k in STAGES})
    if counts.get(ERROR):
        for message in table.loc[table["decision"] == ERROR, "error"].head(10):
            log.warning("score: %s", message)
    log.info("score: %d overlays of rejected parts", counts.get(REJECT, 0))
    return table, result.overlays
