import inspect
import re
from dataclasses import fields, replace

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from segad.config import SplitOptions
from segad.ingestion import splits as splits_module
from segad.ingestion.splits import (
    SplitConfig,
    SplitError,
    check_splits,
    defect_type_folds,
    make_splits,
    stratified_folds,
)


def fake_index(n_train_good=20, n_train_bad=10, n_test_good=8, n_test_bad=12, categories=("a",)):
    rows = []
    for cat in categories:
        for split, label, n in (
            ("train", 0, n_train_good),
            ("train", 1, n_train_bad),
            ("test", 0, n_test_good),
            ("test", 1, n_test_bad),
        ):
            rows += [
                {"image_id": f"{cat}/{split}/{label}/{i:03d}.png", "category": cat, "split": split, "label": label}
                for i in range(n)
            ]
    return pd.DataFrame(rows)


def roles(splits, index, seed):
    merged = splits[splits.split_seed == seed].merge(index, on="image_id")
    return merged


def assert_invariants(splits, index):
    assert not splits.duplicated(["image_id", "split_seed"]).any()
    assert len(splits) == len(index) * splits.split_seed.nunique()
    merged = splits.merge(index, on="image_id")
    assert (merged[merged.role == "detector_train"].label == 0).all()
    assert (merged.in_benchmark == (merged.role != "unused")).all()


@pytest.mark.parametrize("benchmark", ["one_class", "high_shot", "low_shot"])
def test_test_images_never_reach_a_training_role(benchmark):
    index = fake_index()
    splits = make_splits(index, SplitConfig(benchmark=benchmark, seeds=(0, 1, 2), options=SplitOptions(low_shot_n=4)))
    assert_invariants(splits, index)
    merged = splits.merge(index, on="image_id")
    assert (merged[merged.split == "test"].role == "test").all()


def test_good_split_ratio_and_seed_dependence():
    index = fake_index(n_train_good=20)
    splits = make_splits(
        index, SplitConfig(benchmark="high_shot", seeds=(0, 1), options=SplitOptions(detector_share=0.5))
    )
    goods = splits.merge(index, on="image_id").query("split == 'train' and label == 0")
    counts = goods.groupby(["split_seed", "role"]).size()
    assert counts[(0, "detector_train")] == 10 and counts[(0, "brf_train")] == 10
    det0 = set(goods[(goods.split_seed == 0) & (goods.role == "detector_train")].image_id)
    det1 = set(goods[(goods.split_seed == 1) & (goods.role == "detector_train")].image_id)
    assert det0 != det1  # the seed drives the split
    again = make_splits(index, SplitConfig(benchmark="high_shot", seeds=(0, 1)))
    pd.testing.assert_frame_equal(splits, again)  # and only the seed


def test_fixed_good_split_is_the_same_for_every_seed():
    index = fake_index(n_train_bad=0, n_test_bad=15, categories=("candle", "pcb1"))
    fixed = SplitOptions(detector_share=0.9, good_split="fixed", good_split_seed=333)
    config = SplitConfig(benchmark="visa_supervised", seeds=(333, 576, 725), options=fixed)
    merged = make_splits(index, config).merge(index, on="image_id")
    goods = merged.query("split == 'train' and label == 0")
    per_seed = goods.groupby(["category", "split_seed"]).apply(
        lambda g: frozenset(g.image_id[g.role == "detector_train"]), include_groups=False
    )
    assert per_seed.groupby(level="category").nunique().eq(1).all()  # one division per category
    assert per_seed.map(len).eq(18).all() and per_seed["candle"].iloc[0] != per_seed["pcb1"].iloc[0]
    moved = merged[(merged.split == "test") & (merged.role == "brf_train")]
    assert moved.groupby("split_seed").image_id.apply(frozenset).nunique() == 3  # the seed still moves the bad
    other = make_splits(index, replace(config, options=replace(fixed, good_split_seed=1)))
    assert set(other[other.role == "detector_train"].image_id) != set(merged[merged.role == "detector_train"].image_id)
    per = make_splits(index, replace(config, options=replace(fixed, good_split="per_seed"))).merge(index, on="image_id")
    assert (
        per.query("role == 'brf_train' and label == 0").groupby("split_seed").image_id.apply(frozenset).nunique() == 3
    )
    with pytest.raises(ValidationError, match="good_split\n  Input should be 'per_seed' or 'fixed'"):
        SplitOptions(good_split="once")
    with pytest.raises(SplitError, match="kfold changes them per fold"):
        SplitConfig(benchmark="kfold", options=SplitOptions(good_split="fixed"))


def test_each_split_setting_is_defined_once():
    """The `split` knobs are SplitOptions' fields only: SplitConfig holds them as ``options`` and
    neither re-declares nor re-checks any of them (their ranges are pydantic's, naming the field)."""
    knobs = {f.name for f in fields(SplitOptions)}
    assert not knobs & {f.name for f in fields(SplitConfig)}
    source = inspect.getsource(splits_module)
    assert not [k for k in knobs if re.search(rf"^\s+{k}\s*:", source, re.MULTILINE)]
    assert SplitConfig().options == SplitOptions()
    for bad in ({"detector_share": 0.0}, {"low_shot_n": 0}, {"visa_moved_bad": 0}, {"n_folds": 1}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            SplitOptions(**bad)


def test_regimes_assign_bad_training_images():
    index = fake_index(n_train_bad=10)
    bad_train = lambda s: s.merge(index, on="image_id").query("split == 'train' and label == 1")  # noqa: E731
    high = bad_train(make_splits(index, SplitConfig(benchmark="high_shot", seeds=(0,))))
    assert (high.role == "brf_train").all()
    one = bad_train(make_splits(index, SplitConfig(benchmark="one_class", seeds=(0,))))
    assert (one.role == "unused").all() and not one.in_benchmark.any()
    low = bad_train(
        make_splits(index, SplitConfig(benchmark="low_shot", seeds=(0, 1), options=SplitOptions(low_shot_n=3)))
    )
    per_seed = low[low.role == "brf_train"].groupby("split_seed").image_id.apply(set)
    assert all(len(s) == 3 for s in per_seed) and per_seed[0] != per_seed[1]


def test_low_shot_json_draws_in_key_order():
    index = fake_index(n_train_bad=5)
    names = [f"{i:03d}.png" for i in range(5)]
    config = SplitConfig(benchmark="low_shot", seeds=(7, 8), low_shot_draws={"b": names[2:4], "a": names[:2]})
    splits = make_splits(index, config).merge(index, on="image_id").query("role == 'brf_train' and label == 1")
    assert sorted(splits[splits.split_seed == 7].image_id.str[-7:]) == ["000.png", "001.png"]
    assert sorted(splits[splits.split_seed == 8].image_id.str[-7:]) == ["002.png", "003.png"]
    with pytest.raises(SplitError, match="has 2 draws"):
        make_splits(index, SplitConfig(benchmark="low_shot", seeds=(1, 2, 3), low_shot_draws=config.low_shot_draws))


def test_visa_supervised_moves_k_test_bad_per_category():
    index = fake_index(n_train_bad=0, n_test_bad=15, categories=("candle", "pcb1"))
    splits = make_splits(
        index,
        SplitConfig(
            benchmark="visa_supervised", seeds=(333, 576), options=SplitOptions(visa_moved_bad=10, detector_share=0.9)
        ),
    )
    assert_invariants(splits, index)
    merged = splits.merge(index, on="image_id")
    moved = merged[(merged.split == "test") & (merged.role == "brf_train")]
    assert (moved.label == 1).all()
    assert moved.groupby(["split_seed", "category"]).size().eq(10).all()
    goods = merged.query("split == 'train'").groupby(["split_seed", "category", "role"]).size()
    assert goods[(333, "candle", "detector_train")] == 18 and goods[(333, "candle", "brf_train")] == 2
    with pytest.raises(SplitError, match="cannot move"):
        make_splits(
            index, SplitConfig(benchmark="visa_supervised", seeds=(0,), options=SplitOptions(visa_moved_bad=15))
        )


def test_kfold_each_image_tested_once():
    index = fake_index(n_test_good=0, n_test_bad=0, n_train_good=30, n_train_bad=9)
    splits = make_splits(index, SplitConfig(benchmark="kfold", seeds=(0, 1, 2), options=SplitOptions(n_folds=3)))
    assert_invariants(splits, index)
    tested = splits[splits.role == "test"]
    assert tested.image_id.is_unique and len(tested) == len(index)
    assert tested.merge(index, on="image_id").groupby(["split_seed", "label"]).size().eq([10, 3] * 3).all()
    with pytest.raises(SplitError, match="fold 5 does not exist"):
        make_splits(index, SplitConfig(benchmark="kfold", seeds=(5,)))


def test_stratified_folds_spread_each_label_evenly_and_follow_the_seed():
    labels = np.array([0] * 10 + [1] * 5)
    fold = stratified_folds(labels, 3, seed=4)
    for label in (0, 1):
        counts = np.bincount(fold[labels == label], minlength=3)
        assert counts.max() - counts.min() <= 1, counts
    np.testing.assert_array_equal(fold, stratified_folds(labels, 3, seed=4))
    assert not np.array_equal(fold, stratified_folds(labels, 3, seed=5))


def test_kfold_with_fewer_images_than_folds_names_the_category():
    index = fake_index(n_test_good=0, n_test_bad=0, n_train_good=1, n_train_bad=1)
    with pytest.raises(SplitError, match="n_folds=3 but only 2 image"):
        make_splits(index, SplitConfig(benchmark="kfold", seeds=(0,), options=SplitOptions(n_folds=3)))


def test_kfold_official_folds():
    index = fake_index(n_test_good=0, n_test_bad=0, n_train_good=4, n_train_bad=4)
    stems = index.image_id.str.rsplit("/", n=1).str[-1].str[:-4]
    folds = {"a": {0: {"test": {"000", "001"}}, 1: {"test": {"002", "003"}}}}
    splits = make_splits(index, SplitConfig(benchmark="kfold", seeds=(0, 1), official_folds=folds))
    tested0 = set(splits[(splits.split_seed == 0) & (splits.role == "test")].image_id)
    assert tested0 == set(index.image_id[stems.isin(["000", "001"])])


def test_errors_name_the_problem():
    with pytest.raises(SplitError, match="unknown benchmark"):
        SplitConfig(benchmark="few_shot")
    no_bad = fake_index(n_train_bad=0)
    with pytest.raises(SplitError, match="needs bad training images"):
        make_splits(no_bad, SplitConfig(benchmark="high_shot", seeds=(0,)))
    with pytest.raises(SplitError, match="need at least 2"):
        make_splits(fake_index(n_train_good=1), SplitConfig(benchmark="high_shot", seeds=(0,)))


def test_check_splits_catches_leaks():
    index = fake_index()
    splits = make_splits(index, SplitConfig(benchmark="high_shot", seeds=(0,)))
    test_id = index[index.split == "test"].image_id.iloc[0]
    leaked = splits.copy()
    leaked.loc[leaked.image_id == test_id, "role"] = "brf_train"
    with pytest.raises(SplitError, match="test images in a training role"):
        check_splits(leaked, index, "high_shot")
    bad_det = splits.copy()
    bad_id = index[(index.split == "train") & (index.label == 1)].image_id.iloc[0]
    bad_det.loc[bad_det.image_id == bad_id, "role"] = "detector_train"
    with pytest.raises(SplitError, match="bad image has role detector_train"):
        check_splits(bad_det, index, "high_shot")
    with pytest.raises(SplitError, match="two roles"):
        check_splits(pd.concat([splits, splits.iloc[:1]]), index, "high_shot")


def test_low_shot_json_integer_keys_sort_numerically():
    index = fake_index(n_train_bad=5)
    names = [f"{i:03d}.png" for i in range(5)]
    draws = {"10": names[2:4], "2": names[:2]}
    splits = make_splits(index, SplitConfig(benchmark="low_shot", seeds=(0, 1), low_shot_draws=draws))
    splits = splits.merge(index, on="image_id").query("role == 'brf_train' and label == 1")
    assert sorted(splits[splits.split_seed == 0].image_id.str[-7:]) == ["000.png", "001.png"]
    assert sorted(splits[splits.split_seed == 1].image_id.str[-7:]) == ["002.png", "003.png"]


def _regime(n_good=8, n_bad=3, n_test=(2, 2), categories=("a",)):
    rows = []
    for c in categories:
        rows += [(f"{c}/g{i}", c, "train", 0) for i in range(n_good)]
        rows += [(f"{c}/b{i}", c, "train", 1) for i in range(n_bad)]
        rows += [(f"{c}/tg{i}", c, "test", 0) for i in range(n_test[0])]
        rows += [(f"{c}/tb{i}", c, "test", 1) for i in range(n_test[1])]
    return pd.DataFrame(rows, columns=["image_id", "category", "split", "label"])


@pytest.mark.parametrize(
    ("regime", "benchmark", "options", "refused"),
    [
        # 1 real bad row: the BRF trains, but the bundle's out-of-fold calibration cannot
        (_regime(n_bad=1), "high_shot", {}, r"split_seed 0, category 'a': 4 good and 1 bad .*out-of-fold .*at least 2"),
        (_regime(n_good=2), "one_class", {}, r"1 good and 1 bad .*\(0 real, 1 synthetic\).*out-of-fold"),
        (_regime(n_test=(2, 0)), "high_shot", {}, r"split_seed 0: 2 good and 0 bad test images"),
    ],
)
def test_too_few_rows_for_later_stages_fail_at_the_split(regime, benchmark, options, refused):
    from segad.ingestion.splits import check_training_rows

    splits = make_splits(regime, SplitConfig(benchmark=benchmark, seeds=(0,)))
    with pytest.raises(SplitError, match=refused):
        check_training_rows(splits, regime, benchmark, bundle=(0, None), **options)


def test_enough_rows_pass_and_a_top_up_or_no_bundle_counts():
    from segad.ingestion.splits import check_training_rows

    regime = _regime(n_bad=1)
    splits = make_splits(regime, SplitConfig(benchmark="high_shot", seeds=(0, 1)))
    assert check_training_rows(splits, regime, "high_shot", bundle=None) == []  # no bundle: 1 bad row is enough
    # synthetic defects beside the real one (the top-up) give the calibration its second bad row
    assert check_training_rows(splits, regime, "high_shot", bundle=(0, None), top_up_share=0.25, top_up_below=5) == []
    warnings = check_training_rows(splits, regime, "high_shot", bundle=None, cross_fit_folds=5)
    assert warnings == [
        f"split_seed {s}, category 'a': 1 bad brf_train rows for classifier.cross_fit_folds=5; the classifier "
        "will use one model (the paper protocol)"
        for s in (0, 1)
    ]


def test_a_low_shot_draw_that_shrinks_because_an_image_was_skipped_is_a_warning_with_its_numbers(caplog):
    index = fake_index(n_train_bad=5)
    index = index[index.image_id != "a/train/1/001.png"]  # skipped at ingestion (unreadable)
    names = [f"{i:03d}.png" for i in range(5)]
    config = SplitConfig(benchmark="low_shot", seeds=(7,), low_shot_draws={"a": names[:3]})
    with caplog.at_level("WARNING", logger="segad.ingestion.splits"):
        splits = make_splits(index, config)
    assert (splits.merge(index, on="image_id").query("role == 'brf_train'").label == 1).sum() == 2
    assert (
        "low_shot draw 'a' (split_seed 7, category" in caplog.text
        and "2 of the 3 listed bad images are in the image index, so the BRF trains on 1 fewer bad images; "
        "not found: ['001.png']"
        in caplog.text
    )


def test_defect_type_folds_hold_out_whole_types_and_spread_the_good_rows():
    labels = np.r_[np.zeros(30, int), np.ones(12, int)]
    types = np.array(["good"] * 30 + ["pit"] * 6 + ["scratch"] * 4 + ["stain"] * 2, dtype=object)
    fold = defect_type_folds(labels, types, n_folds=5, seed=0)
    assert set(fold) == {0, 1, 2}  # k = number of types
    for name in ("pit", "scratch", "stain"):
        assert len(set(fold[types == name])) == 1  # a type never spans two folds
    assert np.bincount(fold[labels == 0]).tolist() == [10, 10, 10]
    np.testing.assert_array_equal(fold, defect_type_folds(labels, types, n_folds=5, seed=0))


def test_defect_type_folds_are_stratified_folds_with_fewer_than_two_types():
    labels = np.r_[np.zeros(20, int), np.ones(10, int)]
    one_type = np.array(["good"] * 20 + ["bad"] * 10, dtype=object)
    expected = stratified_folds(labels, 3, 4)
    np.testing.assert_array_equal(defect_type_folds(labels, one_type, 3, 4), expected)
    np.testing.assert_array_equal(defect_type_folds(labels, None, 3, 4), expected)
