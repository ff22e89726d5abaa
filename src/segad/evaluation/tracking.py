"""What an experiment tracker records of a run: flat parameters and the mean metrics.

Plain functions over the parameter tree and the ``metrics`` table (docs/schemas.md); the MLflow
calls live in `segad.tracking_hooks`. Names follow MLflow's rules (alphanumerics, ``_ - . / :``
and spaces), so a method ``padim+patchcore+segad`` is written ``padim_patchcore_segad``.

Example (runs as is)::

    >>> flat_params({"dataset": {"layout": "demo", "category": None}, "seeds": [0, 1]})
    {'dataset.layout': 'demo', 'dataset.category': 'null', 'seeds': '[0, 1]'}
    >>> import pandas as pd
    >>> table = pd.DataFrame({"method": ["padim+segad", "padim+segad"], "category": ["c", "c"],
    ...     "split_seed": ["mean", "std"], "subset": ["all", "all"], "auroc": [0.9, 0.01]})
    >>> run_metrics(table, ["auroc"])
    {'padim_segad.auroc': 0.9}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from segad.versions import jsonable

#: MLflow's limit on a parameter value's length (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH).
MAX_VALUE_LENGTH = 6000
_INVALID = re.compile(r"[^\w\-. /:]")


def tracking_name(name: str) -> str:
    """`name` with every character MLflow refuses in a key (``+``, ``@``, ...) replaced by ``_``."""
    return _INVALID.sub("_", name)


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_VALUE_LENGTH else text[: MAX_VALUE_LENGTH - 3] + "..."


def flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The parameter tree as ``{"dataset.layout": "demo", "seeds": "[0, 1, 2]", ...}``.

    Mappings are flattened with dotted keys; lists, numbers, booleans and null are JSON text;
    values longer than MLflow accepts are cut with ``...``.
    """
    flat: dict[str, str] = {}
    for key, value in jsonable(dict(tree)).items():
        name = tracking_name(f"{prefix}{key}")
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, prefix=f"{name}."))
        else:
            flat[name] = _value(value)
    return flat


def run_metrics(metrics: pd.DataFrame, metric_columns: Iterable[str]) -> dict[str, float]:
    """One value per method and metric: the mean over split seeds of the run's headline rows.

    Headline rows: ``split_seed == "mean"`` and, with several categories, ``category == "mean"``
    (the mean over categories). Subset ``all`` gives ``<method>.<metric>``; the seen / unseen
    subsets give ``<method>.<subset>.<metric>``. Missing (NaN) values are left out.
    """
    rows = metrics[metrics["split_seed"].astype(str) == "mean"]
    if rows["category"].nunique() > 1:
        rows = rows[rows["category"].astype(str) == "mean"]
    values: dict[str, float] = {}
    for row in rows.to_dict("records"):
        subset = "" if row["subset"] == "all" else f".{row['subset']}"
        for column in metric_columns:
            value = float(row[column])
            if not math.isnan(value):
                values[tracking_name(f"{row['method']}{subset}.{column}")] = value
    return values
