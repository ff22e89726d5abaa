"""segmentation, classifier and features pipelines, in STAGES order, on the tiny demo with maps written to a
real MapStore; catalog from conf/base."""

from __future__ import annotations

import dataclasses
import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from segad.columns import is_feature_column
from segad.config import DatasetConfig
from segad.ingestion.demo import write_demo
from segad.ingestion.layouts import build_index
from segad.ingestion.splits import SplitConfig, make_splits
from segad.meta.brf_params import BRFParams
from segad.meta.classifier import ClassifierConfig
from segad.pipelines.classifier import create_pipeline as classifier_pipeline
from segad.pipelines.features import create_pipeline
from segad.pipelines.segmentation import create_pipeline as segmentation_pipeline
from segad.schemas import SyntheticIndex
from segad.segments.features import FeatureConfig
from segad.segments.segment_maps import SegmentMapConfig
from segad.storage.images import read_image
from segad.storage.map_store import MapStore
from tests.conftest import CONF_DATASET_ID, TINY_DEMO

ROOT = Path(__file__).resolve().parents[2]
DETECTORS = ["patchcore", "padim"]
SIZE = 32


def project_config():
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env="local")
    return loader["parameters"], loader["catalog"]


def write_maps(index: pd.DataFrame, splits: pd.DataFrame, store_root: Path, synthetic=None) -> dict:
    """Fake raw maps (|gray - 0.5| per pixel, scaled per detector) in MapStores + map_index tables."""
    rows = splits[splits.role.isin(["brf_train", "test"])].merge(index[["image_id", "path"]], on="image_id")
    if synthetic is not None and len(synthetic):
        rows = pd.concat([rows, synthetic[["image_id", "split_seed", "path"]]], ignore_index=True)
    out = {}
    for k, detector in enumerate(DETECTORS):
        store = MapStore(store_root / detector)
        records = []
        for r in rows.itertuples():
            gray = read_image(r.path, size=SIZE).mean(axis=0)
            amap = (np.abs(gray - 0.5) * (10 + 90 * k)).astype(np.float32)
            key = f"m{k}/{zlib.crc32(r.image_id.encode())}"
            store.write(key, amap)
            records.append(
                {
                    "image_id": r.image_id,
                    "detector": detector,
                    "split_seed": r.split_seed,
                    "model_key": f"m{k}",
                    "map_key": key,
                    "max_score": float(amap.max()),
                    "height": SIZE,
                    "width": SIZE,
                }
            )
        out[f"{detector}.map_index"] = MemoryDataset(pd.DataFrame(records))
        out[f"{detector}.map_store"] = MemoryDataset(store, copy_mode="assign")
    return out


def run_features(tiny_demo, tmp_path, benchmark="high_shot", seeds=(0, 1), segmentation_params=None):
    params, catalog_conf = project_config()
    index, _ = build_index("demo", tiny_demo)
    splits = make_splits(index, SplitConfig(benchmark=benchmark, seeds=tuple(seeds)))
    datasets = {}
    for name in (
        "features",
        "segment_maps",
        "segmentation_overlays",
        "classifier_scores",
        "classifier_store",
        "classifier_models",
        "segmentation_selection",
        "brf_store",
    ):
        conf = dict(catalog_conf[name])
        for key in ("filepath", "path", "labels_folder"):
            if key in conf:
                conf[key] = str(tmp_path / conf[key])
        datasets[name] = conf
    catalog = DataCatalog.from_config(datasets)
    catalog["image_index"] = index
    catalog["splits"] = splits
    catalog["synthetic_index"] = SyntheticIndex.empty()
    segmentation = params["segmentation"]  # method null: the demo layout takes <root>/segmentation.png
    segmentation = {**segmentation, **(segmentation_params or {})}
    for key, value in {
        "segmentation": SegmentMapConfig(**segmentation),
        "image_size": SIZE,
        "classifier": ClassifierConfig(**params["classifier"]),
        "device": "cpu",
        "features": FeatureConfig(**params["features"]),
        "dataset": DatasetConfig(layout="demo", root=str(tiny_demo), name="demo"),
        "benchmark": benchmark,
        "brf": BRFParams(**params["brf"]),
    }.items():
        catalog[f"params:{key}"] = value
    for name, dataset in write_maps(index, splits, tmp_path / "maps").items():
        catalog[name] = dataset
    stages = segmentation_pipeline() + classifier_pipeline() + create_pipeline(DETECTORS)
    SequentialRunner().run(stages, catalog)
    return catalog, index, splits, params


@pytest.mark.slow
def test_features_pipeline_writes_partitioned_table(tiny_demo, tmp_path):
    catalog, index, splits, _ = run_features(tiny_demo, tmp_path)
    root = tmp_path / "data/04_feature/features"
    parts = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert parts == [
        f"dataset=demo/benchmark=high_shot/category=demo/detectors=padim+patchcore/split_seed={s}/part-0.parquet"
        for s in (0, 1)
    ]
    table = catalog.load("features").read()
    segment_maps = catalog.load("segment_maps")
    n_segments = segment_maps.n_segments["demo"]
    assert n_segments == 6 and segment_maps.sources["demo"] == str(tiny_demo / "segmentation.png")
    expected_rows = splits[splits.role.isin(["brf_train", "test"])]
    assert len(table) == len(expected_rows)
    feature_cols = [c for c in table.columns if is_feature_column(c)]
    # on by default: the classifier's score comes first, as g(I) in the paper's feature vector
    assert len(feature_cols) == 1 + 4 * 2 * n_segments + 2
    assert feature_cols[:2] == ["classifier__score", "seg0__patchcore__q995"] and feature_cols[-1] == "padim__max"
    assert table["split_seed"].dtype == "int64" and set(table["role"]) == {"brf_train", "test"}
    assert table["seg2__padim__mean"].notna().all() and (table["padim__max"] > table["patchcore__max"]).all()
    # the overlays of this dataset id (the catalog resolves ${dataset_id:} to conf/base's)
    overlays = list((tmp_path / f"data/08_reporting/dataset={CONF_DATASET_ID}/segmentation").glob("*.png"))
    assert len(overlays) == 4
    classifier_scores = catalog.load("classifier_scores")
    assert set(classifier_scores.split_seed) == {0, 1}
    keys = classifier_scores.groupby("split_seed")["model_key"].unique()
    assert all(len(k) == 1 for k in keys)  # one key per seed, naming its kept model
    for key in classifier_scores["model_key"].unique():
        assert (tmp_path / "data/06_models/classifier_models" / key / "model_0" / "detector.json").is_file()
    assert table["classifier__score"].notna().all()


@pytest.mark.slow
def test_features_pipeline_segments_unaligned_parts_per_image(tmp_path, caplog):
    """auto_select on the shifted demo picks auto_per_image; the catalog keeps the centres and the labels."""
    shifted = write_demo(
        tmp_path / "shifted",
        dataclasses.replace(TINY_DEMO, jitter_px=40.0, rotation_deg=180.0, scale_jitter=0.2),
    )
    with caplog.at_level(logging.INFO, logger="segad.segments.resolve"):
        catalog, index, splits, _ = run_features(
            shifted, tmp_path, seeds=(0,), segmentation_params={"method": "auto_select"}
        )
    assert "segmentation: category demo alignment" in caplog.text and "-> auto_per_image" in caplog.text
    segment_maps = catalog.load("segment_maps")  # read back from the .npz
    assert segment_maps.method == "auto_select" and not segment_maps.is_static("demo")
    assert segment_maps.alignment["demo"] < 0.6 and segment_maps.n_segments["demo"] == 4
    assert segment_maps.sources["demo"].startswith("auto_per_image (alignment ")
    assert list(segment_maps.alternatives["demo"]) == ["single", "auto", "auto_per_image"]
    # one seed's few brf_train rows: the out-of-fold choice ran and its table names one candidate
    evidence = catalog.load("segmentation_selection")
    assert evidence["chosen"].sum() == 1 and set(evidence["segmentation"]) == {"single", "auto", "auto_per_image"}
    # the segmentation stage draws every candidate, so the options can be compared by eye
    drawn = {p.stem.rsplit("__", 1)[1] for p in tmp_path.rglob("segmentation/*.png")}
    assert drawn == {"single", "auto", "auto_per_image"}
    stored = sorted((tmp_path / "data/04_feature/segment_labels").rglob("*.npz"))
    rows = splits[splits.role.isin(["brf_train", "test"])]
    assert len(stored) == rows.image_id.nunique()  # every image segmented once, kept on disk
    labels = segment_maps.labels_for("demo", rows.image_id.tolist()[:5])
    assert labels.shape == (5, SIZE, SIZE) and labels.max() < 4
    table = catalog.load("features").read()
    assert len(table) == len(rows) and "seg3__patchcore__q995" in table.columns
    before = {p: p.stat().st_mtime_ns for p in stored}
    run_features(shifted, tmp_path, seeds=(0,), segmentation_params={"method": "auto_select"})
    assert {p: p.stat().st_mtime_ns for p in stored} == before  # the second run read them back


def test_duckdb_reads_the_partitions(tiny_demo, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    run_features(tiny_demo, tmp_path, seeds=(0,))
    glob = str(tmp_path / "data/04_feature/features/**/*.parquet")
    n, seeds = duckdb.sql(
        f"select count(*), count(distinct split_seed) from read_parquet('{glob}', hive_partitioning=true) "
        "where dataset = 'demo' and role = 'test'"
    ).fetchall()[0]
    assert n == 15 and seeds == 1


def test_partitioned_dataset_replaces_only_saved_partitions(tmp_path):
    from segad.datasets.partitioned_parquet_dataset import PartitionedParquetDataset

    ds = PartitionedParquetDataset(
        str(tmp_path / "f"), partition_cols=["dataset", "split_seed"], partition_types={"split_seed": "int64"}
    )
    ds.save(pd.DataFrame({"dataset": ["demo", "demo", "vad"], "split_seed": [0, 1, 0], "x": [1.0, 2.0, 3.0]}))
    ds.save(pd.DataFrame({"dataset": ["demo"], "split_seed": [1], "x": [9.0], "seg7__padim__mean": [0.5]}))
    table = ds.load().sort_values(["dataset", "split_seed"]).reset_index(drop=True)
    assert table[["dataset", "split_seed", "x"]].values.tolist() == [
        ["demo", 0, 1.0],
        ["demo", 1, 9.0],
        ["vad", 0, 3.0],
    ]
    assert table["split_seed"].dtype == "int64" and table["seg7__padim__mean"].isna().sum() == 2
    assert not list((tmp_path / "f").rglob("*.tmp"))
