"""Do-no-harm selection (segad.meta.selection): out of fold on brf_train rows only, conservative."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segad.meta.brf import BRFConfig, brf_scores, single_input_model
from segad.meta.selection import (
    SELECTED,
    HeldOut,
    SelectionParams,
    one_bad_margin,
    run_selection,
    selected_scores,
)

FAST = BRFConfig(n_estimators=2, num_parallel_tree=10, n_jobs=1)
DETECTORS = ["padim", "patchcore"]


def _table(signal: str, n_good: int = 80, n_bad: int = 40, seeds=(0, 1), seed: int = 0) -> pd.DataFrame:
    """A feature table of one category: brf_train and test rows, two detectors, two segments.

    signal ``max``: patchcore's map max separates the classes, the segment statistics are noise.
    signal ``segment``: only seg1's padim q995 separates them (a defect in one part), the maxima are noise.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for split_seed in seeds:
        for role, good, bad in (("brf_train", n_good, n_bad), ("test", n_good // 2, n_bad // 2)):
            labels = np.r_[np.zeros(good, int), np.ones(bad, int)]
            n = labels.size
            rows = {
                "image_id": [f"{role}/{i}.png" for i in range(n)],
                "category": "c",
                "split_seed": split_seed,
                "role": role,
                "label": labels,
            }
            for det in DETECTORS:
                rows[f"{det}__max"] = rng.normal(0, 1, n)
                for seg in (0, 1):
                    for stat in ("q995", "skew", "kurtosis", "mean"):
                        rows[f"seg{seg}__{det}__{stat}"] = rng.normal(0, 1, n)
            if signal == "max":
                rows["patchcore__max"] += 2.0 * labels
            else:
                rows["seg1__padim__q995"] += 4.0 * labels
            frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True)


def test_a_combination_that_adds_nothing_loses_to_the_best_single_input():
    selection = run_selection(_table("max"), DETECTORS, config=FAST)
    assert selection.chosen == {"c": "patchcore"}
    evidence = selection.evidence.set_index("method")
    assert evidence.loc["patchcore", "baseline"] and evidence.loc["patchcore", "chosen"]
    assert not evidence["wins"].any()
    assert set(evidence.index) == {"padim", "patchcore", "padim+segad", "patchcore+segad", "padim+patchcore+segad"}


def test_a_combination_that_clearly_wins_is_chosen_and_the_simplest_close_one_preferred():
    selection = run_selection(_table("segment"), DETECTORS, config=FAST)
    evidence = selection.evidence.set_index("method")
    assert evidence.loc["padim+segad", "wins"]
    # padim+segad reads the one informative column with fewer members than padim+patchcore+segad
    assert selection.chosen == {"c": "padim+segad"}
    assert evidence.loc["padim+segad", "gain"] > evidence.loc["padim+segad", "one_bad_margin"]


def test_the_choice_is_independent_of_the_test_labels():
    table = _table("segment", n_good=40, n_bad=12)
    first = run_selection(table, DETECTORS, config=FAST)
    permuted = table.copy()
    test = permuted["role"] == "test"
    rng = np.random.default_rng(7)
    permuted.loc[test, "label"] = rng.permutation(permuted.loc[test, "label"].to_numpy())
    permuted.loc[test, "seg1__padim__q995"] = rng.normal(0, 1, int(test.sum()))  # test features too
    second = run_selection(permuted, DETECTORS, config=FAST)
    assert second.chosen == first.chosen
    pd.testing.assert_frame_equal(second.evidence, first.evidence)


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


def test_few_bad_rows_never_let_a_combination_win():
    selection = run_selection(_table("segment", n_good=20, n_bad=2, seeds=(0,)), DETECTORS, config=FAST)
    assert selection.evidence["one_bad_margin"].max() == np.inf
    assert selection.chosen["c"] in DETECTORS


def test_selected_scores_are_the_chosen_methods_rows():
    table = _table("max", n_good=10, n_bad=4, seeds=(0,))
    test = table[table.role == "test"]
    scores = pd.concat(
        [
            pd.DataFrame({"image_id": test.image_id, "split_seed": 0, "method": m, "score": test[f"{d}__max"]})
            for m, d in (("patchcore", "patchcore"), ("padim", "padim"))
        ]
    )
    rows = selected_scores(scores, table, {"c": "patchcore"})
    assert set(rows.method) == {SELECTED}
    np.testing.assert_array_equal(rows.score.to_numpy(), test["patchcore__max"].to_numpy())


def test_single_input_model_scores_its_column_exactly():
    model = single_input_model("patchcore__max")
    values = np.array([[-3.0], [0.5], [20.0]])
    np.testing.assert_array_equal(brf_scores(model, values), values[:, 0])
    assert model.get_booster().feature_names == ["patchcore__max"]


def test_selection_params_check_their_ranges():
    with pytest.raises(ValueError, match="operating_weight"):
        SelectionParams(operating_weight=1.5)


def test_rows_too_few_to_fold_weigh_only_single_inputs():
    selection = run_selection(_table("max", n_good=20, n_bad=1, seeds=(0,)), DETECTORS, config=FAST)
    evidence = selection.evidence.set_index("method")
    assert selection.chosen["c"] in DETECTORS
    assert (
        not evidence["wins"].any()
        and evidence.loc["padim+patchcore+segad", "auroc"] != evidence.loc["padim+patchcore+segad", "auroc"]
    )


def test_selection_folds_hold_out_whole_defect_types_where_the_rows_name_them():
    from segad.meta.selection import fold_ids

    labels = np.r_[np.zeros(20, int), np.ones(9, int)]
    types = np.array(["good"] * 20 + ["pit"] * 5 + ["scratch"] * 4, dtype=object)
    fold = fold_ids(labels, seed=0, n_folds=5, defect_types=types)
    assert set(fold) == {0, 1} and len(set(fold[types == "pit"])) == len(set(fold[types == "scratch"])) == 1
    assert set(fold_ids(labels, seed=0, n_folds=5)) == {0, 1, 2, 3, 4}  # no types: stratified 5-fold
