"""Kedro's stock datasets, written atomically: a failed save leaves the previous complete file.

The kedro-datasets classes write in place (``fs.open(path, "wb")``): a full disk, a kill or any
error halfway leaves a truncated file where the last good one was. The classes here are those
classes, with every option kept, whose writes on the local file system go to a temporary sibling
(`segad.storage.files.atomic_path`: ``.<name>.<host>-<pid>.<hex>.tmp``, flushed and ``fsync``ed) that is
renamed over the target only once it is complete. On any error the temporary file is removed,
the target is untouched and the error names the file and the cause::

    /path/to/project/data/02_intermediate/image_index.parquet: not written ([Errno 28] No space left on device);
    the previous version of this file, if any, is unchanged

The mechanism is one small wrapper (`AtomicFiles`) around the dataset's fsspec file system: its
``open`` in a write mode hands out the temporary file; reads, listings and deletions pass through.
Folders written as a whole are staged and swapped in (`segad.storage.files.staging_folder`,
`replace_folder`): a `MatplotlibDataset` saving a list or dict of figures with ``overwrite: true``,
and a `PartitionedDataset` with ``overwrite: true``. Other protocols (s3, gcs, ...) are left as
they are: an object store replaces an object in one step.

Reading: a damaged or foreign parquet file gives ``<path>: not a parquet file or damaged (<cause>)``
(`read_parquet`, also used by the partitioned feature table).

Catalog entry (conf/base/catalog.yml)::

    image_index:
      type: segad.datasets.atomic.ParquetDataset
      filepath: ${globals:data_root}/02_intermediate/image_index.parquet

Example:
    >>> import tempfile, pathlib, pandas as pd
    >>> from segad.datasets.atomic import CSVDataset
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> CSVDataset(filepath=str(path), save_args={"index": False}).save(pd.DataFrame({"a": [1]}))
    >>> path.read_text(), [p.name for p in path.parent.iterdir()]
    ('a\\n1\\n', ['metrics.csv'])
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from fsspec.implementations.local import LocalFileSystem
from kedro.io import DatasetError
from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.partitions import PartitionedDataset as _PartitionedDataset
from kedro_datasets.pillow import ImageDataset as _ImageDataset
from kedro_datasets.text import TextDataset as _TextDataset

from segad.storage.files import atomic_path, replace_folder, staging_folder

__all__ = [
    "AtomicFiles",
    "CSVDataset",
    "ImageDataset",
    "JSONDataset",
    "MatplotlibDataset",
    "ParquetDataset",
    "PartitionedDataset",
    "TextDataset",
    "read_parquet",
]


def not_written(target: Path | str, error: BaseException) -> DatasetError:
    """The error of a failed atomic save: the file, the cause, and that the old file is kept."""
    return DatasetError(f"{target}: not written ({error}); the previous version of this file, if any, is unchanged")


def read_parquet(path: Path | str, **load_args: Any) -> pd.DataFrame:
    """`pandas.read_parquet`, with errors that name the file: ``<path>: not a parquet file or damaged (<cause>)``."""
    import pyarrow

    try:
        return pd.read_parquet(path, **load_args)
    except FileNotFoundError as error:
        raise DatasetError(f"{path}: no such parquet file") from error
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a parquet file or damaged ({type(error).__name__}: {error})") from error


@contextmanager
def _replace_on_close(fs: Any, target: Path, mode: str, kwargs: dict[str, Any]) -> Iterator[Any]:
    """A file of `fs` open at a temporary sibling of `target`; renamed over it once complete."""
    if "x" in mode and target.exists():
        raise FileExistsError(f"{target}: exists (mode {mode!r})")
    try:
        with atomic_path(target) as temp:  # no suffix: globs such as **/*.parquet skip it
            with fs.open(str(temp), mode.replace("x", "w"), **kwargs) as handle:
                yield handle
                if not handle.closed:  # make a full disk fail here, before the rename
                    handle.flush()
                    os.fsync(handle.fileno())
    except OSError as error:
        raise not_written(target, error) from error


class AtomicFiles:
    """An fsspec file system whose ``open`` for writing goes through a temporary sibling.

    ``open(path, "w"|"wb"|"x"|"xb", ...)`` returns a context manager (datasets use ``with``) whose
    file is renamed over `path` when the block ends without error; everything else is the wrapped
    file system's.
    """

    def __init__(self, fs: Any) -> None:
        self._wrapped = fs

    def __getattr__(self, name: str) -> Any:
        if name == "_wrapped":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" not in mode and "x" not in mode:
            return self._wrapped.open(path, mode, **kwargs)
        return _replace_on_close(self._wrapped, Path(self._wrapped._strip_protocol(path)), mode, kwargs)


class _StockConfig:
    """Mixin that records the stock class's own arguments (Kedro records a subclass's as
    ``{"args": ..., "kwargs": ...}``), so `_init_config` (``catalog.to_config()``) gives the
    catalog entry back with this module's type."""

    _init_args: dict[str, Any]

    def _init_config(self) -> dict[str, Any]:
        recorded = self.__dict__.get("_init_args") or {}
        if set(recorded) == {"args", "kwargs"}:
            stock = next(c for c in type(self).__mro__ if c.__module__.startswith("kedro_datasets"))
            arguments = inspect.getcallargs(
                inspect.unwrap(stock.__dict__["__init__"]), self, *recorded["args"], **recorded["kwargs"]
            )
            arguments.pop("self", None)
            self._init_args = arguments
        return super()._init_config()  # type: ignore[misc]


class _Atomic(_StockConfig):
    """Mixin for a kedro-datasets class that keeps its file system in ``_fs``: the local one is
    wrapped in `AtomicFiles` as the stock ``__init__`` sets it (its signature stays the stock one)."""

    _protocol: str

    @property
    def _fs(self) -> Any:
        return self.__dict__["_segad_fs"]

    @_fs.setter
    def _fs(self, fs: Any) -> None:
        local = isinstance(fs, LocalFileSystem) and not isinstance(fs, AtomicFiles)
        self.__dict__["_segad_fs"] = AtomicFiles(fs) if local else fs


class ParquetDataset(_Atomic, _ParquetDataset):
    """`pandas.ParquetDataset`, written atomically; a damaged file's error names it."""

    def load(self) -> pd.DataFrame:
        if self._protocol != "file":
            return super().load()
        return read_parquet(str(self._get_load_path()), **self._load_args)


class CSVDataset(_Atomic, _CSVDataset):
    """`pandas.CSVDataset`, written atomically."""


class TextDataset(_Atomic, _TextDataset):
    """`text.TextDataset`, written atomically."""


class JSONDataset(_Atomic, _JSONDataset):
    """`json.JSONDataset`, written atomically."""


class ImageDataset(_Atomic, _ImageDataset):
    """`pillow.ImageDataset`, written atomically."""


@contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A staging folder beside `target`, swapped in when the block ends without error."""
    staging = staging_folder(target)
    try:
        yield staging
        replace_folder(staging, target)
    except DatasetError as error:  # name the file by its place in the target folder
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(str(error).replace(str(staging), str(target))) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class MatplotlibDataset(_Atomic, _MatplotlibDataset):
    """`matplotlib.MatplotlibDataset`, written atomically: each PNG, and with ``overwrite: true``
    the folder of a list or dict of figures as a whole (the old folder stays until the new one is
    complete)."""

    _filepath: PurePosixPath

    def save(self, data: Any) -> None:
        whole_folder = isinstance(data, (list, dict)) and self._overwrite and self._protocol == "file"
        if not whole_folder or self._version is not None:
            super().save(data)
            return
        target = Path(str(self._filepath))
        with _staged(target) as staging:
            self._filepath = PurePosixPath(staging.as_posix())
            try:
                super().save(data)
                staging.mkdir(exist_ok=True)  # the stock save removes it first; empty data makes none
            finally:
                self._filepath = PurePosixPath(target.as_posix())


class PartitionedDataset(_StockConfig, _PartitionedDataset):
    """`partitions.PartitionedDataset`; with ``overwrite: true`` on the local file system the new
    partitions are written into a staging folder that replaces the old folder only once complete.
    Give it atomic partition datasets (the classes of this module) so each file is atomic too."""

    _path: str

    def save(self, data: dict[str, Any]) -> None:
        if not (self._overwrite and self._protocol == "file"):
            super().save(data)
            return
        target = Path(self._path)
        with _staged(target) as staging:
            self._path = staging.as_posix()
            try:
                super().save(data)
                staging.mkdir(exist_ok=True)  # the stock save removes it first; empty data makes none
            finally:
                self._path = target.as_posix()
                self._invalidate_caches()
