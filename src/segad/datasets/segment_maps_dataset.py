"""Kedro dataset for the segment maps of a run (`segad.segments.segment_maps.SegmentMaps`) as one ``.npz``.

The file holds one int16 label array ``labels/<category>`` per category with a static map, the
shared centres of each `auto_per_image` category (``clusters/<array>/<category>``, see
`FeatureClusters.to_arrays`), the candidate segmentations of `auto_select` categories
(``alternatives/<name>/labels/<category>`` or ``alternatives/<name>/clusters/<array>/<category>``)
and a JSON string ``meta`` (method, map size, segment count, source and alignment per category,
each candidate's source and segment count, per-image folder, image root and image files). Written
to a temporary file, then ``os.replace``d. No pickle.

``labels_folder`` (optional) is the `MapStore` that keeps the per-image labels of
`auto_per_image` categories between runs; it is attached to the loaded `SegmentMaps`.

Example:
    >>> from segad.datasets.segment_maps_dataset import SegmentMapsDataset
    >>> ds = SegmentMapsDataset("data/04_feature/segment_maps.npz")   # doctest: +SKIP
    >>> ds.load().static_maps["demo"].shape                            # doctest: +SKIP
    (256, 256)
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from segad.segments.auto_segments import FeatureClusters
from segad.segments.segment_maps import Alternative, SegmentMaps
from segad.storage.files import atomic_path
from segad.storage.map_store import MapStore


class SegmentMapsDataset(AbstractDataset):
    """A `SegmentMaps` stored at `filepath` (.npz)."""

    def __init__(self, filepath: str, labels_folder: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self._labels_folder = labels_folder
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "labels_folder": self._labels_folder}

    def save(self, data: SegmentMaps) -> None:
        meta = {
            "method": data.method,
            "size": list(data.size),
            "n_segments": data.n_segments,
            "folder": data.folder,
            "sources": data.sources,
            "alignment": data.alignment,
            "image_root": data.image_root,
            "image_paths": dict(data.image_paths) if data.image_paths is not None and _per_image(data) else None,
            "alternatives": {
                c: {name: {"source": a.source, "n_segments": a.n_segments} for name, a in options.items()}
                for c, options in data.alternatives.items()
            },
        }
        arrays = {f"labels/{c}": np.asarray(m, dtype=np.int16) for c, m in data.static_maps.items()}
        for category, clusters in data.clusters.items():
            arrays.update({f"clusters/{name}/{category}": a for name, a in clusters.to_arrays().items()})
        for category, options in data.alternatives.items():
            for option, alternative in options.items():
                prefix = f"alternatives/{option}"
                if alternative.clusters is not None:
                    parts = alternative.clusters.to_arrays().items()
                    arrays.update({f"{prefix}/clusters/{name}/{category}": a for name, a in parts})
                else:
                    arrays[f"{prefix}/labels/{category}"] = np.asarray(alternative.labels, dtype=np.int16)
        with atomic_path(self._filepath) as temp, open(temp, "xb") as stream:
            np.savez_compressed(stream, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle

    def load(self) -> SegmentMaps:
        if not self._filepath.is_file():
            raise DatasetError(f"{self._filepath}: no such segment maps file")
        try:
            with np.load(self._filepath, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                maps = {k.split("/", 1)[1]: data[k].astype(np.int64) for k in data.files if k.startswith("labels/")}
                parts: dict[str, dict[str, np.ndarray]] = {}
                for key in (k for k in data.files if k.startswith("clusters/")):
                    _, name, category = key.split("/", 2)
                    parts.setdefault(category, {})[name] = data[key]
                clusters = {category: FeatureClusters.from_arrays(arrays) for category, arrays in parts.items()}
                alternatives = {
                    category: {
                        option: _alternative(data, option, category, **described)
                        for option, described in options.items()
                    }
                    for category, options in meta.get("alternatives", {}).items()
                }
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise DatasetError(
                f"{self._filepath}: unreadable segment maps ({type(error).__name__}: {error})"
            ) from error
        return SegmentMaps(
            method=meta["method"],
            size=tuple(meta["size"]),
            n_segments=meta["n_segments"],
            static_maps=maps,
            folder=meta["folder"],
            sources=meta["sources"],
            clusters=clusters,
            image_paths=meta.get("image_paths"),
            image_root=meta.get("image_root"),
            alignment=meta.get("alignment", {}),
            alternatives=alternatives,
            label_store=MapStore(self._labels_folder, dtype="float16") if self._labels_folder else None,
        )

    def _exists(self) -> bool:
        return self._filepath.is_file()


def _per_image(data: SegmentMaps) -> bool:
    """True when a category is, or may be chosen to be, segmented per image (its files are needed)."""
    options = (a for o in data.alternatives.values() for a in o.values())
    return bool(data.clusters) or any(a.clusters is not None for a in options)


def _alternative(data: Any, option: str, category: str, source: str, n_segments: int) -> Alternative:
    """A candidate segmentation read back from the open .npz `data`."""
    prefix = f"alternatives/{option}"
    if f"{prefix}/labels/{category}" in data.files:
        return Alternative(source, n_segments, labels=data[f"{prefix}/labels/{category}"].astype(np.int64))
    parts = {
        key.split("/")[3]: data[key]
        for key in data.files
        if key.startswith(f"{prefix}/clusters/") and key.split("/", 4)[4] == category
    }
    if not parts:
        raise KeyError(f"{prefix} of {category!r}")
    return Alternative(source, n_segments, clusters=FeatureClusters.from_arrays(parts))
