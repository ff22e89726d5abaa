"""The tables between the stages, each declared once as a pandera model (docs/schemas.md).

`validate(model, table, name)` checks a table lazily and raises `SchemaError` with a short
summary (dataset, column, problem, a few failing values) instead of pandera's full report; the
Kedro hook `segad.schema_hooks.SchemaHooks` calls it whenever a node loads or saves one of these
tables. The column tables of docs/schemas.md are generated from the models (`markdown_tables`);
``python -m segad.schema_report [docs/schemas.md]`` rewrites them.

The models live by concern and are all importable from here:

- `training`: the tables of a training run (image index, splits, synthetic index, map index,
  classifier scores, features, segmentation selection, scores, BRF selection, test scores, metrics);
- `production`: the tables of production scoring (inspection, score runs);
- `fields`: the field metadata the models share (doc name and meaning of regex columns).

Example::

    >>> import pandas as pd
    >>> from segad.schemas import Splits, validate
    >>> table = pd.DataFrame({"image_id": ["a.png"], "split_seed": [0], "role": ["train"], "in_benchmark": [True]})
    >>> validate(Splits, table, "splits")
    Traceback (most recent call last):
    ...
    segad.schemas.SchemaError: splits does not match segad.schemas.Splits (docs/schemas.md):
      column 'role': isin(['detector_train', 'brf_train', 'test', 'unused']) fails for 1 row(s), e.g. 'train'
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from segad.schema_errors import summary
from segad.schemas.production import Inspection, ScoreRuns
from segad.schemas.training import (
    BRFSelection,
    ClassifierScores,
    Features,
    ImageIndex,
    MapIndex,
    Metrics,
    Scores,
    SegmentationSelection,
    Splits,
    SyntheticIndex,
    TestScores,
)

__all__ = [
    "MODELS",
    "BRFSelection",
    "ClassifierScores",
    "Features",
    "ImageIndex",
    "Inspection",
    "MapIndex",
    "Metrics",
    "SchemaError",
    "ScoreRuns",
    "Scores",
    "SegmentationSelection",
    "Splits",
    "SyntheticIndex",
    "TestScores",
    "columns",
    "validate",
]


class SchemaError(ValueError):
    """A table does not match its model; the message names the dataset, the columns and the problems."""


#: Every model, by the catalog name of its table (map_index: the per-detector `<detector>.map_index`).
MODELS: dict[str, type[pa.DataFrameModel]] = {
    "image_index": ImageIndex,
    "splits": Splits,
    "synthetic_index": SyntheticIndex,
    "map_index": MapIndex,
    "classifier_scores": ClassifierScores,
    "features": Features,
    "segmentation_selection": SegmentationSelection,
    "scores": Scores,
    "brf_selection": BRFSelection,
    "test_scores": TestScores,
    "metrics": Metrics,
    "inspection": Inspection,
    "score_runs": ScoreRuns,
}


def columns(model: type[pa.DataFrameModel]) -> tuple[str, ...]:
    """The required columns of `model`, in its order (the one column list of its table); an empty
    table of the model is ``model.empty()``."""
    return tuple(name for name, column in model.to_schema().columns.items() if column.required)


def validate(model: type[pa.DataFrameModel], table: pd.DataFrame, name: str) -> None:
    """Check `table` against `model` (all problems at once); `SchemaError` summarising them if any."""
    try:
        model.validate(table, lazy=True)
    except pa.errors.SchemaErrors as errors:
        raise SchemaError(summary(errors.failure_cases, model, name)) from None
