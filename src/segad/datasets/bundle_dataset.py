"""Kedro dataset for SegAD bundles (`segad.production.bundle`), versioned under one parent folder.

Saving takes the keyword arguments of `segad.production.writer.write_bundle` (a dict the bundle node
returns) and writes a new bundle folder ``<path>/<bundle_id>`` atomically, then points
``<path>/LATEST`` at it (`segad.production.writer.write_versioned_bundle`); older bundles stay. Loading
resolves ``LATEST`` when `path` is the parent folder, or takes `path` as the bundle folder when
it holds a manifest, and returns a checked `segad.production.bundle.Bundle` (format and package versions,
file hashes, feature schema; no pickle anywhere). Detectors stay on disk until
`Bundle.load_detectors(device)`.

Catalog entry (conf/base/catalog_bundle.yml)::

    segad_bundle:
      type: segad.datasets.bundle_dataset.BundleDataset
      path: ${runtime_params:score.bundle, data/06_models/segad_bundle}

Example:
    >>> from segad.datasets.bundle_dataset import BundleDataset
    >>> BundleDataset("data/06_models/segad_bundle").load().bundle_id  # the latest  # doctest: +SKIP
    >>> BundleDataset("data/06_models/segad_bundle/20261202T123456Z-1a2b3c4d").load()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from segad.production.bundle import LATEST, Bundle, BundleError, load_bundle, resolve_bundle
from segad.production.writer import write_versioned_bundle
from segad.storage.files import NotOwnedError

log = logging.getLogger(__name__)


class BundleDataset(AbstractDataset[dict, Bundle]):
    """SegAD bundles at `path`: a parent folder of versioned bundles (+ LATEST), or one bundle.

    Args:
        path: the parent folder (load: its latest bundle; save: a new bundle in it), or a bundle
            folder itself (load only).
        allow_version_mismatch: load even when the recorded major.minor versions of the checked
            packages differ from the installed ones (a warning is logged).
    """

    def __init__(self, path: str, allow_version_mismatch: bool = False, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self._allow_version_mismatch = bool(allow_version_mismatch)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "allow_version_mismatch": self._allow_version_mismatch}

    def load(self) -> Bundle:
        try:
            folder = resolve_bundle(self._path)
        except BundleError as error:
            if (self._path / LATEST).is_file():  # LATEST's own message: the bundle it names is missing
                raise DatasetError(str(error)) from error
            raise DatasetError(
                f"{error}; train one with `kedro run --pipelines segad` (the bundle pipeline writes "
                "it) or point score.bundle at a bundle folder or a parent folder with LATEST"
            ) from error
        try:
            bundle = load_bundle(folder, allow_version_mismatch=self._allow_version_mismatch)
        except BundleError as error:
            raise DatasetError(str(error)) from error
        log.info("bundle %s from %s", bundle.bundle_id, folder)
        return bundle

    def save(self, data: dict) -> None:
        if not isinstance(data, dict):
            raise DatasetError(
                f"{self._path}: expected the keyword arguments of write_bundle, got {type(data).__name__}"
            )
        if not data:
            logging.getLogger(__name__).info("%s: no bundle written (bundle.build is false)", self._path)
            return
        try:
            write_versioned_bundle(self._path, **data)
        except (NotOwnedError, BundleError) as error:
            raise DatasetError(str(error)) from error

    def _exists(self) -> bool:
        if (self._path / LATEST).is_file():  # loading then says what is wrong with what LATEST names
            return True
        try:
            resolve_bundle(self._path)
        except BundleError:
            return False
        return True
