"""The project's config loader: the catalog's ``${dataset_id:}`` is the id of the session's dataset.

`SegadConfigLoader` (settings.CONFIG_LOADER_CLASS) is Kedro's `OmegaConfigLoader` with one
addition: when the catalog is read, the ``dataset`` parameters of the same loader (conf, the
environment and ``--params``, exactly what the nodes get as ``params:dataset``) give the dataset id
(`segad.config.DatasetConfig.id`), and the ``${dataset_id:}`` resolver (registered in settings.py)
returns it. So every single-file table of a dataset lies in its ``dataset=<id>`` folder for every
command that reads the catalog (``kedro run``, ``kedro viz``, ``kedro catalog``, a notebook
session), and a stage run alone reads its own dataset's tables. Parameters cannot use
``${dataset_id:}``: the id is computed from them.

A catalog built outside this loader (a bare `OmegaConfigLoader`) reads the id set with
`use_dataset_id`, or fails saying so.
"""

from __future__ import annotations

from typing import Any

from kedro.config import OmegaConfigLoader
from pydantic import ValidationError

from segad.config import DatasetConfig, describe

#: The id ``${dataset_id:}`` gives outside `SegadConfigLoader` (None: unset).
_dataset_id: str | None = None


def use_dataset_id(value: str | None) -> None:
    """Set the id that ``${dataset_id:}`` gives a catalog read outside `SegadConfigLoader` (None: unset)."""
    global _dataset_id
    _dataset_id = value


def dataset_id_resolver() -> str:
    """The ``${dataset_id:}`` resolver of the catalog: the dataset id of the config being read."""
    if _dataset_id is None:
        raise RuntimeError(
            "${dataset_id:} is read outside segad's config loader: settings.py's SegadConfigLoader sets it "
            "from the dataset parameters when it reads the catalog; for a bare OmegaConfigLoader call "
            "segad.config_loader.use_dataset_id(DatasetConfig(...).id) first"
        )
    return _dataset_id


def parameters_dataset_id(parameters: dict[str, Any]) -> str:
    """The dataset id of a parameter tree's ``dataset`` block (ValueError naming the key when invalid)."""
    try:
        return DatasetConfig(**(parameters.get("dataset") or {})).id
    except ValidationError as error:
        raise ValueError(f"Parameter validation failed: {describe(error, 'dataset')}") from None
    except TypeError as error:
        raise ValueError(f"Parameter validation failed: dataset: {error}") from None


class SegadConfigLoader(OmegaConfigLoader):
    """`OmegaConfigLoader` whose catalog resolves ``${dataset_id:}`` from its own ``dataset`` parameters."""

    def __getitem__(self, key: str) -> Any:
        if key != "catalog":
            return super().__getitem__(key)
        previous = _dataset_id
        use_dataset_id(parameters_dataset_id(super().__getitem__("parameters")))
        try:
            return super().__getitem__(key)
        finally:
            use_dataset_id(previous)
