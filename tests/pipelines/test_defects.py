"""defects pipeline: synthetic images for one_class, a top-up share of them in the other regimes
(an empty table with the schema when that share is 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from PIL import Image

from segad.config import DatasetConfig
from segad.ingestion.defects import SYNTHETIC_COLUMNS, DefectConfig
from segad.ingestion.layouts import build_index
from segad.ingestion.splits import SplitConfig, make_splits
from segad.pipelines.defects import create_pipeline
from segad.segments.resolve import resolve_segmentation
from segad.segments.segment_maps import SegmentMapConfig
from segad.storage.images import read_image
from tests.conftest import PROJECT_ROOT

from .test_features import project_config


def _run(tiny_demo, tmp_path, benchmark, **defects):
    params, catalog_conf = project_config()
    index, _ = build_index("demo", tiny_demo)
    splits = make_splits(index, SplitConfig(benchmark=benchmark, seeds=(0, 1)))
    conf = {}
    for name in ("synthetic_index", "synthetic_images"):
        entry = dict(catalog_conf[name])
        key = "path" if "path" in entry else "filepath"
        entry[key] = str(tmp_path / entry[key])
        conf[name] = entry
    catalog = DataCatalog.from_config(conf)
    catalog["image_index"] = index
    catalog["splits"] = splits
    catalog["segment_maps"] = resolve_segmentation(
        SegmentMapConfig(method="static", path=str(tiny_demo / "segmentation.png")), ["demo"], 64
    )
    catalog["params:defects"] = DefectConfig(
        **dict(params["defects"], output_dir=str(tmp_path / params["defects"]["output_dir"]), **defects)
    )
    catalog["params:benchmark"] = benchmark
    # the dataset whose id the catalog's ${dataset_id:} gave (conf/base's): the node writes into its folder
    catalog["params:dataset"] = DatasetConfig(layout="demo", root=str(PROJECT_ROOT / "data" / "01_raw" / "demo"))
    SequentialRunner().run(create_pipeline([]), catalog)
    return catalog, index, splits


def test_one_class_writes_synthetic_images(tiny_demo, tmp_path):
    catalog, index, splits = _run(tiny_demo, tmp_path, "one_class")
    table = catalog.load("synthetic_index")
    assert list(table.columns) == list(SYNTHETIC_COLUMNS)
    n_sources = splits[splits.role == "brf_train"].merge(index, on="image_id").query("label == 0").shape[0]
    assert len(table) == n_sources and n_sources > 0
    assert set(table.defect_type) <= {"synthetic_blur", "synthetic_rectangle"}
    changed = 0
    for row in table.itertuples():
        assert Path(row.path).is_file(), row.path
        source = index.set_index("image_id").loc[row.source_image_id, "path"]
        changed += not np.array_equal(read_image(row.path), read_image(source))
        assert Image.open(row.path).size == Image.open(source).size
    assert changed == len(table)


def test_real_bad_regimes_get_the_top_up_share(tiny_demo, tmp_path):
    catalog, index, splits = _run(tiny_demo, tmp_path, "high_shot", top_up_share=0.5, top_up_below=None)
    table = catalog.load("synthetic_index")
    sources = splits[splits.role == "brf_train"].merge(index, on="image_id").query("label == 0")
    expected = sources.groupby(["split_seed", "category"]).size().map(lambda n: max(1, round(0.5 * n)))
    assert table.groupby(["split_seed", "category"]).size().to_dict() == expected.to_dict()
    assert set(table.role) == {"brf_train"} and set(table.label) == {1}
    assert all(Path(path).is_file() for path in table.path)


def test_no_top_up_gives_an_empty_table_with_schema(tiny_demo, tmp_path):
    catalog, _, _ = _run(tiny_demo, tmp_path, "high_shot", top_up_share=0.0)
    table = catalog.load("synthetic_index")
    assert list(table.columns) == list(SYNTHETIC_COLUMNS) and len(table) == 0


def test_no_top_up_where_real_bad_images_are_many(tiny_demo, tmp_path):
    catalog, _, _ = _run(tiny_demo, tmp_path, "high_shot", top_up_share=0.5, top_up_below=1)
    assert len(catalog.load("synthetic_index")) == 0
