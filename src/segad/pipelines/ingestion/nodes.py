"""Thin nodes over segad.ingestion.layouts and segad.ingestion.demo."""

from __future__ import annotations

import logging

import pandas as pd

from segad.config import DatasetConfig
from segad.ingestion.demo import DemoConfig, write_demo
from segad.ingestion.layouts import build_index

log = logging.getLogger(__name__)


def ingest(dataset: DatasetConfig, demo: DemoConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read `dataset.root` in `dataset.layout` into (image_index, ingestion_problems).

    For layout `demo` the demo is first written to `dataset.root` (skipped when the folder already
    holds the same demo configuration). ``dataset`` is the typed `dataset` block (Kedro builds it
    before any node runs; the run configuration `segad.config.RunConfig` checks it too).
    """
    if dataset.layout == "demo" and dataset.root is not None:  # without a root build_index names it
        write_demo(dataset.root, demo)
    index, problems = build_index(
        dataset.layout,
        dataset.root,
        dataset.category,
        on_bad_image=dataset.on_bad_image,
        **dataset.options,
    )
    index["dataset"] = dataset.id  # the key of every table of this dataset (segad.storage.identity)
    for row in problems.itertuples():
        log.warning("skipped unreadable image %s: %s", row.path, row.problem)
    summary = index.groupby(["category", "split", "label"]).size()
    log.info("image index of dataset %s: %d images\n%s", dataset.id, len(index), summary.to_string())
    return index, problems
