"""Supervised SuperSimpleNet in the map stage: cross-fitting plan (no leak), maps + pred_score, cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segad.detection.supervised_config import SupervisedConfig, SupervisedConfigError
from segad.detection.supervised_stage import FULL, INDEX_COLUMNS, compute_supervised_maps, plan_supervised
from segad.storage.map_store import MapStore

SIZE = 64
CONFIG = SupervisedConfig.from_dict(
    {
        "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"]},
        "weights": "packaged:efficientnet_lite0",
        "trainer": {"max_epochs": 1, "max_steps": 1},
        "train_batch_size": 4,
        "cross_fit_folds": 2,
    }
)
# role per image: (detector_train goods, brf_train goods, brf_train bads, test goods, test bads)
LAYOUT = {"detector_train": (4, 0), "brf_train": (2, 3), "test": (2, 2)}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage")
    rng = np.random.default_rng(1)
    rows, roles = [], []
    for role, (n_good, n_bad) in LAYOUT.items():
        for label, n in ((0, n_good), (1, n_bad)):
            for i in range(n):
                pixels = rng.integers(90, 110, size=(SIZE, SIZE, 3)).astype(np.uint8)
                mask_path = None
                if label:
                    pixels[20:36, 20:36] = 255
                    if i < 2:  # the third bad image has no mask: label-only under masks: auto
                        mask = np.zeros((SIZE, SIZE), np.uint8)
                        mask[20:36, 20:36] = 255
                        mask_path = str(folder / f"{role}_{label}_{i}_mask.png")
                        Image.fromarray(mask).save(mask_path)
                path = str(folder / f"{role}_{label}_{i}.png")
                Image.fromarray(pixels).save(path)
                image_id = f"{role}_{label}_{i}"
                rows.append(
                    {"image_id": image_id, "path": path, "label": label, "category": "c", "mask_path": mask_path}
                )
                roles.append({"image_id": image_id, "split_seed": 0, "role": role})
    return pd.DataFrame(rows), pd.DataFrame(roles), folder


def test_plan_never_scores_a_row_with_a_model_that_saw_it(tables):
    index, splits, _ = tables
    plan = plan_supervised(index, splits, None, CONFIG, SIZE)
    assert sorted(f.fold for f in plan) == [FULL, 0, 1]  # K fold models + the full one
    paths = index.set_index("image_id")["path"]
    brf_bad = set(index.loc[index["image_id"].str.startswith("brf_train_1"), "path"])
    scored = {}
    for fit in plan:
        trained = {i.path for i in fit.items}
        assert trained >= set(index.loc[index["image_id"].str.startswith("detector_train"), "path"])
        assert not trained & {paths[i] for i, _ in fit.rows}
        for row in fit.rows:
            assert row not in scored
            scored[row] = fit.fold
        if fit.fold == FULL:
            assert {i.path for i in fit.items if i.label == 1} == brf_bad
            assert {i for i, _ in fit.rows} == set(splits.loc[splits["role"] == "test", "image_id"])
        else:
            assert 0 < sum(i.label == 1 for i in fit.items) < len(brf_bad)
    assert set(scored) == {(i, 0) for i in splits.loc[splits["role"] != "detector_train", "image_id"]}
    with_mask = [i for f in plan for i in f.items if i.label == 1 and i.mask_path]
    assert with_mask and all(os.path.isfile(i.mask_path) for i in with_mask)
    assert len({f.key for f in plan}) == 3


def test_fewer_than_two_bad_images_is_a_clear_error(tables):
    index, splits, _ = tables
    fewer = splits[~splits["image_id"].isin(["brf_train_1_1", "brf_train_1_2"])]
    with pytest.raises(SupervisedConfigError, match="cross-fitting needs >= 2"):
        plan_supervised(index, fewer, None, CONFIG, SIZE)


def test_maps_and_scores_are_stored_and_reused(tables):
    index, splits, folder = tables
    store, models = MapStore(folder / "maps"), folder / "models"
    first, stats = compute_supervised_maps(index, splits, None, CONFIG, SIZE, "cpu", store, models)
    assert list(first.columns) == list(INDEX_COLUMNS)
    assert stats.models_fitted == 3 and stats.maps_computed == len(first) == 9
    assert first["pred_score"].between(0, 1).all() and (first["height"] == SIZE).all()
    full = next(f.key for f in plan_supervised(index, splits, None, CONFIG, SIZE) if f.fold == FULL)
    assert set(first.loc[first["image_id"].str.startswith("test"), "model_key"]) == {full}
    again, stats = compute_supervised_maps(index, splits, None, CONFIG, SIZE, "cpu", store, models)
    assert stats.models_fitted == 0 and stats.maps_computed == 0 and stats.maps_cached == 9
    pd.testing.assert_frame_equal(first, again)


def test_conf_block_is_valid_and_offline():
    import yaml

    from segad.detection.supervised_config import NAME

    text = (Path(__file__).parents[2] / "conf/base/parameters_anomaly_maps.yml").read_text()
    block = yaml.safe_load(text)["anomaly_maps"][NAME]
    config = SupervisedConfig.from_dict(block)
    assert config.weights == "packaged:efficientnet_lite0" and config.architecture() == "tf_efficientnet_lite0"


def test_synthetic_rows_are_scored_by_fold_models_and_never_trained_on(tables):
    index, splits, folder = tables
    synthetic = pd.DataFrame(
        {
            "image_id": ["synthetic/0/a.png", "synthetic/0/b.png"],
            "split_seed": 0,
            "category": "c",
            "path": [str(folder / "syn_a.png"), str(folder / "syn_b.png")],
        }
    )
    plan = plan_supervised(index, splits, synthetic, CONFIG, SIZE)
    fold_of = {i: f.fold for f in plan for i, _ in f.rows}
    assert {fold_of[i] for i in synthetic["image_id"]} == {0, 1}  # dealt like brf_train rows
    assert not any(i.path in set(synthetic["path"]) for f in plan for i in f.items)
    real_bad = {i for i in fold_of if i.startswith("brf_train_1")}
    assert {fold_of[i] for i in real_bad} == {0, 1}  # each fold holds a real bad image
