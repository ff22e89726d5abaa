"""Kedro dataset for the SegAD bundle folder (`segad.bundle`).

Saving takes the keyword arguments of `segad.bundle.write_bundle` (a dict the bundle node
returns) and writes the folder atomically; loading returns a checked `segad.bundle.Bundle`
(format and package versions, file hashes, feature schema; no pickle anywhere). Detectors stay
on disk until `Bundle.load_detectors(device)`.

Catalog entry (conf/base/catalog_bundle.yml)::

    segad_bundle:
      type: segad.datasets.bundle_dataset.BundleDataset
      path: ${runtime_params:score.bundle, data/06_models/segad_bundle}

Example:
    >>> from segad.datasets.bundle_dataset import BundleDataset
    >>> BundleDataset("data/06_models/segad_bundle").load().operating_point  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from segad.bundle import MANIFEST, Bundle, BundleError, load_bundle, write_bundle


class BundleDataset(AbstractDataset[dict, Bundle]):
    """A SegAD bundle folder at `path`.

    Args:
        path: the bundle folder.
        allow_version_mismatch: load even when the recorded major.minor versions of the checked
            packages differ from the installed ones (a warning is logged).
    """

    def __init__(self, path: str, allow_version_mismatch: bool = False,
                 metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self._allow_version_mismatch = bool(allow_version_mismatch)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "allow_version_mismatch": self._allow_version_mismatch}

    def load(self) -> Bundle:
        if not (self._path / MANIFEST).is_file():
            raise DatasetError(
                f"{self._path}: no SegAD bundle here; train one with `kedro run --pipelines segad` "
                "(the bundle pipeline writes it) or point score.bundle at a bundle folder")
        try:
            return load_bundle(self._path, allow_version_mismatch=self._allow_version_mismatch)
        except BundleError as error:
            raise DatasetError(str(error)) from error

    def save(self, data: dict) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"{self._path}: expected the keyword arguments of write_bundle, "
                               f"got {type(data).__name__}")
        write_bundle(self._path, **data)

    def _exists(self) -> bool:
        return (self._path / MANIFEST).is_file()
