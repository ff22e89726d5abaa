"""The anomaly_maps pipeline: one namespaced copy per detector, wired through the catalog."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from segad.datasets.map_store_dataset import DetectorStoreDataset, MapStoreDataset
from segad.detection.config import SUPPORTED_DETECTORS, DetectorConfig, DetectorParams
from segad.pipelines.anomaly_maps import create_pipeline
from segad.storage.map_store import MapStore
from tests.conftest import CONF_DATASET_ID

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_one_namespaced_node_per_detector_with_shared_inputs():
    pipe = create_pipeline(["patchcore", "padim"])
    assert sorted(n.name for n in pipe.nodes) == ["padim.make_anomaly_maps", "patchcore.make_anomaly_maps"]
    node = next(n for n in pipe.nodes if n.namespace == "patchcore")
    assert node.inputs == [
        "image_index",
        "splits",
        "synthetic_index",
        "params:anomaly_maps.patchcore",
        "params:image_size",
        "params:device",
        "patchcore.map_store",
        "patchcore.detector_store",
    ]
    assert node.outputs == ["patchcore.map_index"]
    assert create_pipeline([]).nodes == []
    with pytest.raises(ValueError, match="twice"):
        create_pipeline(["padim", "padim"])


def test_every_detector_has_valid_parameters_and_catalog_entries():
    loader = OmegaConfigLoader(str(CONF), base_env="base", default_run_env="local", env="base")
    params = loader["parameters"]
    for name in SUPPORTED_DETECTORS:
        DetectorConfig.from_dict(name, params["anomaly_maps"][name])
    for name in params["detectors"]:
        assert params["anomaly_maps"][name]["weights"] == "packaged:efficientnet_lite0"  # offline default
    catalog = DataCatalog.from_config(loader["catalog"])
    assert isinstance(catalog.get("patchcore.map_store"), MapStoreDataset)
    assert isinstance(catalog.get("padim.detector_store"), DetectorStoreDataset)
    # one map index per dataset id (${dataset_id:}, segad.config_loader)
    assert f"data/03_primary/padim/dataset={CONF_DATASET_ID}/map_index.parquet" in str(
        catalog.get("padim.map_index")._describe()
    )


def test_pipeline_runs_and_reads_writes_through_catalog_handles(tmp_path):
    paths = []
    rng = np.random.default_rng(0)
    for i in range(5):
        path = tmp_path / "raw" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(90, 110, (32, 32, 3)).astype(np.uint8)).save(path)
        paths.append(str(path))
    index = pd.DataFrame(
        {"image_id": [f"i{i}" for i in range(5)], "path": paths, "label": [0, 0, 0, 0, 1], "category": "part"}
    )
    splits = pd.DataFrame(
        {
            "image_id": index["image_id"],
            "split_seed": 0,
            "role": ["detector_train", "detector_train", "detector_train", "brf_train", "test"],
        }
    )
    padim = {
        "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 16},
        "weights": "packaged:efficientnet_lite0",
    }
    catalog = DataCatalog(
        {
            "image_index": MemoryDataset(index),
            "splits": MemoryDataset(splits),
            "synthetic_index": MemoryDataset(pd.DataFrame(columns=["image_id", "split_seed", "path"])),
            "params:anomaly_maps.padim": MemoryDataset(DetectorParams(**padim)),
            "params:image_size": MemoryDataset(32),
            "params:device": MemoryDataset("cpu"),
            "padim.map_store": MapStoreDataset(str(tmp_path / "maps")),
            "padim.detector_store": DetectorStoreDataset(str(tmp_path / "models")),
            "padim.map_index": MemoryDataset(),
        }
    )
    SequentialRunner().run(create_pipeline(["padim"]), catalog)
    map_index = catalog.load("padim.map_index")
    assert sorted(map_index["image_id"]) == ["i3", "i4"]
    store = MapStore(tmp_path / "maps")
    assert all(store.read(k).shape == (32, 32) for k in map_index["map_key"])
    model_key = map_index["model_key"].iloc[0]
    assert (tmp_path / "models" / model_key / "state_dict.pt").is_file()
