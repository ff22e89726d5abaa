"""A folder of raw anomaly maps, one ``.npz`` file per map, written atomically and checked on read.

A map is a float32 (H, W) array of raw detector output (no normalisation). It lives at
``<root>/<map_key>.npz``; ``map_key`` is a relative POSIX path (the anomaly-map stage uses
``<model_key>/<image content hash>``), so a key names its file and the same map is never computed
twice. Each file holds the map (float32, or float16 when the store is built with
``dtype="float16"`` and the map fits float16's range) and its own key.

Damage is detected, not trusted: a truncated file, a flipped byte (the zip CRC-32 of every npz
member is verified on read), a wrong key, shape or dtype, or a non-finite value make `read` raise
`MapStoreError` naming the file, and make `exists` answer False so the map is recomputed.
Writes go to a temporary file in the same folder, then ``os.replace`` (`segad.storage.files.atomic_path`):
an interrupted run leaves either the old complete file or none, never half a file, and the
temporary file of a killed run is removed by the next write into that folder.

Why one file per map and not shards (measured, docs/anomaly_maps.md,
``benchmarks/bench_anomaly_maps.py --store``): shards of 100 maps write and read ~3x faster and
are the same size, but one file per map still moves ~300 maps/s, over ten times what the
detectors produce on CPU, and it keeps every write atomic, every cache hit independent of the
others and a damaged file local to one map. Zip compression saves only ~17 % (float32) at a
~15x write cost, so maps are stored uncompressed.

Example:
    >>> import numpy as np, tempfile
    >>> from segad.storage.map_store import MapStore
    >>> store = MapStore(tempfile.mkdtemp())
    >>> store.write("m0/abc", np.ones((4, 4), np.float32))
    >>> store.exists("m0/abc"), store.read("m0/abc").shape
    (True, (4, 4))
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from segad.storage.files import atomic_path

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
FLOAT16_MAX = float(np.finfo(np.float16).max)


class MapStoreError(ValueError):
    """A stored map is missing or damaged; the message names the file and the problem."""


class MapStore:
    """Raw anomaly maps under ``root``, addressed by ``map_key``.

    Args:
        root: folder of the store (created on first write).
        dtype: on-disk dtype, ``float32`` (default) or ``float16``. float16 halves the size; a map
            whose values exceed float16's range (|x| > 65504) is kept as float32. `read` always
            returns float32.
    """

    def __init__(self, root: str | Path, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"MapStore dtype must be float32 or float16, not {dtype!r}")
        self.root = Path(root)
        self.dtype = dtype
        self._swept: set[Path] = set()

    def __repr__(self) -> str:
        return f"MapStore(root={str(self.root)!r}, dtype={self.dtype!r})"

    def path(self, map_key: str) -> Path:
        """File of a map: ``<root>/<map_key>.npz``. ValueError for keys that could escape root."""
        if not isinstance(map_key, str) or not _KEY.match(map_key) or ".." in map_key.split("/"):
            raise ValueError(f"invalid map_key {map_key!r}: use letters, digits, _ . - and / separators")
        return self.root / f"{map_key}.npz"

    def write(self, map_key: str, anomaly_map: np.ndarray) -> None:
        """Store a 2-D finite map atomically (temp file in the same folder, then os.replace)."""
        array = np.asarray(anomaly_map)
        if array.ndim != 2 or array.size == 0:
            raise ValueError(f"map {map_key!r}: expected a non-empty (H, W) array, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"map {map_key!r}: expected a float array, got {array.dtype}")
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            raise ValueError(f"map {map_key!r}: contains NaN or infinite values")
        if self.dtype == "float16" and np.abs(array).max() <= FLOAT16_MAX:
            array = array.astype(np.float16)
        target = self.path(map_key)
        sweep = target.parent not in self._swept  # orphans of killed runs: once per folder, not per map
        with atomic_path(target, sweep=sweep) as temp, open(temp, "xb") as stream:
            np.savez(stream, map=array, map_key=np.array(map_key))
        self._swept.add(target.parent)

    def read(self, map_key: str) -> np.ndarray:
        """The map as float32 (H, W); MapStoreError if the file is missing or damaged."""
        path = self.path(map_key)
        if not path.is_file():
            raise MapStoreError(f"{path}: no stored map for key {map_key!r}")
        try:
            with np.load(path, allow_pickle=False) as data:
                if set(data.files) != {"map", "map_key"}:
                    raise MapStoreError(f"{path}: unexpected members {sorted(data.files)}")
                stored_key = str(data["map_key"])
                array = data["map"]
        except MapStoreError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as error:
            raise MapStoreError(f"{path}: damaged map file ({error})") from error
        if stored_key != map_key:
            raise MapStoreError(f"{path}: holds map {stored_key!r}, expected {map_key!r}")
        if array.ndim != 2 or array.dtype not in (np.float32, np.float16) or array.size == 0:
            raise MapStoreError(f"{path}: bad map array (shape {array.shape}, dtype {array.dtype})")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise MapStoreError(f"{path}: map contains NaN or infinite values")
        return array

    def exists(self, map_key: str) -> bool:
        """True when a complete, valid map is stored; a damaged file is logged and counts as absent."""
        path = self.path(map_key)
        if not path.is_file():
            return False
        try:
            self.read(map_key)
        except MapStoreError as error:
            logger.warning("recomputing damaged map: %s", error)
            return False
        return True

    def size_bytes(self) -> int:
        """Total size of the stored map files in bytes."""
        return sum(p.stat().st_size for p in self.root.rglob("*.npz")) if self.root.exists() else 0
