"""Kedro dataset for the segment maps of a run (`segad.segments.segment_maps.SegmentMaps`) as one ``.npz``.

The file holds one int16 label array ``labels/<category>`` per category with a static map and a
JSON string ``meta`` (method, map size, segment count and source per category, per-image folder).
Written to a temporary file, then ``os.replace``d. No pickle.

Example:
    >>> from segad.datasets.segment_maps_dataset import SegmentMapsDataset
    >>> ds = SegmentMapsDataset("data/04_feature/segment_maps.npz")   # doctest: +SKIP
    >>> ds.load().static_maps["demo"].shape                            # doctest: +SKIP
    (256, 256)
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from segad.segments.segment_maps import SegmentMaps


class SegmentMapsDataset(AbstractDataset):
    """A `SegmentMaps` stored at `filepath` (.npz)."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def save(self, data: SegmentMaps) -> None:
        meta = {
            "method": data.method,
            "size": list(data.size),
            "n_segments": data.n_segments,
            "folder": data.folder,
            "sources": data.sources,
        }
        arrays = {f"labels/{c}": np.asarray(m, dtype=np.int16) for c, m in data.static_maps.items()}
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        temp = self._filepath.parent / f".{self._filepath.name}.{uuid.uuid4().hex}.tmp"  # umask applies
        try:
            with open(temp, "xb") as stream:
                np.savez_compressed(stream, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle
            os.replace(temp, self._filepath)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def load(self) -> SegmentMaps:
        if not self._filepath.is_file():
            raise DatasetError(f"{self._filepath}: no such segment maps file")
        try:
            with np.load(self._filepath, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                maps = {k.split("/", 1)[1]: data[k].astype(np.int64) for k in data.files if k.startswith("labels/")}
        except (OSError, ValueError, KeyError) as error:
            raise DatasetError(f"{self._filepath}: unreadable segment maps ({error})") from error
        return SegmentMaps(
            method=meta["method"],
            size=tuple(meta["size"]),
            n_segments=meta["n_segments"],
            static_maps=maps,
            folder=meta["folder"],
            sources=meta["sources"],
        )

    def _exists(self) -> bool:
        return self._filepath.is_file()
