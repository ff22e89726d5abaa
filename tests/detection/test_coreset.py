"""PatchCore's fast coreset: the same greedy k-center selection as anomalib's KCenterGreedy, faster."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from segad.detection import coreset
from segad.detection.config import CORESET_MAX_BANK, DetectorConfig, DetectorConfigError
from segad.detection.coreset import (
    _even_parts,
    coreset_size,
    greedy_coreset_indices,
    greedy_k_center,
    pca_bound_coordinates,
)
from segad.detection.fit import fit_detector
from segad.detection.inference import predict_maps
from segad.detection.saved import load_detector, model_key, save_detector
from segad.storage.images import read_image
from tests.detection.tiny import CHEAP, SIZE


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)  # anomalib's projection also draws from numpy (sklearn sampling)


def _clustered(n: int, dim: int, seed: int) -> torch.Tensor:
    """Rows around 20 centres: pruning by the triangle inequality skips most rows here."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(20, dim, generator=g) * 5
    return centres[torch.randint(0, 20, (n,), generator=g)] + torch.randn(n, dim, generator=g)


@pytest.mark.parametrize(
    ("n", "dim", "ratio", "data"),
    [(600, 16, 0.05, "gauss"), (800, 152, 0.1, "gauss"), (1000, 8, 0.3, "clustered"), (500, 40, 0.2, "clustered")],
)
@pytest.mark.parametrize("bound_form", ["chosen per step", "gathered rows", "all rows at once"])
def test_same_selection_as_anomalib_k_center_greedy(n, dim, ratio, data, bound_form, monkeypatch):
    from anomalib.models.components.sampling import KCenterGreedy

    # DENSE_SHARE picks the form of the lower bound: 1 never takes the all-rows product, n + 1 always does
    share = {"chosen per step": coreset.DENSE_SHARE, "gathered rows": 1, "all rows at once": n + 1}[bound_form]
    monkeypatch.setattr(coreset, "DENSE_SHARE", share)
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(n)) if data == "gauss" else _clustered(n, dim, n)
    _seeded(3)
    expected = KCenterGreedy(x, ratio).select_coreset_idxs()
    _seeded(3)
    assert greedy_coreset_indices(x, ratio) == expected


def test_size_is_ratio_times_n_and_deterministic_per_seed():
    x = _clustered(700, 12, 0)
    _seeded(1)
    a = greedy_coreset_indices(x, 0.02)
    _seeded(1)
    b = greedy_coreset_indices(x, 0.02)
    _seeded(2)
    c = greedy_coreset_indices(x, 0.02)
    assert len(a) == coreset_size(700, 0.02) == 14 == len(set(a))
    assert a == b and a != c
    with pytest.raises(ValueError, match="raise coreset_sampling_ratio"):
        greedy_coreset_indices(x, 0.001)


def test_farthest_points_on_a_hand_built_example():
    # a tight cluster at the origin and three far outliers at distances 10, 7 and 4
    points = torch.tensor(
        [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 0.0], [0.0, 7.0], [-4.0, 0.0], [0.1, 0.1]],
    )
    # from row 0: the farthest is (10, 0); then (0, 7) (7 from 0, 12.2 from (10, 0)); then (-4, 0)
    assert greedy_k_center(points, 4, 0).tolist() == [0, 3, 4, 5]
    # started at the outlier (10, 0), the farthest row from it is (-4, 0)
    assert greedy_k_center(points, 2, 3).tolist() == [3, 5]
    with pytest.raises(ValueError, match="k must be"):
        greedy_k_center(points, 8, 0)


def test_the_pca_bound_never_exceeds_the_distance_and_is_exact_on_rows_of_low_rank():
    g = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, 500, (2, 3000), generator=g)

    def distances(rows: torch.Tensor) -> torch.Tensor:
        return torch.linalg.norm(rows[pairs[0]] - rows[pairs[1]], dim=1)

    # a decaying spectrum, far from the origin (the float32 case where rounding could matter)
    x = 1000.0 + torch.randn(500, 64, generator=g) * 10.0 * 0.8 ** torch.arange(64.0)
    coords, tolerance = pca_bound_coordinates(x, 8)
    assert coords.shape == (500, 9)
    bound, true = distances(coords), distances(x)
    assert (bound <= true + tolerance).all()
    assert (bound > 0.5 * true).float().mean() > 0.9  # the top components carry most of it
    # rows in a 4-dimensional subspace: 4 components hold everything, the bound is the distance
    low = torch.randn(500, 4, generator=g) @ torch.randn(4, 64, generator=g)
    coords, tolerance = pca_bound_coordinates(low, 4)
    torch.testing.assert_close(distances(coords), distances(low), rtol=1e-4, atol=tolerance)


def test_coreset_setting_is_checked_and_part_of_the_model_key():
    base = DetectorConfig.from_dict("patchcore", {})
    fast = DetectorConfig.from_dict("patchcore", {"coreset": "fast"})
    assert base.to_dict()["coreset"] == "anomalib" and fast.to_dict()["coreset"] == "fast"
    assert model_key(base, 32, ["a" * 32]) != model_key(fast, 32, ["a" * 32])
    with pytest.raises(DetectorConfigError, match="patchcore: coreset: Input should be 'anomalib' or 'fast'"):
        DetectorConfig.from_dict("patchcore", {"coreset": "random"})
    with pytest.raises(DetectorConfigError, match="coreset applies to patchcore only"):
        DetectorConfig.from_dict("padim", {"coreset": "fast"})


def test_patchcore_fits_with_the_fast_coreset_through_the_fit_path(images, tmp_path):
    values = {**CHEAP["patchcore"], "seed": 5}
    anomalib_model = fit_detector(DetectorConfig.from_dict("patchcore", values), images["train"], SIZE)
    config = DetectorConfig.from_dict("patchcore", {**values, "coreset": "fast"})
    model = fit_detector(config, images["train"], SIZE, backbone_cache_dir=tmp_path / "bb")
    bank = model.model.memory_bank
    n_patches = 4 * (SIZE // 4) ** 2  # 4 images, blocks.1 (stride 4) patches
    assert bank.shape == (int(n_patches * 0.1), 24 + 40) and model.coreset_seconds >= 0
    torch.testing.assert_close(bank, anomalib_model.model.memory_bank, rtol=0, atol=0)  # same seed, same bank
    probe = np.stack([read_image(p, SIZE) for p in images["probe"]])
    maps = predict_maps(model, probe)
    assert maps.shape == (2, SIZE, SIZE) and np.isfinite(maps).all()
    save_detector(model, config, SIZE, tmp_path / "saved")
    reloaded, reloaded_config, _ = load_detector(tmp_path / "saved", backbone_cache_dir=tmp_path / "bb2")
    assert reloaded_config.coreset == "fast" and type(reloaded).__name__ == "FastCoresetPatchcore"
    np.testing.assert_allclose(predict_maps(reloaded, probe), maps, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("n", "dim", "ratio", "cap", "data"), [(2000, 24, 0.05, 30, "clustered"), (900, 152, 0.1, 7, "gauss")]
)
def test_a_cap_below_ratio_times_n_gives_the_first_cap_centres_of_the_uncapped_selection(n, dim, ratio, cap, data):
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(n)) if data == "gauss" else _clustered(n, dim, n)
    _seeded(4)
    uncapped = greedy_coreset_indices(x, ratio)
    _seeded(4)
    capped = greedy_coreset_indices(x, ratio, max_bank=cap)
    assert len(uncapped) == int(n * ratio) > cap
    assert len(capped) == cap == coreset_size(n, ratio, cap)  # exactly cap rows
    assert capped == uncapped[:cap]  # greedy k-center is a prefix process: same draws, same first centres


def test_no_cap_or_a_cap_at_or_above_ratio_times_n_gives_todays_selection():
    from anomalib.models.components.sampling import KCenterGreedy

    x = _clustered(1500, 20, 7)
    _seeded(9)
    expected = KCenterGreedy(x, 0.02).select_coreset_idxs()  # anomalib's, as before the cap existed
    for cap in (None, 30, 31, 10**6):  # int(1500 x 0.02) = 30
        _seeded(9)
        assert greedy_coreset_indices(x, 0.02, max_bank=cap) == expected, cap
    assert coreset_size(1500, 0.02, None) == coreset_size(1500, 0.02, 10**6) == 30
    with pytest.raises(ValueError, match="max_bank must be >= 1"):
        coreset_size(1500, 0.02, 0)


def test_the_default_cap_leaves_the_default_fits_unchanged_and_bounds_large_ones():
    per_image = (256 // 8) ** 2  # blocks.2 patches of a 256 px image
    ratio = 0.01
    assert coreset_size(100 * per_image, ratio, CORESET_MAX_BANK) == 1024  # the demo's 100 detector_train goods
    assert coreset_size(345 * per_image, ratio, CORESET_MAX_BANK) == 3532  # ELPV poly's 345 (mono: 220)
    assert coreset_size(1000 * per_image, ratio, CORESET_MAX_BANK) == CORESET_MAX_BANK  # 10 240 without the cap


def test_coreset_max_bank_is_checked_shown_in_conf_and_part_of_the_fast_model_key():
    from kedro.config import OmegaConfigLoader

    from segad.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    block = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env="local", **CONFIG_LOADER_ARGS)["parameters"]
    assert block["anomaly_maps"]["patchcore"]["coreset_max_bank"] == CORESET_MAX_BANK  # conf/base shows the default
    fast = DetectorConfig.from_dict("patchcore", {"coreset": "fast"})
    assert fast.coreset_max_bank == CORESET_MAX_BANK and fast.to_dict()["coreset_max_bank"] == CORESET_MAX_BANK
    keys = {
        model_key(DetectorConfig.from_dict("patchcore", {"coreset": "fast", "coreset_max_bank": cap}), 32, ["a"])
        for cap in (None, 1024, CORESET_MAX_BANK)
    }
    assert len(keys) == 3  # changing the cap refits
    for name in ("patchcore", "padim"):  # only the fast coreset reads the cap: any other value is refused
        assert DetectorConfig.from_dict(name, {}).to_dict()["coreset_max_bank"] == CORESET_MAX_BANK


def test_a_capped_patchcore_fit_keeps_the_first_rows_of_the_uncapped_bank(images, tmp_path):
    values = {**CHEAP["patchcore"], "seed": 5, "coreset": "fast"}
    full = fit_detector(
        DetectorConfig.from_dict("patchcore", {**values, "coreset_max_bank": None}), images["train"], SIZE
    )
    config = DetectorConfig.from_dict("patchcore", {**values, "coreset_max_bank": 9})
    model = fit_detector(config, images["train"], SIZE, backbone_cache_dir=tmp_path / "bb")
    full_bank, bank = full.model.memory_bank, model.model.memory_bank
    assert full_bank.shape[0] == int(4 * (SIZE // 4) ** 2 * 0.1) > 9 and bank.shape[0] == 9
    torch.testing.assert_close(bank, full_bank[:9], rtol=0, atol=0)
    save_detector(model, config, SIZE, tmp_path / "saved")
    reloaded, reloaded_config, _ = load_detector(tmp_path / "saved", backbone_cache_dir=tmp_path / "bb2")
    assert reloaded_config == config and reloaded.model.memory_bank.shape[0] == 9


def test_at_or_below_the_chunk_the_selection_is_anomalibs():
    from anomalib.models.components.sampling import KCenterGreedy

    x = _clustered(1200, 20, 11)
    _seeded(6)
    expected = KCenterGreedy(x, 0.02).select_coreset_idxs()
    for chunk in (None, 1200, 10**6):
        _seeded(6)
        assert greedy_coreset_indices(x, 0.02, chunk=chunk) == expected, chunk
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        greedy_coreset_indices(x, 0.02, chunk=0)


def _far_last_run(n: int, far_from: int) -> torch.Tensor:
    """Clustered rows; the rows from ``far_from`` on are shifted far away (a region only the last run holds)."""
    x = _clustered(n, 16, n)
    x[far_from:] += 200.0
    return x


@pytest.mark.parametrize(("n", "chunk", "ratio", "shares"), [(900, 300, 0.1, [30, 30, 30]), (1000, 300, 0.1, [25] * 4)])
def test_above_the_chunk_each_run_of_rows_selects_its_share(n, chunk, ratio, shares):
    x = _far_last_run(n, n - n // len(shares))
    _seeded(2)
    selected = greedy_coreset_indices(x, ratio, chunk=chunk)
    assert len(selected) == len(set(selected)) == int(n * ratio)  # uncapped: ratio x N rows, as one selection
    runs = np.repeat(np.arange(len(shares)), n // len(shares))
    assert np.bincount(runs[selected]).tolist() == shares  # equal runs of consecutive rows, equal shares
    _seeded(2)
    assert greedy_coreset_indices(x, ratio, chunk=chunk) == selected  # deterministic per seed
    _seeded(3)
    assert greedy_coreset_indices(x, ratio, chunk=chunk) != selected


def test_even_parts_differ_by_at_most_one_larger_first():
    assert _even_parts(1000, 4) == [250] * 4 and _even_parts(10, 3) == [4, 3, 3] and _even_parts(2, 3) == [1, 1, 0]


def test_above_the_chunk_the_union_is_reduced_to_the_cap_and_still_covers_every_run():
    n, chunk, ratio, cap = 900, 300, 0.1, 12
    x = _far_last_run(n, 600)
    _seeded(8)
    union = greedy_coreset_indices(x, ratio, chunk=chunk)
    _seeded(8)
    capped = greedy_coreset_indices(x, ratio, max_bank=cap, chunk=chunk)
    assert len(capped) == len(set(capped)) == cap and set(capped) <= set(union)  # cap rows of the union
    assert capped[0] == union[0]  # the reduction starts at the first run's start
    assert any(i >= 600 for i in capped) and any(i < 600 for i in capped)  # the far region is kept
    # fewer centres than runs: one run per centre, each run still contributes
    _seeded(8)
    few = greedy_coreset_indices(x, 0.004, chunk=100)  # int(900 x 0.004) = 3 centres, 9 chunks -> 3 runs
    assert sorted(i // 300 for i in few) == [0, 1, 2]


def test_coreset_chunk_is_checked_shown_in_conf_and_part_of_the_fast_model_key(images, tmp_path):
    from kedro.config import OmegaConfigLoader

    from segad.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    block = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env="local", **CONFIG_LOADER_ARGS)["parameters"]
    assert "coreset_chunk" in block["anomaly_maps"]["patchcore"]  # conf/base shows it, at the default
    assert (
        block["anomaly_maps"]["patchcore"]["coreset_chunk"] is DetectorConfig.from_dict("patchcore", {}).coreset_chunk
    )
    keys = {
        model_key(DetectorConfig.from_dict("patchcore", {"coreset": "fast", "coreset_chunk": chunk}), 32, ["a"])
        for chunk in (None, 1000, 102_400)
    }
    assert len(keys) == 3  # changing the chunk refits
    # unset, it stays out of the key: the keys (and cached models) from before the setting existed hold
    fast = DetectorConfig.from_dict("patchcore", {"coreset": "fast"})
    assert "coreset_chunk" not in fast.identity()
    assert (
        DetectorConfig.from_dict("patchcore", {"coreset": "fast", "coreset_chunk": 5}).identity()["coreset_chunk"] == 5
    )
    for name in ("patchcore", "padim"):  # only the fast coreset reads it
        with pytest.raises(DetectorConfigError, match="coreset_chunk applies to patchcore with coreset: fast only"):
            DetectorConfig.from_dict(name, {"coreset_chunk": 1000})
    with pytest.raises(DetectorConfigError, match="coreset_chunk"):
        DetectorConfig.from_dict("patchcore", {"coreset": "fast", "coreset_chunk": 0})
    # through the fit path: 4 images of (SIZE // 4)^2 patches in runs of at most 1.5 images, bank capped
    n_patches = 4 * (SIZE // 4) ** 2
    values = {**CHEAP["patchcore"], "seed": 5, "coreset": "fast", "coreset_chunk": n_patches * 3 // 8}
    config = DetectorConfig.from_dict("patchcore", {**values, "coreset_max_bank": 20})
    model = fit_detector(config, images["train"], SIZE, backbone_cache_dir=tmp_path / "bb")
    assert model.model.memory_bank.shape == (20, 24 + 40) and model.coreset_chunk == n_patches * 3 // 8
    save_detector(model, config, SIZE, tmp_path / "saved")
    reloaded, reloaded_config, _ = load_detector(tmp_path / "saved", backbone_cache_dir=tmp_path / "bb2")
    assert reloaded_config == config
    torch.testing.assert_close(reloaded.model.memory_bank, model.model.memory_bank, rtol=0, atol=0)
