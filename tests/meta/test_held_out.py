"""segad.meta.held_out: the selection's folds and the metrics of held-out scores."""

from __future__ import annotations

import numpy as np
import pytest

from segad.meta.held_out import HeldOut, fold_ids, held_out_metrics, judged_rows, one_bad_margin


def test_held_out_metrics_are_auroc_and_pg_and_nan_without_a_class():
    labels = np.array([0, 0, 0, 1, 1])
    assert held_out_metrics(labels, np.array([0.0, 1.0, 2.0, 1.5, 3.0]), 0.02) == pytest.approx((5 / 6, 2 / 3))
    assert np.isnan(held_out_metrics(np.zeros(3, int), np.arange(3.0), 0.02)).all()


def test_a_margin_one_bad_image_could_flip_is_no_win():
    labels = np.r_[np.zeros(50, int), np.ones(5, int)]
    ids = np.array([f"{i}.png" for i in range(labels.size)])
    rng = np.random.default_rng(0)
    baseline = np.r_[rng.normal(0, 1, 50), [3.0, 3.5, 4.0, 4.5, -2.0]]  # one bad image scored as good
    richer = baseline.copy()
    same = [HeldOut(labels, ids, {"richer": richer, "baseline": baseline})]
    assert one_bad_margin(same, "richer", "baseline", 0.02, 0.5) == 0.0
    richer = richer.copy()
    richer[-1] = 5.0  # the richer method differs only on that one image
    pairs = [HeldOut(labels, ids, {"richer": richer, "baseline": baseline})]
    gain = 0.5 * (1 - 0.96) + 0.5 * 1.0  # not the exact gain: it is large, and it rests on one image
    assert one_bad_margin(pairs, "richer", "baseline", 0.02, 0.5) > 0.5 * gain


def test_the_margin_is_that_of_the_mean_gain_over_pairs():
    """Ten pairs alike but one: the one image that makes that pair's gain moves the mean gain a tenth as much."""
    labels = np.r_[np.zeros(50, int), np.ones(5, int)]
    rng = np.random.default_rng(0)
    baseline = np.r_[rng.normal(0, 1, 50), [3.0, 3.5, 4.0, 4.5, -2.0]]
    richer = baseline.copy()
    richer[-1] = 5.0
    pairs = [
        HeldOut(labels, np.array([f"{k}/{i}.png" for i in range(labels.size)]), {"r": richer, "b": baseline})
        for k in range(10)
    ]
    alone = one_bad_margin(pairs[:1], "r", "b", 0.02, 0.5)
    same_elsewhere = [HeldOut(p.labels, p.image_ids, {"r": p.scores["b"], "b": p.scores["b"]}) for p in pairs[1:]]
    assert one_bad_margin([pairs[0], *same_elsewhere], "r", "b", 0.02, 0.5) == pytest.approx(alone / 10)
    # the same image in all ten pairs (one image, ten split seeds): dropping it moves every pair
    shared = [HeldOut(labels, pairs[0].image_ids, p.scores) for p in pairs]
    assert one_bad_margin(shared, "r", "b", 0.02, 0.5) == pytest.approx(alone)


def test_folds_hold_out_whole_defect_types_where_the_rows_name_them():
    labels = np.r_[np.zeros(20, int), np.ones(9, int)]
    types = np.array(["good"] * 20 + ["pit"] * 5 + ["scratch"] * 4, dtype=object)
    fold = fold_ids(labels, seed=0, n_folds=5, defect_types=types)
    assert set(fold) == {0, 1} and len(set(fold[types == "pit"])) == len(set(fold[types == "scratch"])) == 1
    assert set(fold_ids(labels, seed=0, n_folds=5)) == {0, 1, 2, 3, 4}  # no types: stratified 5-fold


def test_synthetic_defects_are_judged_only_where_no_real_bad_row_exists():
    labels = np.array([0, 1, 1])
    top_up = ["good/0.png", "bad/0.png", "synthetic/0/good_0__0.png"]
    assert judged_rows(labels, top_up).tolist() == [True, True, False]
    one_class = ["good/0.png", "synthetic/0/good_0__0.png", "synthetic/0/good_1__0.png"]
    assert judged_rows(labels, one_class).tolist() == [True, True, True]
