"""Kedro dataset for a folder of PNG pictures given as uint8 arrays (e.g. inspection overlays).

Saving takes ``{file name: uint8 (H, W, 3) or (H, W) array}``. The folder's manifest
(``.segad_pictures.json``) lists the pictures this dataset wrote: the ones of the earlier save are
removed first (they must not pass for this run's), then each picture is written to a temporary
file and ``os.replace``d, then the manifest. Files the dataset did not write are never touched.
Loading returns ``{file name: array}`` of the pictures of the last save.

Example:
    >>> import numpy as np, tempfile
    >>> from segad.datasets.png_folder_dataset import PngFolderDataset
    >>> ds = PngFolderDataset(tempfile.mkdtemp())
    >>> ds.save({"a.png": np.zeros((4, 6, 3), np.uint8)})
    >>> {k: v.shape for k, v in ds.load().items()}
    {'a.png': (4, 6, 3)}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError
from PIL import Image

from segad.storage.files import atomic_path

MANIFEST = ".segad_pictures.json"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+\.png$")


class PngFolderDataset(AbstractDataset[dict, dict]):
    """PNG files directly inside `path`."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def save(self, data: dict[str, np.ndarray]) -> None:
        for name, picture in data.items():
            if not _NAME.match(name):
                raise DatasetError(f"{self._path}: invalid picture file name {name!r}")
            picture = np.asarray(picture)
            if picture.dtype != np.uint8 or picture.ndim not in (2, 3):
                raise DatasetError(
                    f"{self._path / name}: expected a uint8 (H, W[, 3]) array, got {picture.dtype} {picture.shape}"
                )
        self._path.mkdir(parents=True, exist_ok=True)
        for old in self._written():
            (self._path / old).unlink(missing_ok=True)
        self._write_manifest([])
        for name, picture in data.items():
            with atomic_path(self._path / name, sweep=False) as temp:
                Image.fromarray(np.asarray(picture)).save(temp, format="PNG")
        self._write_manifest(sorted(data))

    def _written(self) -> list[str]:
        """Names of the pictures the last save wrote (from the manifest; none without one)."""
        try:
            names = json.loads((self._path / MANIFEST).read_text())["pictures"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [name for name in names if isinstance(name, str) and _NAME.match(name)]

    def _write_manifest(self, names: list[str]) -> None:
        with atomic_path(self._path / MANIFEST) as temp:
            temp.write_text(json.dumps({"pictures": names}))

    def load(self) -> dict[str, np.ndarray]:
        if not self._path.is_dir():
            raise DatasetError(f"{self._path}: no such folder")
        pictures = {}
        for name in sorted(self._written()):
            with Image.open(self._path / name) as image:
                pictures[name] = np.asarray(image.convert("RGB"))
        return pictures

    def _exists(self) -> bool:
        return (self._path / MANIFEST).is_file()
