"""Detectors: every supported model fits on tiny good images and gives raw maps; resume; leakage."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from segad.detection.detectors import (
    SUPPORTED_DETECTORS,
    DetectorConfig,
    DetectorConfigError,
    build_detector,
    compute_anomaly_maps,
    fit_detector,
    load_detector,
    predict_maps,
    save_detector,
)
from segad.detection.map_store import MapStore
from segad.detection.weights import WeightsError
from segad.images import read_image

SIZE = 32
LITE0 = {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"]}
PACKAGED = "packaged:efficientnet_lite0"
# cheap settings per detector; the ResNet-only models run with explicit random weights (offline)
CHEAP = {
    "patchcore": {"model": {**LITE0, "coreset_sampling_ratio": 0.1, "num_neighbors": 3}, "weights": PACKAGED},
    "padim": {"model": {**LITE0, "n_features": 16}, "weights": PACKAGED},
    "fastflow": {"model": {"backbone": "resnet18", "flow_steps": 2}, "pretrained": False, "trainer": {"max_steps": 1}},
    "reverse_distillation": {
        "model": {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"]},
        "pretrained": False,
        "trainer": {"max_steps": 1},
    },
    "efficient_ad": {
        "model": {"model_size": "small", "teacher_out_channels": 8},
        "pretrained": False,
        "train_batch_size": 1,
        "trainer": {"max_steps": 2},  # anomalib's LR schedule needs >= 2 steps
    },
    "supersimplenet": {"model": LITE0, "weights": PACKAGED, "trainer": {"max_steps": 1}},
    "stfpm": {"model": LITE0, "weights": PACKAGED, "trainer": {"max_steps": 1}},
}


def _write_images(folder, n, seed, size=SIZE, bright=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(90, 110, size=(size, size, 3))
        if bright:
            base[size // 4 : size // 2, size // 4 : size // 2] = 255
        path = folder / f"{i:03d}.png"
        Image.fromarray(base.astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return {
        "train": _write_images(root / "train", 4, 0),
        "probe": _write_images(root / "probe", 2, 1, bright=True),
        "train256": _write_images(root / "train256", 1, 2, size=256),
        "imagenet": _write_images(root / "imagenet" / "cls", 2, 3, size=64),
    }


def _config(name, images):
    values = dict(CHEAP[name])
    if name == "efficient_ad":
        values["imagenet_dir"] = str(os.path.dirname(os.path.dirname(images["imagenet"][0])))
    return DetectorConfig.from_dict(name, values)


def test_every_supported_detector_has_cheap_settings():
    assert set(CHEAP) == set(SUPPORTED_DETECTORS)


@pytest.mark.parametrize("name", SUPPORTED_DETECTORS)
def test_detector_fits_on_good_images_and_maps_survive_save_and_reload(name, images, tmp_path):
    # EfficientAD's autoencoder needs >= 256 px; SuperSimpleNet's Perlin noise needs > 32 px
    size = {"efficient_ad": 256, "supersimplenet": 64}.get(name, SIZE)
    train = images["train256"] if name == "efficient_ad" else images["train"]
    config = _config(name, images)
    model = fit_detector(config, train, size, backbone_cache_dir=tmp_path / "bb")
    probe = np.stack([read_image(p, size) for p in images["probe"]])
    maps = predict_maps(model, probe)
    assert maps.shape == (2, size, size) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.std() > 0
    save_detector(model, config, size, tmp_path / "saved")
    reloaded, reloaded_config, reloaded_size = load_detector(tmp_path / "saved", backbone_cache_dir=tmp_path / "bb2")
    assert reloaded_config == config and reloaded_size == size
    np.testing.assert_allclose(predict_maps(reloaded, probe), maps, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def fitted_padim(images, tmp_path_factory):
    config = _config("padim", images)
    return fit_detector(config, images["train"], SIZE, backbone_cache_dir=tmp_path_factory.mktemp("bb")), config


def test_maps_are_raw_not_normalised(images, fitted_padim):
    model, _ = fitted_padim
    assert model.post_processor is None
    maps = predict_maps(model, np.stack([read_image(p, SIZE) for p in images["probe"]]))
    assert maps.max() > 1.0  # PaDiM Mahalanobis distances, not min-max scaled to [0, 1]


def test_saved_detector_holds_plain_tensors_and_damage_is_reported(fitted_padim, tmp_path):
    from segad.detection.detectors import DetectorLoadError

    model, config = fitted_padim
    save_detector(model, config, SIZE, tmp_path / "d")
    state = torch.load(tmp_path / "d" / "state_dict.pt", weights_only=True)  # no pickled objects inside
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["detector.json", "state_dict.pt"]
    (tmp_path / "d" / "state_dict.pt").write_bytes(b"broken")
    with pytest.raises(DetectorLoadError, match="checksum"):
        load_detector(tmp_path / "d")


def test_missing_hub_weights_offline_say_how_to_supply_them(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = DetectorConfig.from_dict("patchcore", {"model": {"backbone": "resnet18", "layers": ["layer2"]}})
    with pytest.raises(WeightsError, match="pretrained: false"):
        build_detector(config, SIZE)


def test_missing_local_weights_file_fails_clearly(tmp_path):
    config = DetectorConfig.from_dict(
        "padim", {"model": {"backbone": "resnet18", "layers": ["layer1"]}, "weights": str(tmp_path / "none.pth")}
    )
    with pytest.raises(WeightsError, match="none.pth: backbone weights file not found"):
        build_detector(config, SIZE)


def test_efficient_ad_needs_its_local_teacher_and_folder(tmp_path, images):
    imagenet = os.path.dirname(os.path.dirname(images["imagenet"][0]))
    no_teacher = DetectorConfig.from_dict("efficient_ad", {"train_batch_size": 1, "imagenet_dir": imagenet})
    with pytest.raises(WeightsError, match="teacher_weights"):
        build_detector(no_teacher, 256)
    no_folder = DetectorConfig.from_dict(
        "efficient_ad", {"train_batch_size": 1, "pretrained": False, "imagenet_dir": str(tmp_path / "absent")}
    )
    with pytest.raises(DetectorConfigError, match="absent: no such folder"):
        build_detector(no_folder, 256)


def test_invalid_settings_are_refused():
    with pytest.raises(DetectorConfigError, match="unknown detector"):
        DetectorConfig.from_dict("patchcore2", {})
    with pytest.raises(DetectorConfigError, match="unknown settings"):
        DetectorConfig.from_dict("padim", {"weight": "hub"})
    with pytest.raises(DetectorConfigError, match="post_processor"):
        DetectorConfig.from_dict("padim", {"model": {"post_processor": True}})
    with pytest.raises(DetectorConfigError, match="not possible"):
        build_detector(DetectorConfig.from_dict("stfpm", {"pretrained": False}), SIZE)
    with pytest.raises(WeightsError, match="only ResNet"):
        build_detector(
            DetectorConfig.from_dict("fastflow", {"model": {"backbone": "resnet18"}, "weights": PACKAGED}), SIZE
        )


# ------------------------------------------------------------------------- the stage run (padim)


def _tables(root, test_seed=10):
    train = _write_images(root / "train", 6, 0)
    test = _write_images(root / f"test{test_seed}", 3, test_seed, bright=True)
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
        index, splits, synthetic, _config("padim", images), SIZE, "cpu", MapStore(root / "maps"), root / "models",
        progress=False,
    )


def test_map_index_schema_resume_and_damaged_maps(tmp_path, images):
    index, splits = _tables(tmp_path)
    first, stats = _run(tmp_path, index, splits, images)
    assert list(first.columns) == [
        "image_id", "detector", "split_seed", "model_key", "map_key", "max_score", "height", "width",
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
    splits.loc[swap, "role"] = splits.loc[swap, "role"].map({"detector_train": "brf_train", "brf_train": "detector_train"})
    map_index, stats = _run(tmp_path, index, splits, images)
    assert stats.models_fitted == 2 and map_index.groupby("split_seed")["model_key"].nunique().tolist() == [1, 1]
    assert map_index["model_key"].nunique() == 2


def test_each_category_gets_its_own_detector(tmp_path, images):
    """One-class detectors model one product: a category's maps come from a detector fitted on that
    category's detector_train goods only, never on several categories mixed."""
    index, splits = _tables(tmp_path)
    other_train = _write_images(tmp_path / "other", 6, 42)
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
    synthetic_paths = _write_images(tmp_path / "synthetic", 2, 7, bright=True)
    synthetic = pd.DataFrame(
        {"image_id": ["synthetic/0/a__0.png", "synthetic/1/b__0.png"], "split_seed": [0, 1], "path": synthetic_paths,
         "category": "part"}
    )
    map_index, _ = _run(tmp_path, index, splits, images, synthetic)
    rows = map_index[map_index["image_id"].str.startswith("synthetic/")]
    assert rows[["image_id", "split_seed"]].values.tolist() == [["synthetic/0/a__0.png", 0], ["synthetic/1/b__0.png", 1]]


def test_fit_is_deterministic_whatever_the_global_random_state(images, tmp_path):
    """PaDiM draws its channel subset when built: the seed must be set before that, or a fit in
    another process (a Dask worker) would pick other channels under the same model_key."""
    import random

    config = _config("padim", images)
    fitted = []
    for state in (1, 2):
        random.seed(state)
        torch.manual_seed(state)
        fitted.append(fit_detector(config, images["train"], SIZE, "cpu", work_dir=tmp_path))
    assert torch.equal(fitted[0].model.idx, fitted[1].model.idx)
    probe = np.stack([read_image(p, SIZE) for p in images["probe"]])
    np.testing.assert_allclose(predict_maps(fitted[0], probe), predict_maps(fitted[1], probe), rtol=1e-5)


def test_model_key_changes_with_the_libraries_that_compute_maps(monkeypatch):
    import segad.detection.detectors as detectors

    config = DetectorConfig.from_dict("padim", {"model": {"backbone": "resnet18"}, "pretrained": False})
    key = detectors.model_key(config, 64, ["a", "b"])
    assert detectors.model_key(config, 64, ["b", "a"]) == key  # order of the training set is irrelevant
    installed = detectors.library_versions()
    assert set(installed) == set(detectors.MAP_LIBRARIES) and installed["torch"] == torch.__version__.split("+")[0]
    for name in detectors.MAP_LIBRARIES:
        monkeypatch.setattr(detectors, "library_versions", lambda name=name: {**installed, name: "0.0.1"})
        assert detectors.model_key(config, 64, ["a", "b"]) != key, name
    monkeypatch.setattr(detectors, "library_versions", lambda: installed)
    monkeypatch.setattr(detectors, "FORMAT_VERSION", detectors.FORMAT_VERSION + 1)
    assert detectors.model_key(config, 64, ["a", "b"]) != key


def test_padim_channel_subset_does_not_depend_on_the_backbone_cache(images, tmp_path):
    """Writing the backbone cache on first use drew from the global RNG, so PaDiM's channel subset
    (drawn in its constructor) differed between a fresh data folder and one that held a run."""
    config = _config("padim", images)
    fresh = build_detector(config, SIZE, tmp_path / "cache")  # writes the backbone folder
    torch.rand(7)  # whatever ran before must not matter either
    warm = build_detector(config, SIZE, tmp_path / "cache")  # reads it
    other_seed = build_detector(DetectorConfig(**{**config.__dict__, "seed": config.seed + 1}), SIZE, tmp_path / "cache")
    assert torch.equal(fresh.model.idx, warm.model.idx)
    assert not torch.equal(fresh.model.idx, other_seed.model.idx)
