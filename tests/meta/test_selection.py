"""Do-no-harm selection (segad.meta.selection): out of fold on brf_train rows only, conservative."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segad.meta.brf import BRFConfig, brf_scores, single_input_model
from segad.meta.selection import (
    SELECTED,
    SelectionParams,
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


def test_a_combination_is_judged_and_selected_as_its_blend_with_its_strongest_member():
    table = _table("segment", seeds=(0, 1))
    selection = run_selection(table, DETECTORS, config=FAST)
    evidence = selection.evidence.set_index("method")
    assert selection.chosen == {"c": "padim+segad"}
    assert evidence.loc["padim+segad", "blend_with"] == "padim"
    assert evidence.loc["padim", "blend_with"] == ""  # a single input ships alone
    assert set(selection.blends) == {("c", 0), ("c", 1)}
    blend = selection.blends[("c", 1)]
    assert blend.column == "padim__max"
    good = table[(table.role == "brf_train") & (table.split_seed == 1) & (table.label == 0)]
    np.testing.assert_array_equal(blend.member_good, np.sort(good["padim__max"].to_numpy()))
    # the selected rows of the test set are the blend of the combination's BRF score and padim__max
    test = table[(table.role == "test") & (table.split_seed == 1)]
    raw = np.linspace(-1, 1, len(test))
    scores = pd.DataFrame({"image_id": test.image_id, "split_seed": 1, "method": "padim+segad", "score": raw})
    rows = selected_scores(scores, table, selection.chosen, selection.blends)
    np.testing.assert_allclose(rows.score.to_numpy(), blend.score(raw, test["padim__max"].to_numpy()))


def test_without_the_blend_a_combination_ships_its_brf_score():
    selection = run_selection(_table("segment"), DETECTORS, config=FAST, params=SelectionParams(blend=False))
    assert selection.chosen == {"c": "padim+segad"}
    assert selection.blends == {}
    assert (selection.evidence["blend_with"] == "").all()


def test_the_strongest_member_is_the_best_single_input_out_of_fold():
    selection = run_selection(_table("max"), DETECTORS, config=FAST)
    evidence = selection.evidence.set_index("method")
    assert evidence.loc["padim+patchcore+segad", "blend_with"] == "patchcore"
    assert evidence.loc["padim+segad", "blend_with"] == "padim"  # its only member
