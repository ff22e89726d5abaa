"""Kedro datasets that hand a node a *handle* on a folder instead of its contents.

The anomaly-map stage writes thousands of maps one by one (so a run can resume), which no
load-everything/save-everything dataset can do. The catalog therefore owns the folder paths and
`load` returns a handle bound to them:

- `MapStoreDataset`: a `segad.storage.map_store.MapStore` (read/write/exists of raw maps by map_key).
- `DetectorStoreDataset`: the folder (`pathlib.Path`) that holds fitted detectors, one
  sub-folder per model_key (`segad.detection.saved.save_detector` / `load_detector`).
- `BRFStoreDataset`: a `segad.meta.brf_store.BRFStore` (fitted BRFs by the hash of their
  training rows, settings and seed), shared by the brf and bundle stages.

Catalog example (conf/base/catalog_anomaly_maps.yml)::

    "{detector}.map_store":
      type: segad.datasets.map_store_dataset.MapStoreDataset
      path: data/03_primary/{detector}/maps
      dtype: float32
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from segad.meta.brf_store import BRFStore
from segad.storage.map_store import MapStore


class MapStoreDataset(AbstractDataset[None, MapStore]):
    """Loads a `MapStore` handle on ``path``; saving is not supported (write through the handle).

    Args:
        path: folder of the store (created when loaded).
        dtype: on-disk dtype of maps, ``float32`` or ``float16`` (see `MapStore`).
    """

    def __init__(self, path: str, dtype: str = "float32", metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(PurePosixPath(path))
        self._dtype = dtype
        self.metadata = metadata
        MapStore(self._path, dtype)  # validates dtype at catalog creation

    def _load(self) -> MapStore:
        self._path.mkdir(parents=True, exist_ok=True)
        return MapStore(self._path, self._dtype)

    def _save(self, data: None) -> None:
        raise DatasetError(
            f"MapStoreDataset({self._path}) is a handle: write maps with MapStore.write, do not return it from a node"
        )

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "dtype": self._dtype}


class DetectorStoreDataset(AbstractDataset[None, Path]):
    """Loads the folder of fitted detectors (created when loaded); saving is not supported."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(PurePosixPath(path))
        self.metadata = metadata

    def _load(self) -> Path:
        self._path.mkdir(parents=True, exist_ok=True)
        return self._path

    def _save(self, data: None) -> None:
        raise DatasetError(f"DetectorStoreDataset({self._path}) is a folder handle; write through the path")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class BRFStoreDataset(AbstractDataset[None, BRFStore]):
    """Loads a `segad.meta.brf_store.BRFStore` handle on ``path`` (fitted BRFs keyed by what they
    were fitted on); saving is not supported (the store writes its own files)."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(PurePosixPath(path))
        self.metadata = metadata

    def _load(self) -> BRFStore:
        return BRFStore(self._path)

    def _save(self, data: None) -> None:
        raise DatasetError(f"BRFStoreDataset({self._path}) is a handle; the store writes its own files")

    def _exists(self) -> bool:
        return True  # an empty store is a valid store: the first run fits everything

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
