"""The BRF: paper settings, scale_pos_weight, margins as scores, method names, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from segad.columns import feature_columns
from segad.datasets.xgboost_model_dataset import XGBoostModelDataset
from segad.meta.brf import (
    BRFConfig,
    BRFTrainingError,
    brf_scores,
    category_columns,
    combination_members,
    default_combinations,
    fit_brf,
    make_brf,
    method_name,
    monotone_constraints,
    run_brf,
    scale_pos_weight,
    single_input_model,
)
from segad.meta.brf_params import BRFParams

ROOT = Path(__file__).resolve().parents[2]
SMALL = BRFConfig(n_estimators=3, num_parallel_tree=4, n_jobs=1)


def _data(n_good=30, n_bad=10, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_good, int), np.ones(n_bad, int)]
    X = rng.normal(size=(len(y), 4)) + y[:, None] * 1.5
    X[::7, 1] = np.nan  # missing values are allowed
    return X, y


PAPER = dict(
    n_estimators=10,
    num_parallel_tree=200,
    max_depth=5,
    learning_rate=0.3,
    objective="binary:logitraw",
    colsample_bynode=0.6,
    colsample_bytree=0.6,
    subsample=0.6,
    reg_alpha=1.0,
)


def test_paper_defaults_in_code_and_conf():
    params = make_brf(BRFConfig(), 3.0, seed=7).get_params()
    assert {k: params[k] for k in PAPER} == PAPER
    assert params["random_state"] == 7 and params["scale_pos_weight"] == 3.0
    assert BRFParams(preset="paper").settings == BRFConfig()
    visa = yaml.safe_load((ROOT / "conf/visa/parameters.yml").read_text())["brf"]
    assert visa["preset"] == "paper"  # the paper's protocol runs the paper's BRF


def test_the_default_preset_is_the_papers_forest_with_monotone_statistics():
    conf = yaml.safe_load((ROOT / "conf/base/parameters_brf.yml").read_text())["brf"]
    assert conf["preset"] == "guarded" and conf["model"] == {}
    settings = BRFParams(**conf).settings
    assert dataclasses.replace(settings, monotone=False) == BRFConfig()
    assert settings.monotone
    assert BRFParams(model={"max_depth": 2}).settings.max_depth == 2  # model settings go on top


def test_monotone_constraints_cover_the_anomaly_statistics_only():
    names = ["classifier__score", "seg0__padim__q995", "seg0__padim__skew", "seg0__padim__kurtosis"]
    names += ["seg0__padim__mean", "padim__max", "supersimplenet_supervised__score"]
    assert monotone_constraints(names) == dict(zip(names, [1, 1, 0, 0, 1, 1, 1], strict=True))


def test_a_monotone_brf_never_scores_a_larger_statistic_lower():
    """Noisy labels would teach the paper's forest dips; the monotone one stays non-decreasing in q995."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, 300)
    y = (x + rng.normal(0, 0.4, 300) > 0.8).astype(int)
    X = pd.DataFrame({"seg0__padim__q995": x, "seg0__padim__skew": rng.normal(size=300)})
    grid = pd.DataFrame({"seg0__padim__q995": np.linspace(0, 1, 101), "seg0__padim__skew": 0.0})
    monotone = brf_scores(fit_brf(X, y, dataclasses.replace(SMALL, monotone=True), seed=0), grid)
    assert np.all(np.diff(monotone) >= -1e-6)
    free = brf_scores(fit_brf(X, y, SMALL, seed=0), grid)
    assert np.any(np.diff(free) < -1e-6)  # the constraint is what makes the difference


def test_global_weight_offers_the_image_level_columns_to_more_trees():
    model = make_brf(BRFConfig(global_weight=8.0), 1.0, seed=0, names=["seg0__padim__q995", "padim__max"])
    np.testing.assert_array_equal(model.get_params()["feature_weights"], [1.0, 8.0])
    assert make_brf(BRFConfig(), 1.0, seed=0, names=["padim__max"]).get_params().get("feature_weights") is None


def test_fit_sets_scale_pos_weight_and_seed_from_training_rows():
    X, y = _data(n_good=30, n_bad=10)
    params = fit_brf(X, y, SMALL, seed=11).get_params()
    assert params["scale_pos_weight"] == pytest.approx(30 / 10) and params["random_state"] == 11


def test_scores_are_raw_margins_and_rank_bad_higher():
    X, y = _data(seed=1)
    model = fit_brf(X, y, SMALL, seed=0)
    scores = brf_scores(model, X)
    np.testing.assert_allclose(scores, model.predict_proba(X)[:, 1], rtol=1e-6)  # the reference's call
    assert (scores < 0).any() or (scores > 1).any()  # a margin, not a probability
    assert scores[y == 1].mean() > scores[y == 0].mean()


def test_an_array_gets_the_margins_the_model_gives_its_table(tmp_path):
    """An array goes to the booster directly; the margins equal `predict` on the named table, for a
    BRF, a single-input model and both reloaded from a file, one row and many, NaN cells included."""
    from xgboost import XGBClassifier

    X, y = _data(seed=2)
    table = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    table.iloc[3, 1] = np.nan
    models = [fit_brf(table, y, SMALL, seed=0), single_input_model("c0")]
    for i, model in enumerate(list(models)):  # as a bundle loads them (segad.production.bundle.load_brf)
        model.save_model(tmp_path / f"{i}.ubj")
        models.append(XGBClassifier())
        models[-1].load_model(tmp_path / f"{i}.ubj")
    for model in models:
        columns = list(model.get_booster().feature_names)
        expected = model.predict(table[columns], output_margin=True)
        rows = table[columns].to_numpy()
        np.testing.assert_array_equal(brf_scores(model, rows), expected)
        np.testing.assert_array_equal(brf_scores(model, rows[3:4]), expected[3:4])
        np.testing.assert_array_equal(brf_scores(model, table[columns]), expected)
    single = brf_scores(single_input_model("c0"), rows[:, :1])  # the column itself, as XGBoost's float32
    np.testing.assert_array_equal(single, rows[:, 0].astype(np.float32))


def test_same_seed_same_model_other_seed_differs():
    X, y = _data(seed=2)
    a = brf_scores(fit_brf(X, y, SMALL, seed=3), X)
    b = brf_scores(fit_brf(X, y, SMALL, seed=3), X)
    c = brf_scores(fit_brf(X, y, SMALL, seed=4), X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_missing_class_errors_name_the_context():
    X, y = _data()
    with pytest.raises(BRFTrainingError, match="no bad image.*split_seed 5"):
        fit_brf(X[y == 0], y[y == 0], SMALL, context="category 'c', split_seed 5")
    with pytest.raises(BRFTrainingError, match="no good image"):
        scale_pos_weight(np.ones(3))


def test_method_names_are_sorted_and_invertible():
    assert method_name(["patchcore", "padim"]) == "padim+patchcore+segad"
    assert combination_members("padim+patchcore+segad") == ["padim", "patchcore"]
    assert [method_name(c) for c in default_combinations(["patchcore", "padim"])] == [
        "patchcore+segad",
        "padim+segad",
        "padim+patchcore+segad",
    ]
    assert [method_name(c) for c in default_combinations(["patchcore"], classifier=True)] == [
        "patchcore+segad",
        "classifier+patchcore+segad",
    ]
    with pytest.raises(ValueError):
        combination_members("patchcore")


def test_category_columns_keep_all_nan_statistics_and_drop_missing_segments():
    cols = feature_columns(["padim"], 3)
    rows = pd.DataFrame(np.ones((4, len(cols))), columns=cols)
    rows[["seg1__padim__skew", "seg1__padim__kurtosis"]] = np.nan  # a 1-pixel segment: kept
    rows[[c for c in cols if c.startswith("seg2__")]] = np.nan  # a segment this category lacks
    kept = category_columns(cols, rows)
    assert "seg1__padim__skew" in kept and "seg1__padim__kurtosis" in kept
    assert not any(c.startswith("seg2__") for c in kept)
    assert kept == [c for c in cols if not c.startswith("seg2__")]


def _feature_table(seeds=(0, 1)):
    rng = np.random.default_rng(0)
    cols = feature_columns(["padim", "patchcore"], 2)
    frames = []
    for seed in seeds:
        n = 40
        label = np.r_[np.zeros(20), np.ones(10), np.zeros(5), np.ones(5)].astype(int)
        role = ["brf_train"] * 30 + ["test"] * 10
        X = rng.normal(size=(n, len(cols))) + label[:, None]
        frame = pd.DataFrame(X, columns=cols)
        frame.insert(0, "image_id", [f"img{i}" for i in range(n)])
        frame.insert(1, "split_seed", seed)
        frame.insert(2, "category", "c")
        frame.insert(3, "role", role)
        frame.insert(4, "label", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_run_brf_models_and_scores(tmp_path):
    table = _feature_table()
    models, scores = run_brf(table, ["patchcore", "padim"], SMALL)
    assert sorted(models) == sorted(
        f"{m}/c/split_seed_{s}" for m in ("patchcore+segad", "padim+segad", "padim+patchcore+segad") for s in (0, 1)
    )
    assert list(scores.columns) == ["image_id", "split_seed", "method", "score"]
    assert set(scores["method"]) == {"patchcore", "padim", "patchcore+segad", "padim+segad", "padim+patchcore+segad"}
    assert len(scores) == 5 * 2 * 10  # methods x seeds x test rows
    alone = scores[(scores.method == "padim") & (scores.split_seed == 1)]
    test = table[(table.role == "test") & (table.split_seed == 1)]
    np.testing.assert_allclose(alone["score"], test["padim__max"])
    # saved as XGBoost JSON and reloaded with the same margins and feature names
    key = "padim+patchcore+segad/c/split_seed_1"
    ds = XGBoostModelDataset(str(tmp_path / "m.json"))
    ds.save(models[key])
    loaded = ds.load()
    names = loaded.get_booster().feature_names
    assert names == [c for c in feature_columns(["padim", "patchcore"], 2)]
    segad = scores[(scores.method == "padim+patchcore+segad") & (scores.split_seed == 1)]
    np.testing.assert_allclose(brf_scores(loaded, test[names]), segad["score"], rtol=1e-6)
    assert (tmp_path / "m.json").read_text().startswith("{")


def test_run_brf_scores_the_classifier_alone_and_with_the_detectors():
    table = _feature_table(seeds=(0,))
    table["classifier__score"] = np.random.default_rng(1).normal(size=len(table)) + table["label"]
    models, scores = run_brf(table, ["patchcore", "padim"], SMALL)
    assert "classifier+padim+patchcore+segad/c/split_seed_0" in models
    alone = scores[scores.method == "classifier"]
    np.testing.assert_array_equal(alone["score"], table.loc[table.role == "test", "classifier__score"])
    assert "classifier__score" in models["classifier+padim+patchcore+segad/c/split_seed_0"].get_booster().feature_names
    assert "classifier__score" not in models["padim+patchcore+segad/c/split_seed_0"].get_booster().feature_names


def test_run_brf_without_bad_rows_names_seed():
    table = _feature_table(seeds=(3,))
    table = table[(table.label == 0) | (table.role == "test")]
    with pytest.raises(BRFTrainingError, match="split_seed 3"):
        run_brf(table, ["padim"], SMALL)


def test_xgboost_dataset_rejects_other_formats(tmp_path):
    from kedro.io import DatasetError

    with pytest.raises(DatasetError, match=".json or .ubj"):
        XGBoostModelDataset(str(tmp_path / "m.pkl")).save(fit_brf(*_data(), SMALL, seed=0))
    X, y = _data()
    ubj = XGBoostModelDataset(str(tmp_path / "m.ubj"))
    model = fit_brf(X, y, SMALL, seed=0)
    ubj.save(model)
    np.testing.assert_allclose(brf_scores(ubj.load(), X), brf_scores(model, X), rtol=1e-6)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json"):
        XGBoostModelDataset(str(tmp_path / "bad.json")).load()


def test_run_brf_scores_a_detector_with_its_own_score_alone_and_uses_it_in_segad():
    table = _feature_table(seeds=(0,))
    table["padim__score"] = np.random.default_rng(2).normal(size=len(table)) + table["label"]
    models, scores = run_brf(table, ["patchcore", "padim"], SMALL)
    alone = scores[scores.method == "padim"]
    np.testing.assert_array_equal(alone["score"], table.loc[table.role == "test", "padim__score"])
    np.testing.assert_array_equal(
        scores.loc[scores.method == "patchcore", "score"], table.loc[table.role == "test", "patchcore__max"]
    )
    assert "padim__score" in models["padim+segad/c/split_seed_0"].get_booster().feature_names
    assert "padim__score" not in models["patchcore+segad/c/split_seed_0"].get_booster().feature_names


def test_default_combinations_with_a_scored_baseline_add_segad_without_it():
    combos = [method_name(c) for c in default_combinations(["patchcore", "padim", "ssn"], scored=["ssn"])]
    assert combos == [
        "patchcore+segad",
        "padim+segad",
        "ssn+segad",
        "padim+patchcore+ssn+segad",
        "padim+patchcore+segad",
    ]
    assert [method_name(c) for c in default_combinations(["padim", "ssn"], scored=["ssn"])] == [
        "padim+segad",
        "ssn+segad",
        "padim+ssn+segad",
    ]


def test_a_saved_brf_is_verified_against_its_recorded_checksum(tmp_path):
    """A BRF model file is read only when it matches the SHA-256 recorded beside it when saved."""
    from kedro.io import DatasetError

    X, y = _data()
    path = tmp_path / "brf" / "split_seed_0.json"
    dataset = XGBoostModelDataset(str(path))
    dataset.save(fit_brf(X, y, SMALL, seed=0))
    assert (tmp_path / "brf" / "split_seed_0.json.sha256").is_file()
    dataset.load()
    text = path.read_text()
    path.write_text(text.replace('"', "'", 1))  # one changed byte, still a file
    with pytest.raises(DatasetError, match=rf"{path}: checksum mismatch"):
        dataset.load()
    path.write_text(text)
    (tmp_path / "brf" / "split_seed_0.json.sha256").unlink()
    with pytest.raises(DatasetError, match=rf"{path}: no recorded checksum"):
        dataset.load()
