"""Thin nodes over segad.ingestion.layouts and segad.ingestion.demo."""

from __future__ import annotations

import logging

import pandas as pd

from segad.ingestion.demo import DemoConfig, write_demo
from segad.ingestion.layouts import build_index

log = logging.getLogger(__name__)


def ingest(dataset: dict, demo: DemoConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read `dataset.root` in `dataset.layout` into (image_index, ingestion_problems).

    For layout `demo` the demo is first written to `dataset.root` (skipped when the folder already
    holds the same demo configuration). ``dataset`` stays a plain dict (the split and bundle stages
    read it too); it is checked with the run configuration (`segad.config.RunConfig`).
    """
    if dataset["layout"] == "demo":
        write_demo(dataset["root"], demo)
    options = dict(dataset.get("options") or {})
    index, problems = build_index(
        dataset["layout"], dataset.get("root"), dataset.get("category"),
        on_bad_image=dataset.get("on_bad_image", "fail"), **options,
    )
    for row in problems.itertuples():
        log.warning("skipped unreadable image %s: %s", row.path, row.problem)
    summary = index.groupby(["category", "split", "label"]).size()
    log.info("image index: %d images\n%s", len(index), summary.to_string())
    return index, problems
