"""bundle node: the BRF comes from this run's dataset and benchmark only; inputs are params: entries."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader

from segad.config import DatasetConfig
from segad.datasets.bundle_dataset import BundleDataset
from segad.meta.brf_params import BRFParams
from segad.pipelines.bundle import create_pipeline
from segad.pipelines.bundle.nodes import build_bundle
from segad.production.assemble import BundleOptions
from segad.versions import jsonable
from tests.conftest import PROJECT_ROOT

PARAMETERS = {
    "detectors": ["patchcore"],
    "seeds": [0],
    "dataset": DatasetConfig(layout="demo", name="demo"),
    "benchmark": "high_shot",
    "image_size": 64,
    "brf": BRFParams(),
    "bundle": BundleOptions(),
    "split": {},
    "defects": {},
    "anomaly_maps": {},
    "segmentation": {},
    "feature_params": {},
}


def test_bundle_refuses_another_regimes_model():
    """Only a one_class model exists: a high_shot run must not bundle it."""
    models = {
        "demo/one_class/demo/patchcore+segad/split_seed_0": lambda: pytest.fail("must not be read"),
        "visa/high_shot/demo/patchcore+segad/split_seed_0": lambda: pytest.fail("must not be read"),
    }
    index = pd.DataFrame({"image_id": ["a.png"], "category": ["demo"]})
    with pytest.raises(ValueError, match=r"no BRF model 'demo/high_shot/demo/patchcore\+segad/split_seed_0'"):
        build_bundle(None, index, None, None, models, **PARAMETERS)


def test_bundle_options_are_checked():
    index = pd.DataFrame({"image_id": ["a.png"], "category": ["demo"]})
    with pytest.raises(ValueError, match="split_seeds"):
        BundleOptions(**{"split_seeds": 1})
    with pytest.raises(ValueError, match="max_miss_rate"):
        BundleOptions(max_miss_rate=1.5)
    with pytest.raises(ValueError, match="bundle.split_seed 3 is not one of the run's seeds"):
        build_bundle(None, index, None, None, {}, **{**PARAMETERS, "bundle": BundleOptions(split_seed=3)})
    with pytest.raises(ValueError, match="names the classifier, but this run has no classifier scores"):
        build_bundle(None, index, None, None, {}, **{**PARAMETERS, "bundle": BundleOptions(detectors=["classifier"])})
    scores = pd.DataFrame({"image_id": ["a.png"], "split_seed": [0], "score": [0.1], "model_key": ["k"]})
    with pytest.raises(ValueError, match="must be at least one detector of this run"):
        build_bundle(
            None,
            index,
            None,
            None,
            {},
            **{**PARAMETERS, "bundle": BundleOptions(detectors=["classifier"])},
            classifier_scores=scores,
        )


def test_no_bundle_when_build_is_off(tmp_path):
    arguments, report = build_bundle(None, None, None, None, {}, **{**PARAMETERS, "bundle": BundleOptions(build=False)})
    assert arguments == {} and report == {"built": False, "reason": "bundle.build is false"}
    dataset = BundleDataset(str(tmp_path / "segad_bundle"))
    dataset.save(arguments)
    assert not (tmp_path / "segad_bundle").exists() and not dataset.exists()


def test_per_image_map_folders_are_refused_before_any_model_is_read(tmp_path):
    """A per_image folder has no map for new images: refused with the reason (auto_per_image is
    bundled: tests/test_bundle_per_image.py)."""
    from segad.segments.segment_maps import SegmentMaps

    maps = SegmentMaps(method="per_image", size=(64, 64), n_segments={"demo": 2}, folder=str(tmp_path))
    index = pd.DataFrame({"image_id": ["a.png"], "category": ["demo"]})
    models = {"demo/high_shot/demo/patchcore+segad/split_seed_0": lambda: pytest.fail("must not be read")}
    with pytest.raises(ValueError, match=r"category demo: segmentation method 'per_image' reads a map per image"):
        build_bundle(None, index, None, maps, models, **PARAMETERS)
    other_size = SegmentMaps(method="static", size=(32, 32), n_segments={"demo": 1}, static_maps={"demo": None})
    with pytest.raises(ValueError, match=r"segment maps at \(32, 32\), the run's image size is \(64, 64\)"):
        build_bundle(None, index, None, other_size, models, **PARAMETERS)


def test_the_node_reads_named_parameters_that_exist():
    """No whole `parameters` dict (it hides lineage in kedro-viz); every params: entry is configured."""
    (bundle_node,) = create_pipeline(["patchcore"]).nodes
    assert "parameters" not in bundle_node.inputs
    entries = [name.removeprefix("params:") for name in bundle_node.inputs if name.startswith("params:")]
    assert {"bundle", "dataset", "benchmark", "seeds", "image_size", "detectors", "brf"} <= set(entries)
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="local")
    assert set(entries) <= set(loader["parameters"])
    assert {"patchcore.map_index", "patchcore.detector_store"} <= set(bundle_node.inputs)


def test_the_manifest_records_the_parameters_the_node_gets(monkeypatch):
    import segad.pipelines.bundle.nodes as nodes

    seen = {}
    monkeypatch.setattr(nodes, "assemble_bundle", lambda *args, **kwargs: seen.update(kwargs) or ({}, {}))
    stores = {"patchcore__map_index": "index", "patchcore__detector_store": "store/patchcore"}
    nodes.build_bundle(None, None, None, None, {}, **PARAMETERS, **stores)
    recorded = {("features" if k == "feature_params" else k): v for k, v in PARAMETERS.items()}
    assert seen["recorded"] == jsonable(recorded)
    assert seen["recorded"]["bundle"]["max_miss_rate"] == 0.02  # typed blocks recorded as plain values
    assert seen["options"] == nodes.BundleOptions()
    assert (seen["dataset"], seen["benchmark"], seen["seeds"]) == (
        jsonable(DatasetConfig(layout="demo", name="demo")),
        "high_shot",
        [0],
    )


def test_the_bundle_records_the_evaluation_of_its_combination_and_refuses_an_unevaluated_one():
    from segad.production.assemble import evaluated_rows

    report = {"dataset": "demo", "benchmark": "high_shot", "category": "demo", "method": "patchcore+segad"}
    row = {**report, "split_seed": 0, "auroc": 0.9, "pg2": float("nan")}
    other = {**row, "method": "patchcore", "auroc": 0.8}
    metrics = pd.DataFrame([row, other, {**row, "split_seed": 1}])
    assert evaluated_rows(metrics, {**report, "split_seed": 0}) == [{**row, "pg2": None}]
    with pytest.raises(ValueError, match="no metrics of the bundled combination.*promoted only after"):
        evaluated_rows(metrics, {**report, "split_seed": 0, "method": "padim+segad"})
    with pytest.raises(ValueError, match="no metrics of the bundled combination"):
        evaluated_rows(pd.DataFrame(), {**report, "split_seed": 0})
