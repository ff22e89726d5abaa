"""The map stage run (PaDiM): map index schema, resume, damaged maps, one model per split and category."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch

from segad.detection.stage import compute_anomaly_maps
from segad.storage.map_store import MapStore
from tests.detection.tiny import SIZE, config_for, write_images


def _tables(root, test_seed=10):
    train = write_images(root / "train", 6, 0)
    test = write_images(root / f"test{test_seed}", 3, test_seed, bright=True)
    rows = [(f"train/{i}", p, 0) for i, p in enumerate(train)] + [(f"test/{i}", p, 1) for i, p in enumerate(test)]
    index = pd.DataFrame(rows, columns=["image_id", "path", "label"]).assign(category="part")
    split = []
    for seed in (0, 1):
        for i in range(6):
            role = "detector_train" if i < 4 else "brf_train"
            split.append((f"train/{i}", seed, role))
        split += [(f"test/{i}", seed, "test") for i in range(3)]
    return index, pd.DataFrame(split, columns=["image_id", "split_seed", "role"])


def _run(root, index, splits, images, synthetic=None):
    return compute_anomaly_maps(
        index,
        splits,
        synthetic,
        config_for("padim", images),
        SIZE,
        "cpu",
        MapStore(root / "maps"),
        root / "models",
        progress=False,
    )


def test_map_index_schema_resume_and_damaged_maps(tmp_path, images):
    index, splits = _tables(tmp_path)
    first, stats = _run(tmp_path, index, splits, images)
    assert list(first.columns) == [
        "image_id",
        "detector",
        "split_seed",
        "model_key",
        "map_key",
        "max_score",
        "height",
        "width",
    ]
    assert len(first) == 2 * (2 + 3)  # brf_train + test rows per seed
    assert first["model_key"].nunique() == 1 and stats.models_fitted == 1  # same detector_train set
    assert stats.maps_computed == 5  # maps are shared by seeds that share the model
    store = MapStore(tmp_path / "maps")
    for row in first.itertuples():
        assert row.max_score == pytest.approx(float(store.read(row.map_key).max()))
    assert (first[["height", "width"]] == SIZE).all().all()
    assert str(first["split_seed"].dtype) == "int64" and str(first["height"].dtype) == "int32"
    # second run: everything from the cache, files untouched
    mtimes = {k: store.path(k).stat().st_mtime_ns for k in first["map_key"]}
    second, stats = _run(tmp_path, index, splits, images)
    assert stats.maps_computed == 0 and stats.models_fitted == 0 and stats.maps_cached == 5
    pd.testing.assert_frame_equal(first, second)
    assert {k: store.path(k).stat().st_mtime_ns for k in first["map_key"]} == mtimes
    # a damaged (truncated) map is detected and recomputed, nothing else
    damaged = first["map_key"].iloc[0]
    store.path(damaged).write_bytes(store.path(damaged).read_bytes()[:100])
    third, stats = _run(tmp_path, index, splits, images)
    assert stats.maps_computed == 1 and stats.models_fitted == 0 and stats.maps_cached == 4
    pd.testing.assert_frame_equal(first, third)


def test_another_seed_split_gets_its_own_model(tmp_path, images):
    index, splits = _tables(tmp_path)
    swap = (splits["split_seed"] == 1) & splits["image_id"].isin(["train/0", "train/4"])
    splits.loc[swap, "role"] = splits.loc[swap, "role"].map(
        {"detector_train": "brf_train", "brf_train": "detector_train"}
    )
    map_index, stats = _run(tmp_path, index, splits, images)
    assert stats.models_fitted == 2 and map_index.groupby("split_seed")["model_key"].nunique().tolist() == [1, 1]
    assert map_index["model_key"].nunique() == 2


def test_each_category_gets_its_own_detector(tmp_path, images):
    """One-class detectors model one product: a category's maps come from a detector fitted on that
    category's detector_train goods only, never on several categories mixed."""
    index, splits = _tables(tmp_path)
    other_train = write_images(tmp_path / "other", 6, 42)
    other = index.assign(image_id="other/" + index["image_id"], category="other")
    other.loc[other["image_id"].str.startswith("other/train/"), "path"] = other_train
    index = pd.concat([index, other], ignore_index=True)
    splits = pd.concat([splits, splits.assign(image_id="other/" + splits["image_id"])], ignore_index=True)
    map_index, stats = _run(tmp_path, index, splits, images)
    assert stats.models_fitted == 2
    per_category = map_index.assign(category=map_index["image_id"].str.startswith("other/")).groupby("category")
    keys = per_category["model_key"].unique()
    assert all(len(k) == 1 for k in keys) and keys.iloc[0][0] != keys.iloc[1][0]
    no_train = splits[~(splits["image_id"].str.startswith("other/") & (splits["role"] == "detector_train"))]
    with pytest.raises(ValueError, match="category 'other' has no detector_train image"):
        _run(tmp_path / "again", index, no_train, images)


def test_test_images_cannot_influence_the_fitted_detector(tmp_path, images):
    index_a, splits = _tables(tmp_path / "a", test_seed=10)
    index_b, _ = _tables(tmp_path / "b", test_seed=99)  # other test images, same training images
    map_a, _ = _run(tmp_path / "a", index_a, splits, images)
    map_b, _ = _run(tmp_path / "b", index_b, splits, images)
    key = map_a["model_key"].iloc[0]
    assert map_b["model_key"].iloc[0] == key
    state_a = torch.load(tmp_path / "a" / "models" / key / "state_dict.pt", weights_only=True)
    state_b = torch.load(tmp_path / "b" / "models" / key / "state_dict.pt", weights_only=True)
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        torch.testing.assert_close(state_a[name], state_b[name], rtol=0, atol=0)
    # and the training maps of images both runs share are identical
    shared = map_a[map_a["image_id"].str.startswith("train/")]
    np.testing.assert_array_equal(
        shared["max_score"].to_numpy(), map_b[map_b["image_id"].str.startswith("train/")]["max_score"].to_numpy()
    )


def test_bad_images_in_detector_train_are_refused(tmp_path, images):
    index, splits = _tables(tmp_path)
    splits.loc[splits["image_id"] == "test/0", "role"] = "detector_train"
    with pytest.raises(ValueError, match="detector_train holds bad images"):
        _run(tmp_path, index, splits, images)


def test_synthetic_images_get_maps_under_their_seed(tmp_path, images):
    index, splits = _tables(tmp_path)
    synthetic_paths = write_images(tmp_path / "synthetic", 2, 7, bright=True)
    synthetic = pd.DataFrame(
        {
            "image_id": ["synthetic/0/a__0.png", "synthetic/1/b__0.png"],
            "split_seed": [0, 1],
            "path": synthetic_paths,
            "category": "part",
        }
    )
    map_index, _ = _run(tmp_path, index, splits, images, synthetic)
    rows = map_index[map_index["image_id"].str.startswith("synthetic/")]
    assert rows[["image_id", "split_seed"]].values.tolist() == [
        ["synthetic/0/a__0.png", 0],
        ["synthetic/1/b__0.png", 1],
    ]


def test_efficient_ad_quantile_images_are_the_good_brf_train_images_of_the_seed(tmp_path):
    from segad.detection.config import DetectorConfig
    from segad.detection.stage import plan_models

    index, splits = _tables(tmp_path)
    index.loc[index["image_id"] == "train/5", "label"] = 1  # a bad brf_train image is never used
    hashes = {p: f"h{i}" for i, p in enumerate(index["path"])}
    settings = {"train_batch_size": 1, "pretrained": False}
    reference = DetectorConfig.from_dict("efficient_ad", {**settings, "quantiles_from": "brf_train"})
    plan = plan_models(index, splits, reference, 256, hashes)
    path = dict(zip(index["image_id"], index["path"], strict=True))
    assert plan[("part", 0)].quantile_paths == [path["train/4"]]
    assert plan[("part", 0)].train_paths == [path[f"train/{i}"] for i in range(4)]
    default = plan_models(index, splits, DetectorConfig.from_dict("efficient_ad", settings), 256, hashes)
    assert default[("part", 0)].quantile_paths is None and default[("part", 0)].key != plan[("part", 0)].key
    # the quantile images are part of the key: another held-out image, another model
    changed = plan_models(index, splits, reference, 256, {**hashes, path["train/4"]: "other"})
    assert changed[("part", 0)].key != plan[("part", 0)].key
    assert (
        plan_models(
            index, splits, DetectorConfig.from_dict("efficient_ad", settings), 256, {**hashes, path["train/4"]: "other"}
        )[("part", 0)].key
        == default[("part", 0)].key
    )
    no_goods = splits[~((splits["image_id"] == "train/4") & (splits["split_seed"] == 1))]
    with pytest.raises(ValueError, match="category 'part' has no good brf_train image for split_seed 1"):
        plan_models(index, no_goods, reference, 256, hashes)


@pytest.mark.parametrize("sharded", [False, True], ids=["loop", "sharded"])
def test_a_damaged_saved_detector_is_refitted_even_when_every_map_is_cached(tmp_path, images, caplog, sharded):
    """Nothing unverified is reused: a saved detector whose state_dict.pt no longer matches its
    recorded checksum is refitted (the log says so), although no map is missing, so the bundle
    never copies a damaged file."""
    from segad.detection.distribute import ShardOptions
    from segad.storage.persistence import model_folder_problem

    index, splits = _tables(tmp_path)
    shards = ShardOptions(chunk_size=2) if sharded else None
    run = dict(progress=False, shards=shards)
    args = (index, splits, None, config_for("padim", images), SIZE, "cpu", MapStore(tmp_path / "maps"))
    first, _ = compute_anomaly_maps(*args, tmp_path / "models", **run)
    folder = tmp_path / "models" / first["model_key"].iloc[0]
    state = (folder / "state_dict.pt").read_bytes()
    (folder / "state_dict.pt").write_bytes(state[: len(state) // 2])  # truncated
    assert "checksum mismatch" in str(model_folder_problem(folder))
    with caplog.at_level("WARNING", logger="segad.detection.stage"):
        second, stats = compute_anomaly_maps(*args, tmp_path / "models", **run)
    assert (stats.models_fitted, stats.models_reused, stats.maps_computed) == (1, 0, 0)
    assert "refitting damaged detector" in caplog.text
    assert model_folder_problem(folder) is None
    assert (folder / "state_dict.pt").read_bytes() == state  # the same fit again
    pd.testing.assert_frame_equal(first, second)
    # a saved detector whose detector.json is gone is refitted too, not refused as a foreign folder
    (folder / "detector.json").unlink()
    _, stats = compute_anomaly_maps(*args, tmp_path / "models", **run)
    assert stats.models_fitted == 1 and model_folder_problem(folder) is None
