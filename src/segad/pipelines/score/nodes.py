"""Thin node over segad.production.batch: score a folder of new images with a SegAD bundle."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from segad.config import ScoreOptions
from segad.production.batch import STAGES
from segad.production.bundle import Bundle
from segad.production.history import score_run_record
from segad.production.inputs import list_images
from segad.production.operating_point import ERROR, REJECT
from segad.production.scorer import Scorer
from segad.runs import new_run_id

log = logging.getLogger(__name__)


def score_folder(
    bundle: Bundle, params: ScoreOptions, device: str
) -> tuple[pd.DataFrame, dict[str, Image.Image], pd.DataFrame]:
    """Score every image under ``params.input``: (inspection table, overlays of rejected parts,
    this run's row of the index of score runs).

    Each call is one score run with its own run id (`segad.runs.new_run_id`): the table's ``run``
    column (its partition), the overlays' folder ``run=<run id>/`` and the index row carry it, so
    no run replaces another's results (`segad.production.history`).

    ``params`` is the `score` block, typed (Kedro checks it before any node runs). ``params.bundle`` (when given with ``--params score.bundle=...``) is read by the catalog
    entry of the bundle, not here: a parent folder resolves to its ``LATEST`` bundle, a bundle
    folder is used as is. The table's ``bundle_id`` column records the version used.
    """
    folder = params.input
    if not folder:
        raise ValueError("no input folder: run `kedro run --pipelines score --params score.input=<folder>`")
    started = dt.datetime.now(dt.UTC)
    run_id = new_run_id(started)
    paths = list_images(folder)
    if not paths:
        log.warning("score: %s holds no image files; writing an empty inspection table", folder)
    # the resident scorer of the HTTP endpoint (segad.production.scorer), here for one folder
    scorer = Scorer(bundle, bundle.load_models(device=device), backend=params.backend, explain=params.explain)
    start = time.perf_counter()
    result = scorer.score_paths(
        paths, root=folder, batch_size=params.batch_size, overlays=params.overlays, progress=params.progress
    )
    elapsed = time.perf_counter() - start
    table = result.table.assign(run=run_id)
    counts = table["decision"].value_counts().to_dict()
    op = bundle.operating_point
    log.info(
        "score run %s: %d images in %.1f s (%.1f images/s) with bundle %s at threshold %.4f "
        "(target miss rate %.1f%%, expected good pass rate %.1f%%): %s",
        run_id,
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
    record = score_run_record(run_id, started, dt.datetime.now(dt.UTC), bundle, str(folder), table)
    overlays = {
        f"run={run_id}/{PurePosixPath(name).stem}": Image.fromarray(np.asarray(picture))
        for name, picture in result.overlays.items()
    }
    return table, overlays, record
