"""The hive-partitioned table: atomic per-partition saves, and lazy reads that open only the
partitions asked for."""

from __future__ import annotations

from unittest import mock

import pandas as pd
import pytest
from kedro.io import DatasetError

from segad.datasets.partitioned_parquet_dataset import PartitionedParquetDataset, PartitionedTable

COLS = ["dataset", "split_seed"]


def _table(dataset: str, seeds: list[int], extra: str) -> pd.DataFrame:
    return pd.DataFrame({"dataset": dataset, "split_seed": seeds, extra: [float(s) for s in seeds]})


def test_lazy_read_opens_only_matching_partitions(tmp_path):
    eager = PartitionedParquetDataset(str(tmp_path), COLS, {"split_seed": "int64"})
    eager.save(_table("demo", [0, 1, 2], "seg0"))
    eager.save(_table("elpv", [0, 1], "seg5"))  # another run: other columns, other partitions
    table = PartitionedParquetDataset(str(tmp_path), COLS, {"split_seed": "int64"}, lazy=True).load()
    assert isinstance(table, PartitionedTable)
    with mock.patch("pandas.read_parquet", wraps=pd.read_parquet) as reads:
        rows = table.read(dataset="demo", split_seed=[0, 2])
    assert reads.call_count == 2  # the elpv partitions and seed 1 were never opened
    assert sorted(rows["split_seed"]) == [0, 2] and rows["split_seed"].dtype == "int64"
    assert "seg5" not in rows.columns
    assert table.read(dataset="nope").empty
    with pytest.raises(DatasetError, match="not partition columns"):
        table.read(category="x")
    full = eager.load()  # the eager load is the lazy read of everything
    assert len(full) == 5 and set(full.columns) == {"dataset", "split_seed", "seg0", "seg5"}


def test_values_with_special_characters_round_trip(tmp_path):
    ds = PartitionedParquetDataset(str(tmp_path), COLS, {"split_seed": "int64"}, lazy=True)
    ds.save(_table("a b/c", [3], "x"))
    assert ds.load().read(dataset="a b/c")["dataset"].tolist() == ["a b/c"]


def test_missing_table_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no partitions"):
        PartitionedParquetDataset(str(tmp_path / "none"), COLS, lazy=True).load()
