"""brf pipeline after the features pipeline on the tiny demo: models as XGBoost JSON, scores table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from segad.config import DatasetConfig
from segad.meta.brf import model_key, parse_model_key, select_run
from segad.meta.brf_params import BRFParams
from segad.pipelines.brf import create_pipeline

from .test_features import DETECTORS, project_config, run_features

FAST = {"n_estimators": 2, "num_parallel_tree": 5, "n_jobs": 1}


def _brf_catalog(tmp_path, features_catalog, index, params, brf_params):
    _, catalog_conf = project_config()
    conf = {}
    for name in ("brf_models", "scores", "brf_selection", "brf_store"):
        entry = dict(catalog_conf[name])
        key = "path" if "path" in entry else "filepath"
        entry[key] = str(tmp_path / entry[key])
        conf[name] = entry
    catalog = DataCatalog.from_config(conf)
    catalog["features"] = features_catalog.load("features")
    catalog["image_index"] = index
    catalog["params:brf"] = BRFParams(**brf_params)
    catalog["params:dataset"] = DatasetConfig(layout="demo", name="demo")
    catalog["params:seeds"] = [0, 1]
    catalog["params:benchmark"] = "high_shot"
    return catalog


@pytest.mark.slow
def test_brf_pipeline_fits_models_and_scores_test_rows(tiny_demo, tmp_path):
    features_catalog, index, splits, params = run_features(tiny_demo, tmp_path)
    brf_params = dict(params["brf"], model=dict(params["brf"]["model"], **FAST))
    catalog = _brf_catalog(tmp_path, features_catalog, index, params, brf_params)
    SequentialRunner().run(create_pipeline(DETECTORS), catalog)
    scores = catalog.load("scores")
    assert set(zip(scores.dataset, scores.benchmark)) == {("demo", "high_shot")}
    assert (tmp_path / "data/07_model_output/scores/dataset=demo/benchmark=high_shot/part-0.parquet").is_file()
    methods = {"patchcore", "padim", "patchcore+segad", "padim+segad", "padim+patchcore+segad"}
    methods |= {"classifier", "classifier+padim+patchcore+segad"}  # the classifier is on by default
    assert set(scores.method) == methods | {"selected"}
    evidence = catalog.load("brf_selection")
    assert set(evidence.method) == methods and evidence.chosen.sum() == 1
    chosen = evidence.loc[evidence.chosen, "method"].iloc[0]
    pick = scores[scores.method == chosen].set_index(["image_id", "split_seed"]).score
    got = scores[scores.method == "selected"].set_index(["image_id", "split_seed"]).score
    pd.testing.assert_series_equal(got.sort_index(), pick.sort_index())
    scores = scores[scores.method != "selected"]
    n_test = int((splits[splits.split_seed == 0].role == "test").sum())
    assert len(scores) == len(methods) * 2 * n_test
    assert scores.groupby(["method", "split_seed"]).image_id.nunique().eq(n_test).all()
    files = sorted(
        p.relative_to(tmp_path / "data/06_models/brf").as_posix()
        for p in (tmp_path / "data/06_models/brf").rglob("*.json")
    )
    assert files == sorted(
        f"demo/high_shot/demo/{m}/split_seed_{s}.json" for m in methods if m.endswith("segad") for s in (0, 1)
    )
    model_file = tmp_path / "data/06_models/brf/demo/high_shot/demo/padim+patchcore+segad/split_seed_0.json"
    assert "learner" in json.loads(model_file.read_text())  # XGBoost's JSON, not a pickle
    models = catalog.load("brf_models")
    model = models[model_key("demo", "high_shot", "demo", "padim+patchcore+segad", 0)]()
    names = model.get_booster().feature_names
    table = catalog.load("features").read()
    test = table[(table.split_seed == 0) & (table.role == "test")]
    got = scores[(scores.method == "padim+patchcore+segad") & (scores.split_seed == 0)].score.to_numpy()
    np.testing.assert_allclose(model.predict(test[names].astype(float), output_margin=True), got, rtol=1e-6)


@pytest.mark.slow
def test_a_rerun_on_the_same_features_fits_no_brf_and_a_changed_seed_refits_only_its_models(
    tiny_demo, tmp_path, caplog, monkeypatch
):
    features_catalog, index, _, params = run_features(tiny_demo, tmp_path)
    brf_params = dict(params["brf"], model=dict(params["brf"]["model"], **FAST))
    fits: list[int] = []
    from xgboost import XGBClassifier

    original = XGBClassifier.fit
    monkeypatch.setattr(XGBClassifier, "fit", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))

    def run(catalog) -> pd.DataFrame:
        fits.clear()
        SequentialRunner().run(create_pipeline(DETECTORS), catalog)
        return catalog.load("scores")

    table = features_catalog.load("features").read()
    # the selection's out-of-fold BRFs: k folds per SegAD method and seed (k lowered to the minority count)
    train = table[table.role == "brf_train"]
    assert train.category.nunique() == 1
    k = {
        seed: min(brf_params["selection"]["folds"], int((rows.label == 0).sum()), int((rows.label == 1).sum()))
        for seed, rows in train.groupby("split_seed")
    }
    first = run(_brf_catalog(tmp_path, features_catalog, index, params, brf_params))
    assert len(fits) == 8 + 4 * sum(k.values())  # 4 SegAD methods x 2 seeds, + their out-of-fold BRFs
    catalog = _brf_catalog(tmp_path, features_catalog, index, params, brf_params)
    with caplog.at_level("INFO"):
        second = run(catalog)
    assert fits == []  # the stage's BRFs and the selection's out-of-fold ones all come from the store
    assert any("0 fitted, 8 reused" in r.getMessage() for r in caplog.records)
    assert any(f"out-of-fold BRFs 0 fitted, {4 * sum(k.values())} reused" in r.getMessage() for r in caplog.records)
    pd.testing.assert_frame_equal(first, second)
    # one seed's rows change (a feature value of one brf_train row): only that seed's models refit
    row = table.index[(table.split_seed == 1) & (table.role == "brf_train")][0]
    table.loc[row, "patchcore__max"] += 1.0
    catalog = _brf_catalog(tmp_path, features_catalog, index, params, brf_params)
    catalog["features"] = table
    run(catalog)
    # the methods of seed 1 that read patchcore__max (padim+segad is reused): their model, and their
    # out-of-fold BRFs of the k - 1 folds that train on the changed row
    assert len(fits) == 3 + 3 * (k[1] - 1)


def test_select_run_refuses_missing_partitions(tiny_demo, tmp_path):
    features_catalog, index, _, _ = run_features(tiny_demo, tmp_path, seeds=(0,))
    table = features_catalog.load("features").read()
    with pytest.raises(ValueError, match=r"lack split_seed \[1\]"):
        select_run(table, index, "demo", [0, 1], DETECTORS, "high_shot")
    with pytest.raises(ValueError, match="detectors=patchcore"):
        select_run(table, index, "demo", [0], ["patchcore"], "high_shot")
    with pytest.raises(ValueError, match="benchmark=low_shot"):  # another regime's rows are not this run's
        select_run(table, index, "demo", [0], DETECTORS, "low_shot")


@pytest.mark.slow
def test_brf_runs_of_two_benchmarks_coexist(tiny_demo, tmp_path):
    """A one_class run beside a high_shot run of the same dataset: both models and scores stay."""
    features_catalog, index, _, params = run_features(tiny_demo, tmp_path)
    table = features_catalog.load("features").read()
    # the same rows relabelled as another regime's partitions (the features stage keys them so)
    features = pd.concat([table, table.assign(benchmark="one_class")], ignore_index=True)
    brf_params = dict(params["brf"], model=dict(params["brf"]["model"], **FAST))
    for benchmark in ("high_shot", "one_class"):
        catalog = _brf_catalog(tmp_path, features_catalog, index, params, brf_params)
        catalog["features"] = features
        catalog["params:benchmark"] = benchmark
        SequentialRunner().run(create_pipeline(DETECTORS), catalog)
    models = catalog.load("brf_models")
    regimes = {parse_model_key(k)[:2] for k in models}
    assert regimes == {("demo", "high_shot"), ("demo", "one_class")}
    per_regime = {r: sorted(k.split("/", 2)[2] for k in models if parse_model_key(k)[:2] == r) for r in regimes}
    assert per_regime[("demo", "high_shot")] == per_regime[("demo", "one_class")]
    scores = catalog.load("scores")
    assert set(scores.benchmark) == {"high_shot", "one_class"}
    counts = scores.groupby("benchmark").size()
    assert counts["high_shot"] == counts["one_class"]
    assert set(catalog.load("brf_selection").benchmark) == {"high_shot", "one_class"}
    assert not scores.duplicated(["dataset", "benchmark", "image_id", "split_seed", "method"]).any()


def test_model_key_round_trip():
    key = model_key("visa", "one_class", "pcb1", "padim+patchcore+segad", 3)
    assert key == "visa/one_class/pcb1/padim+patchcore+segad/split_seed_3"
    assert parse_model_key(key) == ("visa", "one_class", "pcb1", "padim+patchcore+segad", 3)
    with pytest.raises(ValueError, match="unexpected partition name"):
        parse_model_key("padim+segad/pcb1/split_seed_0")  # the old, regime-less key
