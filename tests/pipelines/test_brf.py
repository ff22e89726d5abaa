"""brf pipeline after the features pipeline on the tiny demo: models as XGBoost JSON, scores table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from segad.pipelines.brf import create_pipeline
from segad.pipelines.brf.nodes import select_run

from .test_features import DETECTORS, project_config, run_features

FAST = {"n_estimators": 2, "num_parallel_tree": 5, "n_jobs": 1}


def _brf_catalog(tmp_path, features_catalog, index, params, brf_params):
    _, catalog_conf = project_config()
    conf = {}
    for name in ("brf_models", "scores"):
        entry = dict(catalog_conf[name])
        key = "path" if "path" in entry else "filepath"
        entry[key] = str(tmp_path / entry[key])
        conf[name] = entry
    catalog = DataCatalog.from_config(conf)
    catalog["features"] = features_catalog.load("features")
    catalog["image_index"] = index
    catalog["params:brf"] = brf_params
    catalog["params:dataset"] = {"layout": "demo"}
    catalog["params:seeds"] = [0, 1]
    catalog["params:benchmark"] = "high_shot"
    return catalog


def test_brf_pipeline_fits_models_and_scores_test_rows(tiny_demo, tmp_path):
    features_catalog, index, splits, params = run_features(tiny_demo, tmp_path)
    brf_params = dict(params["brf"], model=dict(params["brf"]["model"], **FAST))
    catalog = _brf_catalog(tmp_path, features_catalog, index, params, brf_params)
    SequentialRunner().run(create_pipeline(DETECTORS), catalog)
    scores = catalog.load("scores")
    methods = {"patchcore", "padim", "patchcore+segad", "padim+segad", "padim+patchcore+segad"}
    assert set(scores.method) == methods
    n_test = int((splits[splits.split_seed == 0].role == "test").sum())
    assert len(scores) == len(methods) * 2 * n_test
    assert scores.groupby(["method", "split_seed"]).image_id.nunique().eq(n_test).all()
    files = sorted(p.relative_to(tmp_path / "data/06_models/brf").as_posix()
                   for p in (tmp_path / "data/06_models/brf").rglob("*.json"))
    assert files == sorted(f"{m}/demo/split_seed_{s}.json" for m in methods if m.endswith("segad") for s in (0, 1))
    model_file = tmp_path / "data/06_models/brf/padim+patchcore+segad/demo/split_seed_0.json"
    assert "learner" in json.loads(model_file.read_text())  # XGBoost's JSON, not a pickle
    models = catalog.load("brf_models")
    model = models["padim+patchcore+segad/demo/split_seed_0"]()
    names = model.get_booster().feature_names
    table = catalog.load("features")
    test = table[(table.split_seed == 0) & (table.role == "test")]
    got = scores[(scores.method == "padim+patchcore+segad") & (scores.split_seed == 0)].score.to_numpy()
    np.testing.assert_allclose(model.predict(test[names].astype(float), output_margin=True), got, rtol=1e-6)


def test_select_run_refuses_missing_partitions(tiny_demo, tmp_path):
    features_catalog, index, _, _ = run_features(tiny_demo, tmp_path, seeds=(0,))
    table = features_catalog.load("features")
    with pytest.raises(ValueError, match=r"lack split_seed \[1\]"):
        select_run(table, index, {"layout": "demo"}, [0, 1], DETECTORS, "high_shot")
    with pytest.raises(ValueError, match="detectors=patchcore"):
        select_run(table, index, {"layout": "demo"}, [0], ["patchcore"], "high_shot")
    with pytest.raises(ValueError, match="benchmark=low_shot"):  # another regime's rows are not this run's
        select_run(table, index, {"layout": "demo"}, [0], DETECTORS, "low_shot")
