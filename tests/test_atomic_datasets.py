"""segad.datasets.atomic: a failed save (disk full, any error) leaves the previous complete file.

Each catalog type is saved once, then saved again while the disk "fills" halfway through the
write: faked (the file system's write raises ENOSPC after part of the bytes), and for real on a
4 MB tmpfs (root only; skipped with the reason where mounting is not permitted).
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fsspec.implementations.local import LocalFileOpener  # noqa: E402
from kedro.io import DataCatalog, DatasetError  # noqa: E402
from PIL import Image  # noqa: E402

from segad.datasets.atomic import (  # noqa: E402
    CSVDataset,
    ImageDataset,
    JSONDataset,
    MatplotlibDataset,
    ParquetDataset,
    PartitionedDataset,
    TextDataset,
)
from segad.datasets.partitioned_parquet_dataset import PartitionedParquetDataset  # noqa: E402


def _figure(n: int):
    figure = plt.figure(figsize=(2 + n, 2))
    figure.gca().plot(np.arange(10 * n))
    return figure


def _table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    return pd.DataFrame({"image_id": [f"img{i}" for i in range(100 * n)], "score": rng.normal(size=100 * n)})


# name -> (dataset factory at a folder, data of "version" n, file(s) the save writes)
CASES: dict[str, tuple[Callable[[Path], object], Callable[[int], object]]] = {
    "parquet": (lambda d: ParquetDataset(filepath=str(d / "t.parquet")), _table),
    "csv": (lambda d: CSVDataset(filepath=str(d / "m.csv"), save_args={"index": False}), _table),
    "text": (lambda d: TextDataset(filepath=str(d / "report.md")), lambda n: "# report\n" + "line\n" * 500 * n),
    "json": (lambda d: JSONDataset(filepath=str(d / "op.json")), lambda n: {"values": list(range(500 * n))}),
    "png": (lambda d: MatplotlibDataset(filepath=str(d / "roc.png")), _figure),
    "png_folder": (
        lambda d: MatplotlibDataset(filepath=str(d / "plots"), overwrite=True, save_args={"format": "png"}),
        lambda n: {f"p{i}.png": _figure(n) for i in range(min(n, 4) + 1)},
    ),
    "image": (
        lambda d: ImageDataset(filepath=str(d / "x.png")),
        lambda n: Image.fromarray(np.random.default_rng(n).integers(0, 255, (64 * n, 64, 3), dtype=np.uint8)),
    ),
    "partitioned": (
        lambda d: PartitionedDataset(
            path=str(d / "by_regime"),
            dataset={"type": "segad.datasets.atomic.CSVDataset", "save_args": {"index": False}},
            filename_suffix=".csv",
            overwrite=True,
        ),
        lambda n: {f"demo/high_shot/run{i}": _table(n) for i in range(n + 1)},
    ),
    "hive": (
        lambda d: PartitionedParquetDataset(str(d / "features"), partition_cols=["dataset"]),
        lambda n: _table(n).assign(dataset=[f"d{i % 2}" for i in range(100 * n)]),
    ),
}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _disk_fills_halfway(monkeypatch) -> None:
    """Every local write puts half its bytes on disk, then fails as a full disk does."""
    real = LocalFileOpener.write

    def write(self, data, *args, **kwargs):
        real(self, data[: max(1, len(data) // 2)])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalFileOpener, "write", write)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _parquet_that_fills_the_disk(pd.DataFrame.to_parquet))


def _parquet_that_fills_the_disk(real):
    """pandas writes a path (the hive table) with its own open: half the bytes, then ENOSPC."""

    def to_parquet(self, path, *args, **kwargs):
        if not isinstance(path, (str, Path)):
            return real(self, path, *args, **kwargs)
        import io

        buffer = io.BytesIO()
        real(self, buffer, *args, **kwargs)
        Path(path).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    return to_parquet


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_full_disk_midway_leaves_the_previous_complete_files(case, tmp_path, monkeypatch):
    make, data = CASES[case]
    dataset = make(tmp_path)
    dataset.save(data(1))
    before = _files(tmp_path)
    assert before

    _disk_fills_halfway(monkeypatch)
    with pytest.raises((DatasetError, OSError)) as caught:
        make(tmp_path).save(data(2))
    plt.close("all")

    message = str(caught.value)
    assert "No space left on device" in message
    assert str(tmp_path) in message  # the error names the file (or, for a folder, the file being written)
    assert _files(tmp_path) == before  # old bytes kept, no partial or temporary file left
    assert not [p for p in tmp_path.rglob(".*")], "a temporary file or folder was left"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_save_replaces_the_old_version_whole(case, tmp_path):
    make, data = CASES[case]
    make(tmp_path).save(data(1))
    make(tmp_path).save(data(2))
    plt.close("all")
    if case in ("parquet", "csv", "text", "json"):
        loaded = make(tmp_path).load()
        expected = data(2)
        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(loaded, expected)
        else:
            assert loaded == expected
    if case == "png_folder":  # overwrite: the folder holds exactly the new figures
        assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert not [p for p in tmp_path.rglob(".*")]


def test_a_damaged_parquet_file_is_named_in_the_error(tmp_path):
    path = tmp_path / "02_intermediate" / "image_index.parquet"
    path.parent.mkdir()
    path.write_bytes(b"\0" * 8192)  # what an in-place write left after a full disk
    with pytest.raises(DatasetError, match=rf"^{path}: not a parquet file or damaged \(ArrowInvalid: .*magic bytes"):
        ParquetDataset(filepath=str(path)).load()
    table = PartitionedParquetDataset(str(tmp_path / "features"), ["dataset"], lazy=True)
    table.save(pd.DataFrame({"dataset": ["a"], "x": [1.0]}))
    part = tmp_path / "features" / "dataset=a" / "part-0.parquet"
    part.write_bytes(b"PAR1garbage")
    with pytest.raises(DatasetError, match=rf"^{part}: not a parquet file or damaged"):
        table.load().read()


def test_the_project_catalog_uses_the_atomic_types():
    """Every file-writing entry of conf/base is one of segad's datasets, none a stock in-place writer."""
    import yaml

    from tests.conftest import PROJECT_ROOT

    stock = []
    for file in sorted((PROJECT_ROOT / "conf" / "base").glob("catalog*.yml")):
        for name, entry in yaml.safe_load(file.read_text()).items():
            types = [entry.get("type", "")]
            inner = entry.get("dataset")
            types.append(inner.get("type", "") if isinstance(inner, dict) else inner or "")
            stock += [f"{file.name}:{name}: {t}" for t in types if t and not t.startswith("segad.")]
    assert stock == []


def test_catalog_config_round_trips_with_the_atomic_type(tmp_path):
    catalog = DataCatalog.from_config(
        {"t": {"type": "segad.datasets.atomic.ParquetDataset", "filepath": str(tmp_path / "t.parquet")}}
    )
    config = catalog.to_config()[0]["t"]
    assert config["type"] == "segad.datasets.atomic.ParquetDataset"
    assert config["filepath"] == str(tmp_path / "t.parquet")


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 4 MB tmpfs at tmp_path/fs (needs root; skipped where mounting is not permitted)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): root is needed")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write zeros into `folder/filler.bin` until the file system is full, then free `leave` bytes."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        block = b"\0" * 4096
        try:
            while True:
                handle.write(block)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    if leave:
        with open(filler, "r+b") as handle:
            handle.truncate(max(0, filler.stat().st_size - leave))
    return filler


def test_a_real_full_filesystem_keeps_every_previous_output(small_filesystem):
    """Several catalog datasets on a real 4 MB file system; it fills; each save fails naming its
    file and the cause, and every previously complete output is unchanged."""
    datasets = {case: make(small_filesystem) for case, (make, _) in CASES.items()}
    for case, dataset in datasets.items():
        dataset.save(CASES[case][1](1))
    plt.close("all")
    before = _files(small_filesystem)
    filler = fill(small_filesystem, leave=8192)  # room for a temporary file's first bytes, not a table

    for case, dataset in datasets.items():
        with pytest.raises((DatasetError, OSError)) as caught:
            dataset.save(CASES[case][1](20))
        plt.close("all")
        assert "No space left on device" in str(caught.value), case
        assert str(small_filesystem) in str(caught.value), case

    filler.unlink()
    assert _files(small_filesystem) == before
    assert not [p for p in small_filesystem.rglob(".*")]


def test_datasets_travel_pickled_and_stay_atomic(tmp_path, monkeypatch):
    """Dask and parallel runners send the catalog to workers: the copy must still write atomically."""
    import pickle

    dataset = pickle.loads(pickle.dumps(ParquetDataset(filepath=str(tmp_path / "t.parquet"))))
    dataset.save(_table(1))
    before = _files(tmp_path)
    _disk_fills_halfway(monkeypatch)
    with pytest.raises(DatasetError, match="No space left on device"):
        dataset.save(_table(2))
    assert _files(tmp_path) == before
