"""Kedro adapter of `segad.schemas`: every table a node loads or saves is checked against its model.

`SchemaHooks` (registered in settings.py) maps catalog dataset names to models (`model_for`) and
validates each DataFrame after it is loaded and before it is saved. A mismatch stops the run with
`DatasetSchemaError`: one short message naming the dataset, the node, the columns and the problems
(`kedro run` prints it as one ``Error: ...`` block, no traceback).
"""

from __future__ import annotations

from typing import Any

import click
import pandas as pd
import pandera.pandas as pa
from kedro.framework.hooks import hook_impl

from segad.schemas import MODELS, SchemaError, validate

#: Catalog name -> model name in `segad.schemas.MODELS`; `<detector>.map_index` by its suffix.
DATASETS: dict[str, str] = {
    "image_index": "image_index",
    "splits": "splits",
    "synthetic_index": "synthetic_index",
    "classifier_scores": "classifier_scores",
    "features": "features",
    "segmentation_selection": "segmentation_selection",
    "scores": "scores",
    "brf_selection": "brf_selection",
    "evaluation.test_scores": "test_scores",
    "metrics": "metrics",
    "inspection": "inspection",
    "score_runs": "score_runs",
}
NAMESPACED = {".map_index": "map_index"}  # dataset-factory entries "{detector}.map_index"


class DatasetSchemaError(click.ClickException, SchemaError):
    """A table a node loaded or is saving does not match its schema (a ValueError from Python)."""


def model_for(dataset_name: str) -> type[pa.DataFrameModel] | None:
    """The model of a catalog dataset, or None for datasets without a table schema."""
    if dataset_name in DATASETS:
        return MODELS[DATASETS[dataset_name]]
    for suffix, model in NAMESPACED.items():
        if dataset_name.endswith(suffix) and "." not in dataset_name[: -len(suffix)]:
            return MODELS[model]
    return None


def check_dataset(dataset_name: str, data: Any, context: str) -> None:
    """Validate `data` if `dataset_name` has a model and `data` is a DataFrame."""
    model = model_for(dataset_name)
    if model is None or not isinstance(data, pd.DataFrame):
        return
    try:
        validate(model, data, f"dataset {dataset_name!r} ({context})")
    except SchemaError as error:
        raise DatasetSchemaError(str(error)) from None


class SchemaHooks:
    """Validate the project tables where nodes load and save them."""

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        check_dataset(dataset_name, data, f"loaded for node {node.name!r}")

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        check_dataset(dataset_name, data, f"saved by node {node.name!r}")
