"""Kedro dataset for a hive-partitioned parquet table (the feature table).

``pandas.ParquetDataset`` of kedro-datasets 9.x refuses ``partition_cols``; this small dataset
writes one file per partition, ``<path>/<col1>=<v1>/.../<colN>=<vN>/part-0.parquet``, each written
to a temporary file and ``os.replace``d (atomic). Saving replaces only the partitions present in
the data, so tables of other datasets, categories, detector sets or seeds stay cached beside them.
Loading restores the partition columns with the types given in `partition_types` and unifies
schemas by column name (categories may have different segment counts). With ``lazy: true`` (the
feature table's catalog entry) loading returns a `PartitionedTable` handle instead, whose `read`
picks the partition folders by their values *before* reading any file, so a run reads only its
own partitions however many past runs are cached beside them. DuckDB and pandas read the folder
directly (docs/features.md).

Example:
    >>> import pandas as pd
    >>> from segad.datasets.partitioned_parquet_dataset import PartitionedParquetDataset
    >>> ds = PartitionedParquetDataset("/tmp/feat", partition_cols=["dataset", "split_seed"],
    ...                                partition_types={"split_seed": "int64"})  # doctest: +SKIP
    >>> ds.save(pd.DataFrame({"dataset": ["demo"], "split_seed": [0], "x": [1.0]}))  # doctest: +SKIP
    >>> PartitionedParquetDataset("/tmp/feat", ["dataset", "split_seed"], lazy=True).load().read(
    ...     dataset="demo", split_seed=[0, 1])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from segad.datasets.atomic import not_written, read_parquet
from segad.storage.files import atomic_path

PART_FILE = "part-0.parquet"


class PartitionedTable:
    """Read access to a hive-partitioned table that opens only the partitions asked for."""

    def __init__(self, path: Path, partition_cols: list[str], partition_types: dict[str, str]) -> None:
        self.path = path
        self.partition_cols = partition_cols
        self.partition_types = partition_types

    def files(self, **equals: Any) -> list[Path]:
        """Partition files whose folder values match `equals` (column -> value or list of values,
        compared as text); columns not named match anything. Only folder names are listed."""
        unknown = set(equals) - set(self.partition_cols)
        if unknown:
            raise DatasetError(f"{self.path}: {sorted(unknown)} are not partition columns {self.partition_cols}")
        wanted = {c: {str(v) for v in (vs if isinstance(vs, (list, tuple, set)) else [vs])} for c, vs in equals.items()}
        folders = [self.path] if self.path.is_dir() else []
        for column in self.partition_cols:
            found = []
            for folder in folders:
                for child in sorted(folder.iterdir()):
                    name, sep, value = child.name.partition("=")
                    if not child.is_dir() or name != column or not sep:
                        continue
                    if column not in wanted or unquote(value) in wanted[column]:
                        found.append(child)
            folders = found
        return [folder / PART_FILE for folder in folders if (folder / PART_FILE).is_file()]

    def read(self, **equals: Any) -> pd.DataFrame:
        """The rows of the partitions matching `equals` (see `files`); an empty frame with the
        partition columns when none matches."""
        files = self.files(**equals)
        if not files:
            return pd.DataFrame(
                {c: pd.Series(dtype=self.partition_types.get(c, "object")) for c in self.partition_cols}
            )
        frames = []
        for file in files:
            frame = read_parquet(file)  # a damaged file's error names it
            for column, part in zip(self.partition_cols, file.parent.relative_to(self.path).parts):
                frame[column] = unquote(part.partition("=")[2])
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True, sort=False)
        for column, dtype in self.partition_types.items():
            table[column] = table[column].astype(dtype)
        return table


class PartitionedParquetDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A pandas DataFrame stored as hive-partitioned parquet under `path`."""

    def __init__(
        self,
        path: str,
        partition_cols: list[str],
        partition_types: dict[str, str] | None = None,
        lazy: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not partition_cols:
            raise DatasetError("PartitionedParquetDataset needs at least one partition column")
        self._path = Path(path)
        self._partition_cols = list(partition_cols)
        self._partition_types = dict(partition_types or {})
        self._lazy = bool(lazy)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "partition_cols": self._partition_cols}

    def _partition_dir(self, values: tuple) -> Path:
        folder = self._path
        for column, value in zip(self._partition_cols, values):
            text = str(value)
            if not text or text in (".", ".."):
                raise DatasetError(f"{self._path}: empty or invalid value {value!r} for partition column {column}")
            folder = folder / f"{column}={quote(text, safe='+-_.@')}"
        return folder

    def save(self, data: pd.DataFrame) -> None:
        missing = [c for c in self._partition_cols if c not in data.columns]
        if missing:
            raise DatasetError(f"{self._path}: data lacks partition columns {missing}")
        for values, part in data.groupby(self._partition_cols, sort=True, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            folder = self._partition_dir(values)
            try:
                with atomic_path(folder / PART_FILE) as temp:
                    part.drop(columns=self._partition_cols).reset_index(drop=True).to_parquet(temp, index=False)
            except OSError as error:
                raise not_written(folder / PART_FILE, error) from error

    def load(self) -> pd.DataFrame | PartitionedTable:  # type: ignore[override]
        """Every partition as one DataFrame; with ``lazy`` a `PartitionedTable` to read from."""
        if not self._exists():
            raise DatasetError(f"{self._path}: no partitions ({PART_FILE} files) found")
        table = PartitionedTable(self._path, self._partition_cols, self._partition_types)
        return table if self._lazy else table.read()

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.rglob(PART_FILE))
