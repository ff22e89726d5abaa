"""The ``external`` detector kind: anomaly maps computed by another tool, read into the map store.

SegAD needs only raw anomaly maps, so any tool's maps can feed it (for example the per-image
``.npy`` maps the SegAD reference code writes). A detector entry named ``external``, or any name
with ``kind: external``, reads them instead of fitting a model; the maps go through the same
`MapStore` and map index as every other detector, so features, BRF and evaluation are unchanged.

Naming rule: the map of an image is ``<folder>/<image_id>`` with the image's suffix replaced by
``.npy``, ``.npz``, ``.tif`` or ``.tiff`` (image ids are POSIX paths relative to the dataset
root, `segad.ingestion.layouts`; e.g. ``bottle/test/broken_large/000.png`` ->
``<folder>/bottle/test/broken_large/000.npy``). Without ``suffix`` exactly one of them must exist.
An ``.npz`` gives its ``anomaly_map`` array, else its first one; a TIFF is read with PIL (float32
mode ``F`` or an integer mode). Accepted shapes (H, W), (1, H, W) and (H, W, 1); values must be
finite, higher = more anomalous. A map of another size than ``image_size`` is resized bilinearly
(``torch.nn.functional.interpolate``, ``align_corners=False``, as detector output is); its
original size is kept in the map index (``source_height``, ``source_width``).

Nothing is fitted. ``model_key`` (per category) hashes the SHA-256 of every map file used, the
image size and `EXTERNAL_FORMAT`, so a changed map gives a new key and new stored maps.

Example:
    >>> from segad.detection.external import ExternalConfig, is_external
    >>> is_external("reference", {"kind": "external", "folder": "/maps"})
    True
    >>> ExternalConfig.from_dict("external", {"folder": "/", "suffix": "NPY"}).suffix
    '.npy'
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from segad.detection.config import DetectorConfigError
from segad.detection.stage import MapRunStats, cached_map, map_index_table, needed_maps
from segad.storage.files import file_sha256
from segad.storage.images import ImageSize, SizeLike
from segad.versions import package_versions

if TYPE_CHECKING:
    import pandas as pd

    from segad.storage.map_store import MapStore

logger = logging.getLogger(__name__)

KIND = "external"
#: Bump when reading or resizing external maps changes what a stored map means (part of model_key).
EXTERNAL_FORMAT = 1
MAP_SUFFIXES = (".npy", ".npz", ".tif", ".tiff")
#: Extra map-index columns: the size of the map file before resizing, in pixels.
SOURCE_COLUMNS = ("source_height", "source_width")


class ExternalMapError(ValueError):
    """An external map is missing, unreadable or invalid; the message names the file."""


def is_external(name: str, values: dict[str, Any] | None) -> bool:
    """Whether the detector entry ``name`` (its ``anomaly_maps.<name>`` settings) is an external one."""
    kind = (values or {}).get("kind")
    return kind == KIND or (name == KIND and kind is None)


@dataclass(frozen=True)
class ExternalConfig:
    """Settings of an external detector.

    Attributes:
        name: the detector's name (its namespace and the map index's ``detector`` value).
        folder: root of the map files (see the naming rule in the module docstring).
        suffix: one of `MAP_SUFFIXES` when the folder holds several kinds per image; None = the
            only one present.
        kind: always ``external``.
    """

    name: str
    folder: str
    suffix: str | None = None
    kind: str = KIND

    @classmethod
    def from_dict(cls, name: str, values: dict[str, Any] | None) -> ExternalConfig:
        """Build from a parameters mapping; DetectorConfigError naming the bad setting."""
        values = dict(values or {})
        unknown = sorted(set(values) - {"kind", "folder", "suffix"})
        if unknown:
            raise DetectorConfigError(
                f"detector {name} (external): unknown settings {unknown}; known: ['folder', 'kind', 'suffix']"
            )
        if values.get("kind", KIND) != KIND:
            raise DetectorConfigError(f"detector {name}: kind must be {KIND!r}, got {values['kind']!r}")
        folder = values.get("folder")
        if not folder or not isinstance(folder, str):
            raise DetectorConfigError(f"detector {name} (external): `folder` (root of the map files) is required")
        if not Path(folder).expanduser().is_dir():
            raise DetectorConfigError(f"detector {name} (external): {folder}: no such folder")
        suffix = values.get("suffix")
        if suffix is not None:
            suffix = "." + str(suffix).lower().lstrip(".")
            if suffix not in MAP_SUFFIXES:
                raise DetectorConfigError(
                    f"detector {name} (external): suffix must be one of {list(MAP_SUFFIXES)}, got {values['suffix']!r}"
                )
        return cls(name=name, folder=str(Path(folder).expanduser()), suffix=suffix)


def map_file(config: ExternalConfig, image_id: str) -> Path:
    """The map file of ``image_id`` (the naming rule); ExternalMapError when absent or ambiguous."""
    relative = PurePosixPath(image_id)
    if relative.is_absolute() or ".." in relative.parts:
        raise ExternalMapError(f"image_id {image_id!r}: not a relative path inside the map folder")
    stem = Path(config.folder, *relative.parts)
    suffixes = [config.suffix] if config.suffix else list(MAP_SUFFIXES)
    found = [p for p in (stem.with_suffix(s) for s in suffixes) if p.is_file()]
    if not found:
        tried = ", ".join(str(stem.with_suffix(s)) for s in suffixes)
        raise ExternalMapError(f"image {image_id}: no anomaly map (looked for {tried})")
    if len(found) > 1:
        raise ExternalMapError(
            f"image {image_id}: several maps {[str(p) for p in found]}; set the detector's `suffix` to choose"
        )
    return found[0]


def read_map(path: str | Path) -> np.ndarray:
    """A map file as float32 (H, W); ExternalMapError naming the file when unreadable or invalid."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if not archive.files:
                    raise ExternalMapError(f"{path}: empty npz (no array inside)")
                array = archive["anomaly_map" if "anomaly_map" in archive.files else archive.files[0]]
        elif suffix in (".tif", ".tiff"):
            from PIL import Image

            with Image.open(path) as image:
                image.load()
                if image.mode not in ("F", "I", "I;16", "I;16B", "I;16L", "L"):
                    raise ExternalMapError(f"{path}: TIFF mode {image.mode!r}; expected one channel (F or integer)")
                array = np.asarray(image)
        else:
            raise ExternalMapError(f"{path}: unsupported map suffix; expected one of {list(MAP_SUFFIXES)}")
    except ExternalMapError:
        raise
    except Exception as error:  # noqa: BLE001 - numpy/PIL raise many types for damaged files
        raise ExternalMapError(f"{path}: unreadable or corrupt map file ({type(error).__name__}: {error})") from error
    return _checked(path, array)


def _checked(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise ExternalMapError(f"{path}: map dtype {array.dtype} is not a real number type")
    if array.size == 0:
        raise ExternalMapError(f"{path}: empty map, shape {array.shape}")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    elif array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ExternalMapError(f"{path}: map shape {array.shape}; expected (H, W), (1, H, W) or (H, W, 1)")
    array = array.astype(np.float32)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ExternalMapError(f"{path}: {bad} non-finite values (NaN or inf) in the map")
    return array


def resize_map(anomaly_map: np.ndarray, size: SizeLike) -> np.ndarray:
    """Bilinear resize of a float32 (H, W) map to ``size`` (height, width), as detector output is resized."""
    shape = ImageSize.parse(size).hw
    if anomaly_map.shape == shape:
        return anomaly_map
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(anomaly_map))[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)
    return resized[0, 0].numpy().astype(np.float32)


def external_model_key(image_size: SizeLike, map_hashes: list[str]) -> str:
    """16-hex hash of the maps used (file SHA-256s), the image size, `EXTERNAL_FORMAT` and the
    torch version (it resizes)."""
    payload = {
        "format": EXTERNAL_FORMAT,
        "detector": KIND,
        "libraries": package_versions(("torch",)),
        "image_size": ImageSize.parse(image_size).to_json(),
        "maps": sorted(map_hashes),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def compute_external_maps(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame | None,
    config: ExternalConfig,
    image_size: SizeLike,
    map_store: MapStore,
) -> tuple[pd.DataFrame, MapRunStats]:
    """Read, check and resize the external map of every needed image into ``map_store``.

    Needed maps are those of `segad.detection.stage.compute_anomaly_maps` (brf_train and test
    rows, synthetic images). Every map file is read and checked on every run (errors name the
    file); a map already stored under ``<model_key>/<map file sha256[:32]>`` is not written again.

    Returns:
        The map index (`MAP_INDEX_COLUMNS` + `SOURCE_COLUMNS`) and run stats.
    """
    needed = needed_maps(image_index, splits, synthetic_index)
    files = {i: map_file(config, i) for i in sorted(set(needed["image_id"]))}
    hashes = {i: file_sha256(p)[:32] for i, p in files.items()}
    keys = {
        category: external_model_key(image_size, sorted({hashes[i] for i in group}))
        for category, group in needed.groupby("category")["image_id"]
    }
    needed["model_key"] = needed["category"].map(keys)
    needed["map_key"] = needed["model_key"] + "/" + needed["image_id"].map(hashes)

    stats = MapRunStats()
    start = time.perf_counter()
    max_scores: dict[str, float] = {}
    shapes: dict[str, tuple[int, int]] = {}
    sources: dict[str, tuple[int, int]] = {}
    unique = needed.drop_duplicates("map_key")
    for map_key, image_id in zip(unique["map_key"], unique["image_id"], strict=True):
        raw = read_map(files[image_id])
        sources[map_key] = (int(raw.shape[0]), int(raw.shape[1]))
        stored = cached_map(map_store, map_key, image_size)
        if stored is None:
            map_store.write(map_key, resize_map(raw, image_size))
            stored = map_store.read(map_key)  # what downstream stages read (float16 if so stored)
            stats.maps_computed += 1
        else:
            stats.maps_cached += 1
        max_scores[map_key], shapes[map_key] = float(stored.max()), stored.shape
    stats.predict_seconds = time.perf_counter() - start
    needed["source_height"] = needed["map_key"].map(lambda k: sources[k][0]).astype("int32")
    needed["source_width"] = needed["map_key"].map(lambda k: sources[k][1]).astype("int32")
    logger.info("%s: %d external maps read from %s", config.name, len(sources), config.folder)
    return map_index_table(needed, config.name, max_scores, shapes, SOURCE_COLUMNS), stats
