"""External maps: .npy/.npz/.tif folders read into the map store; broken files fail naming the file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from segad.datasets.map_store_dataset import DetectorStoreDataset, MapStoreDataset
from segad.detection.config import DetectorConfigError, DetectorParams
from segad.detection.external import (
    SOURCE_COLUMNS,
    ExternalConfig,
    ExternalMapError,
    compute_external_maps,
    is_external,
    read_map,
    resize_map,
)
from segad.detection.stage import MAP_INDEX_COLUMNS
from segad.pipelines.anomaly_maps import create_pipeline
from segad.storage.map_store import MapStore

SIZE = 8
IDS = ["part/train/good/0.png", "part/train/good/1.png", "part/test/bad/2.png", "part/test/good/3.png"]


def _tables(root):
    """An image index of 4 images (images on disk are not read by the external kind) and one split."""
    index = pd.DataFrame(
        {"image_id": IDS, "path": [str(root / "data" / i) for i in IDS], "label": [0, 0, 1, 0], "category": "part"}
    )
    splits = pd.DataFrame({"image_id": IDS, "split_seed": 0, "role": ["detector_train", "brf_train", "test", "test"]})
    return index, splits


def _maps(size=SIZE):
    rng = np.random.default_rng(0)
    return {i: rng.random((size, size)).astype(np.float32) * (k + 1) for k, i in enumerate(IDS)}


def _write(folder, maps, suffix):
    for image_id, array in maps.items():
        path = (folder / image_id).with_suffix(suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".npy":
            np.save(path, array)
        elif suffix == ".npz":
            np.savez(path, anomaly_map=array, other=np.zeros(3))
        else:
            Image.fromarray(array).save(path)  # mode F
    return folder


def _run(tmp_path, folder, **settings):
    index, splits = _tables(tmp_path)
    config = ExternalConfig.from_dict("external", {"folder": str(folder), **settings})
    return compute_external_maps(index, splits, None, config, SIZE, MapStore(tmp_path / "store"))


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".tif"])
def test_a_folder_of_maps_fills_the_store_and_map_index(tmp_path, suffix):
    maps = _maps()
    folder = _write(tmp_path / "maps", maps, suffix)
    index, stats = _run(tmp_path, folder)
    assert list(index.columns) == [*MAP_INDEX_COLUMNS, *SOURCE_COLUMNS]
    needed = IDS[1:]  # brf_train and test images; the detector_train image needs no map
    assert sorted(index["image_id"]) == sorted(needed) and (index["detector"] == "external").all()
    store = MapStore(tmp_path / "store")
    for row in index.itertuples():
        np.testing.assert_array_equal(store.read(row.map_key), maps[row.image_id])
        assert row.max_score == pytest.approx(float(maps[row.image_id].max()))
    assert (index[["height", "width", "source_height", "source_width"]] == SIZE).all().all()
    assert stats.maps_computed == 3 and stats.models_fitted == 0
    # a second run reuses the stored maps; changing one map changes the key (cache invalidated)
    again, stats = _run(tmp_path, folder)
    pd.testing.assert_frame_equal(index, again)
    assert stats.maps_cached == 3 and stats.maps_computed == 0
    maps[IDS[2]] = maps[IDS[2]] + 1
    _write(folder, {IDS[2]: maps[IDS[2]]}, suffix)
    changed, _ = _run(tmp_path, folder)
    assert changed["model_key"].iloc[0] != index["model_key"].iloc[0]
    row = changed[changed["image_id"] == IDS[2]].iloc[0]
    np.testing.assert_array_equal(store.read(row["map_key"]), maps[IDS[2]])


def test_npz_without_anomaly_map_key_gives_its_first_array_and_shapes_are_squeezed(tmp_path):
    first = np.arange(12, dtype=np.float64).reshape(1, 3, 4)
    np.savez(tmp_path / "a.npz", first, np.zeros(2))
    assert read_map(tmp_path / "a.npz").shape == (3, 4) and read_map(tmp_path / "a.npz").dtype == np.float32
    np.save(tmp_path / "b.npy", np.ones((3, 4, 1), np.int16))
    np.testing.assert_array_equal(read_map(tmp_path / "b.npy"), np.ones((3, 4), np.float32))
    Image.fromarray(np.full((3, 4), 700, np.uint16)).save(tmp_path / "c.tiff")
    np.testing.assert_array_equal(read_map(tmp_path / "c.tiff"), np.full((3, 4), 700, np.float32))


def test_maps_of_another_size_are_resized_bilinearly_and_their_size_recorded(tmp_path):
    maps = {i: np.tile(np.linspace(0, 1, 16, dtype=np.float32), (12, 1)) for i in IDS}  # (12, 16) ramp
    index, _ = _run(tmp_path, _write(tmp_path / "maps", maps, ".npy"))
    assert (index["source_height"] == 12).all() and (index["source_width"] == 16).all()
    assert (index[["height", "width"]] == SIZE).all().all()
    stored = MapStore(tmp_path / "store").read(index["map_key"].iloc[0])
    np.testing.assert_allclose(stored, resize_map(maps[IDS[1]], SIZE))
    # bilinear, half-pixel centres (align_corners=False): output column j samples source x = 2j + 0.5
    np.testing.assert_allclose(stored, np.tile((2 * np.arange(SIZE) + 0.5) / 15, (SIZE, 1)), rtol=1e-6)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", r"no anomaly map \(looked for .*3.npy"),
        ("corrupt", "3.npy: unreadable or corrupt map file"),
        ("nan", "3.npy: 1 non-finite values"),
        ("inf", "3.npy: 1 non-finite values"),
        ("shape", r"3.npy: map shape \(2, 8, 8\); expected"),
        ("empty", r"3.npy: empty map, shape \(0, 8\)"),
        ("text", "3.npy: map dtype <U1 is not a real number type"),
    ],
)
def test_a_broken_map_fails_naming_the_file(tmp_path, breakage, message):
    folder = _write(tmp_path / "maps", _maps(), ".npy")
    path = folder / "part" / "test" / "good" / "3.npy"
    broken = {
        "nan": np.where(np.eye(SIZE) * np.arange(SIZE) == 1, np.nan, 0.0),
        "inf": np.where(np.eye(SIZE) * np.arange(SIZE) == 1, np.inf, 0.0),
        "shape": np.zeros((2, SIZE, SIZE)),
        "empty": np.zeros((0, SIZE)),
        "text": np.array(["a"]),
    }
    if breakage == "missing":
        path.unlink()
    elif breakage == "corrupt":
        path.write_bytes(path.read_bytes()[:60])
    else:
        np.save(path, broken[breakage])
    with pytest.raises(ExternalMapError, match=message) as error:
        _run(tmp_path, folder)
    assert str(path) in str(error.value)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # PIL on the garbage TIFF
def test_a_corrupt_tiff_or_npz_and_an_ambiguous_folder_are_refused(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ExternalMapError, match="x.tif: unreadable or corrupt"):
        read_map(tmp_path / "x.tif")
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.tif")
    with pytest.raises(ExternalMapError, match="rgb.tif: TIFF mode 'RGB'"):
        read_map(tmp_path / "rgb.tif")
    (tmp_path / "y.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(ExternalMapError, match="y.npz: unreadable or corrupt"):
        read_map(tmp_path / "y.npz")
    folder = _write(_write(tmp_path / "maps", _maps(), ".npy"), _maps(), ".npz")
    with pytest.raises(ExternalMapError, match="several maps .*set the detector's `suffix`"):
        _run(tmp_path, folder)
    index, _ = _run(tmp_path, folder, suffix="npz")
    assert len(index) == 3


def test_settings_are_checked():
    assert is_external("external", {}) and is_external("reference", {"kind": "external"})
    assert not is_external("padim", {}) and not is_external("external", {"kind": "padim"})
    with pytest.raises(DetectorConfigError, match="`folder`.*is required"):
        ExternalConfig.from_dict("external", {})
    with pytest.raises(DetectorConfigError, match="/no/such/maps: no such folder"):
        ExternalConfig.from_dict("external", {"folder": "/no/such/maps"})
    with pytest.raises(DetectorConfigError, match="unknown settings"):
        ExternalConfig.from_dict("external", {"folder": "/", "weights": "hub"})
    with pytest.raises(DetectorConfigError, match="suffix must be one of"):
        ExternalConfig.from_dict("external", {"folder": "/", "suffix": ".png"})


def test_the_anomaly_maps_pipeline_runs_an_external_detector(tmp_path):
    maps = _maps()
    folder = _write(tmp_path / "maps", maps, ".npy")
    index, splits = _tables(tmp_path)
    catalog = DataCatalog(
        {
            "image_index": MemoryDataset(index),
            "splits": MemoryDataset(splits),
            "synthetic_index": MemoryDataset(pd.DataFrame(columns=["image_id", "split_seed", "path"])),
            "params:anomaly_maps.reference": MemoryDataset(DetectorParams(kind="external", folder=str(folder))),
            "params:image_size": MemoryDataset(SIZE),
            "params:device": MemoryDataset("cpu"),
            "reference.map_store": MapStoreDataset(str(tmp_path / "store")),
            "reference.detector_store": DetectorStoreDataset(str(tmp_path / "models")),
            "reference.map_index": MemoryDataset(),
        }
    )
    SequentialRunner().run(create_pipeline(["reference"]), catalog)
    map_index = catalog.load("reference.map_index")
    assert sorted(map_index["image_id"]) == sorted(IDS[1:]) and (map_index["detector"] == "reference").all()
    store = MapStore(tmp_path / "store")
    for row in map_index.itertuples():
        np.testing.assert_array_equal(store.read(row.map_key), maps[row.image_id])
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())  # nothing fitted
