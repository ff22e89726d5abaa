"""The paper's VisA protocol (conf/visa) on a tiny prepared VisA folder: split, anomaly maps, features.

Settings come from the visa environment itself (split, seeds, benchmark, segment counts); only the
dataset paths and the detector are made tiny (PaDiM on 32 px images).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro.validation import ParameterValidator
from kedro_datasets.pandas import ParquetDataset
from PIL import Image

from segad.columns import is_feature_column, parse_column
from segad.datasets.map_store_dataset import DetectorStoreDataset, MapStoreDataset
from segad.ingestion.layouts import build_index
from segad.meta.brf import category_columns
from segad.pipelines.anomaly_maps import create_pipeline as anomaly_maps
from segad.pipelines.classifier import create_pipeline as classifier
from segad.pipelines.features import create_pipeline as features
from segad.pipelines.segmentation import create_pipeline as segmentation
from segad.pipelines.split import create_pipeline as split
from segad.schemas import SyntheticIndex
from tests.conftest import write_png

CONF = Path(__file__).resolve().parents[2] / "conf"
SIZE = 32
N_GOOD, N_TEST_GOOD, N_TEST_BAD = 20, 2, 12
SEGMENTS = {"candle": 2, "pcb1": 6}  # conf/visa: default 2, pcb1 6
PADIM = {
    "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 8},
    "weights": "packaged:efficientnet_lite0",
    "train_batch_size": 32,
    "batch_size": 32,
}


def visa_folder(root: Path) -> tuple[Path, Path]:
    """<cat>/train/good, <cat>/test/{good,bad} and per-image segment maps (vertical bands); every
    image's content is distinct (detectors and maps are cached by content hash)."""
    images, maps = root / "visa", root / "segment_maps"
    for shift, (category, n_segments) in enumerate(SEGMENTS.items()):
        for part, n, value in (
            ("train/good", N_GOOD, 100),
            ("test/good", N_TEST_GOOD, 105),
            ("test/bad", N_TEST_BAD, 160),
        ):
            value += 20 * shift
            for i in range(n):
                image_id = f"{category}/{part}/{i:03d}"
                write_png(images / f"{image_id}.png", (SIZE, SIZE), value)
                bands = np.repeat(np.arange(SIZE) * n_segments // SIZE, SIZE).reshape(SIZE, SIZE).T
                (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(bands.astype(np.uint8)).save(maps / f"{image_id}.png")
    return images, maps


def visa_params(images: Path, maps: Path) -> dict:
    params = OmegaConfigLoader(str(CONF), base_env="base", default_run_env="local", env="visa")["parameters"]
    params["dataset"] = {**params["dataset"], "root": str(images)}
    params["segmentation"] = {**params["segmentation"], "folder": str(maps)}
    params["anomaly_maps"] = {"padim": PADIM}
    params["image_size"], params["device"] = SIZE, "cpu"
    return params


def run(params: dict, tmp_path: Path, index: pd.DataFrame) -> DataCatalog:
    catalog = DataCatalog(
        {
            "image_index": MemoryDataset(index),
            "synthetic_index": MemoryDataset(SyntheticIndex.empty()),
            "padim.map_store": MapStoreDataset(str(tmp_path / "maps")),
            "padim.detector_store": DetectorStoreDataset(str(tmp_path / "models")),
            "splits": ParquetDataset(filepath=str(tmp_path / "splits.parquet")),  # kept: intermediate
            "padim.map_index": ParquetDataset(filepath=str(tmp_path / "map_index.parquet")),
            "features": MemoryDataset(),
            "classifier_store": MapStoreDataset(str(tmp_path / "classifier_scores")),
            "classifier_models": DetectorStoreDataset(str(tmp_path / "classifier_models")),
            "segmentation_selection": MemoryDataset(),
            "brf_store": MemoryDataset(None),
        }
    )
    stages = (
        split()
        + anomaly_maps(["padim"])
        + segmentation().only_nodes("build_segmentation")
        + classifier()
        + features(["padim"])
    )
    typed = ParameterValidator({"visa": stages}).validate_raw_params(params)  # as a Kedro session types the blocks
    for key in (
        "dataset",
        "benchmark",
        "seeds",
        "split",
        "image_size",
        "device",
        "segmentation",
        "classifier",
        "features",
        "defects",  # the split checks the rows later stages need (bundle calibration, synthetic top-up)
        "bundle",
        "brf",
    ):
        catalog[f"params:{key}"] = typed[key]
    catalog["params:anomaly_maps.padim"] = typed["anomaly_maps"]["padim"]
    SequentialRunner().run(stages, catalog)
    return catalog


def fit_log(caplog) -> list[str]:
    """The map stage's summary lines for padim ("padim: N models fitted ..."), not the per-fit start lines."""
    return [m for r in caplog.records if (m := r.getMessage()).startswith("padim: ") and "models fitted" in m]


@pytest.mark.slow
def test_visa_env_fixed_split_one_detector_per_category(tmp_path, caplog):
    images, maps = visa_folder(tmp_path)
    params = visa_params(images, maps)
    assert params["seeds"] == [333, 576, 725, 823, 831, 902, 226, 598, 874, 589]
    assert params["benchmark"] == "visa_supervised" and params["split"]["good_split"] == "fixed"
    index, _ = build_index("visa", images)
    caplog.set_level(logging.INFO)
    catalog = run(params, tmp_path, index)

    splits = catalog.load("splits").merge(index[["image_id", "category", "split", "label"]], on="image_id")
    goods = splits[(splits.split == "train") & (splits.label == 0)]
    counts = goods.groupby(["split_seed", "category", "role"]).size()
    assert counts.xs("detector_train", level="role").eq(18).all()  # 90 % of 20
    assert counts.xs("brf_train", level="role").eq(2).all()
    brf_goods = goods[goods.role == "brf_train"].groupby("split_seed").image_id.apply(frozenset)
    assert brf_goods.nunique() == 1 and len(brf_goods) == 10  # identical over the 10 seeds
    moved = splits[(splits.split == "test") & (splits.role == "brf_train")]
    assert (moved.label == 1).all() and moved.groupby(["split_seed", "category"]).size().eq(10).all()
    moved_sets = moved.groupby(["category", "split_seed"]).image_id.apply(frozenset)
    assert moved_sets.groupby(level="category").nunique().gt(1).all()  # the moved bad images vary per seed

    map_index = catalog.load("padim.map_index").merge(index[["image_id", "category"]], on="image_id")
    assert map_index.groupby("category").model_key.nunique().eq(1).all()
    assert fit_log(caplog)[0].startswith("padim: 2 models fitted")  # one per category, not 20
    caplog.clear()
    run(params, tmp_path, index)  # same split again: both detectors and all maps come from the cache
    assert (
        fit_log(caplog)[0].startswith("padim: 0 models fitted") and ", 2 reused; 0 maps computed" in fit_log(caplog)[0]
    )

    table = catalog.load("features")  # a MemoryDataset here: the DataFrame itself
    columns = [c for c in table.columns if is_feature_column(c)]
    for category, n_segments in SEGMENTS.items():
        kept = category_columns(columns, table[table.category == category])
        assert {parse_column(c).segment for c in kept} - {None} == set(range(n_segments))
    assert columns[-1] == "padim__max"  # segment-major order for the largest count, maximum last
