"""Kedro dataset for a hive-partitioned parquet table (the feature table).

``pandas.ParquetDataset`` of kedro-datasets 9.x refuses ``partition_cols``; this small dataset
writes one file per partition, ``<path>/<col1>=<v1>/.../<colN>=<vN>/part-0.parquet``, each written
to a temporary file and ``os.replace``d (atomic). Saving replaces only the partitions present in
the data, so tables of other datasets, categories, detector sets or seeds stay cached beside them.
Loading reads every partition (schemas unified by column name: categories may have different
segment counts) and restores the partition columns with the types given in `partition_types`.
DuckDB and pandas read the folder directly (docs/features.md).

Example:
    >>> import pandas as pd
    >>> from segad.datasets.partitioned_parquet_dataset import PartitionedParquetDataset
    >>> ds = PartitionedParquetDataset("/tmp/feat", partition_cols=["dataset", "split_seed"],
    ...                                partition_types={"split_seed": "int64"})  # doctest: +SKIP
    >>> ds.save(pd.DataFrame({"dataset": ["demo"], "split_seed": [0], "x": [1.0]}))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

PART_FILE = "part-0.parquet"



class PartitionedParquetDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A pandas DataFrame stored as hive-partitioned parquet under `path`."""

    def __init__(
        self,
        path: str,
        partition_cols: list[str],
        partition_types: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not partition_cols:
            raise DatasetError("PartitionedParquetDataset needs at least one partition column")
        self._path = Path(path)
        self._partition_cols = list(partition_cols)
        self._partition_types = dict(partition_types or {})
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
            folder.mkdir(parents=True, exist_ok=True)
            temp = folder / f".{PART_FILE}.{uuid.uuid4().hex}.tmp"  # plain open: the umask applies
            try:
                part.drop(columns=self._partition_cols).reset_index(drop=True).to_parquet(temp, index=False)
                os.replace(temp, folder / PART_FILE)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise

    def load(self) -> pd.DataFrame:
        files = sorted(self._path.rglob(PART_FILE)) if self._path.is_dir() else []
        if not files:
            raise DatasetError(f"{self._path}: no partitions ({PART_FILE} files) found")
        frames = []
        for file in files:
            relative = file.parent.relative_to(self._path).parts
            if len(relative) != len(self._partition_cols):
                raise DatasetError(f"{file}: not at partition depth {len(self._partition_cols)}")
            frame = pd.read_parquet(file)
            for column, part in zip(self._partition_cols, relative):
                name, _, value = part.partition("=")
                if name != column:
                    raise DatasetError(f"{file}: expected partition folder {column}=..., found {part}")
                frame[column] = unquote(value)
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True, sort=False)
        for column, dtype in self._partition_types.items():
            table[column] = table[column].astype(dtype)
        return table

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.rglob(PART_FILE))
