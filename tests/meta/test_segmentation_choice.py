"""The out-of-fold choice of automatic segments (segad.meta.segmentation_choice): brf_train rows
only, the simplest candidate unless a richer one clearly pays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segad.meta.brf import BRFConfig
from segad.meta.held_out import HeldOut
from segad.meta.segmentation_choice import (
    EVIDENCE_COLUMNS,
    choose_segmentations,
    chosen_of,
    chosen_segmentation,
    simplest_within,
)
from segad.segments.features import build_feature_table
from segad.segments.label_maps import single_segment_map
from segad.segments.segment_maps import Alternative, SegmentMaps

FAST = BRFConfig(n_estimators=3, num_parallel_tree=60, n_jobs=1)
SIZE = 16


def _halves() -> np.ndarray:
    labels = np.zeros((SIZE, SIZE), np.int64)
    labels[SIZE // 2 :] = 1
    return labels


def _segment_maps() -> SegmentMaps:
    """One category ``c`` whose candidates are one segment and top / bottom halves; it starts with one."""
    seg = SegmentMaps(method="auto_select", size=(SIZE, SIZE), n_segments={})
    seg.alternatives["c"] = {
        "single": Alternative("builtin:single", 1, labels=single_segment_map((SIZE, SIZE))),
        "auto": Alternative("halves", 2, labels=_halves()),
    }
    return seg.with_choice({"c": "single"})


def _maps(defect: str, seeds=(0, 1), n_good: int = 30, n_bad: int = 15, seed: int = 0):
    """(rows, map_index, maps by key) of category ``c``: brf_train and test rows per split seed.

    ``local``: every map's top half is speckle (exponential noise with spikes far above any
    defect), a bad map has a 3 x 3 blob of 1.5 in the quiet bottom half (only the bottom half's
    statistics see it). ``global``: maps are quiet noise, a bad map is raised by 3 (every statistic
    of every segment sees it)."""
    rng = np.random.default_rng(seed)
    rows, index, maps = [], [], {}
    for split_seed in seeds:
        for role, good, bad in (("brf_train", n_good, n_bad), ("test", n_good, n_bad)):
            for i, label in enumerate([0] * good + [1] * bad):
                image_id = f"{role}/{split_seed}/{i}.png"
                m = np.empty((SIZE, SIZE), np.float32)
                m[:] = rng.normal(0.0, 0.1, (SIZE, SIZE))
                if defect == "local":
                    m[: SIZE // 2] = rng.exponential(1.0, (SIZE // 2, SIZE)) ** 2
                if label and defect == "local":
                    y, x = rng.integers(SIZE // 2, SIZE - 3), rng.integers(0, SIZE - 3)
                    m[y : y + 3, x : x + 3] += 1.5
                elif label:
                    m += 3.0
                key = f"k/{image_id}"
                maps[key] = m
                rows.append(
                    {
                        "image_id": image_id,
                        "split_seed": split_seed,
                        "role": role,
                        "label": label,
                        "defect_type": "blob" if label else "good",
                        "unseen": False,
                        "category": "c",
                        "source_image_id": image_id,
                    }
                )
                index.append({"image_id": image_id, "split_seed": split_seed, "map_key": key})
    return pd.DataFrame(rows), pd.DataFrame(index), maps


def _choose(rows, index, maps, fit=None):
    def features_of(chosen_rows, segmentation):
        return build_feature_table(chosen_rows, {"d": index}, {"d": maps.__getitem__}, segmentation)

    return choose_segmentations(rows, _segment_maps(), features_of, ["d"], FAST, fit=fit)


def _with_map_index_columns(index: pd.DataFrame) -> pd.DataFrame:
    from segad.detection.stage import MAP_INDEX_COLUMNS

    return index.reindex(columns=MAP_INDEX_COLUMNS).assign(
        image_id=index["image_id"], split_seed=index["split_seed"], map_key=index["map_key"]
    )


def test_segments_that_separate_a_local_defect_from_speckle_are_chosen():
    rows, index, maps = _maps("local")
    chosen, evidence = _choose(rows, _with_map_index_columns(index), maps)
    assert chosen == {"c": "auto"}
    assert list(evidence.columns) == EVIDENCE_COLUMNS
    by_name = evidence.set_index("segmentation")
    assert by_name.loc["auto", "chosen"] and not by_name.loc["single", "chosen"]
    assert by_name.loc["auto", "auroc"] > by_name.loc["single", "auroc"] + 0.1
    assert by_name.loc["single", "shortfall"] > by_name.loc["single", "shortfall_se"]
    assert list(by_name["n_segments"]) == [1, 2]


def test_one_segment_ships_when_segments_add_nothing():
    rows, index, maps = _maps("global")
    chosen, evidence = _choose(rows, _with_map_index_columns(index), maps)
    assert chosen == {"c": "single"}  # both separate the classes: the simpler one ships
    by_name = evidence.set_index("segmentation")
    # a tie: both separate every held-out row, so the simpler one ships
    assert list(by_name["utility"]) == [1.0, 1.0] and by_name.loc["auto", "shortfall"] == 0.0


def test_the_choice_is_independent_of_the_test_rows():
    rows, index, maps = _maps("local")
    index = _with_map_index_columns(index)
    chosen, evidence = _choose(rows, index, maps)
    test = rows["role"] == "test"
    shuffled = rows.copy()
    shuffled.loc[test, "label"] = np.random.default_rng(1).permutation(rows.loc[test, "label"].to_numpy())
    for key in rows.loc[test, "image_id"]:  # and other test maps altogether
        maps[f"k/{key}"] = np.zeros((SIZE, SIZE), np.float32)
    chosen_again, evidence_again = _choose(shuffled, index, maps)
    assert chosen_again == chosen
    pd.testing.assert_frame_equal(evidence_again, evidence)


def test_too_few_bad_rows_keep_the_current_segments_and_say_so(caplog):
    rows, index, maps = _maps("local", n_bad=1)
    chosen, evidence = _choose(rows, _with_map_index_columns(index), maps)
    assert chosen == {}
    assert evidence[["category", "segmentation", "chosen"]].to_dict("records") == [
        {"category": "c", "segmentation": "", "chosen": False}
    ]
    assert "too few brf_train rows to choose out of fold" in caplog.text


def test_the_chosen_segments_are_applied_for_their_dataset_and_regime_only():
    evidence = pd.DataFrame(
        {
            "dataset": ["x", "x", "y"],
            "benchmark": ["high_shot", "high_shot", "high_shot"],
            "category": ["c", "c", "c"],
            "segmentation": ["single", "auto", "single"],
            "chosen": [False, True, True],
        }
    )
    assert chosen_of(evidence, "x", "high_shot") == {"c": "auto"}
    assert chosen_of(evidence, "x", "low_shot") == {}
    seg = chosen_segmentation(_segment_maps(), evidence, "x", "high_shot")
    assert seg.n_segments["c"] == 2 and seg.sources["c"].startswith("auto (chosen out of fold)")
    assert chosen_segmentation(_segment_maps(), evidence, "y", "high_shot").n_segments["c"] == 1


def test_a_richer_candidate_must_beat_the_simpler_by_more_than_one_bad_image():
    y = np.array([0] * 6 + [1] * 3)
    ids = np.array([f"g{i}" for i in range(6)] + ["b0", "b1", "b2"])
    simple = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.45, 0.6, 0.7])  # one bad image among the goods
    rich = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.8, 0.9, 1.0])  # perfect
    pairs = [HeldOut(y, ids, {"single": simple, "auto": rich})] * 3
    chosen, evidence = simplest_within(pairs, ["single", "auto"], miss_rate=0.02, weight=0.5, se_multiplier=1.0)
    # the gain rests on one bad image (b0): dropping it makes the two equal, so the simpler ships
    assert chosen == "single"
    row = evidence.set_index("segmentation").loc["single"]
    assert row["shortfall"] > 0 and row["one_bad_margin"] >= row["shortfall"]


def test_a_rerun_on_the_same_rows_fits_nothing(tmp_path):
    from segad.meta.brf_store import BRFStore

    rows, index, maps = _maps("local")
    index = _with_map_index_columns(index)
    store = BRFStore(tmp_path / "brf_store")
    chosen, evidence = _choose(rows, index, maps, fit=store.fit)
    assert store.fitted == 2 * 2 * 5 and store.reused == 0  # 2 candidates x 2 seeds x 5 folds
    again = BRFStore(tmp_path / "brf_store")
    chosen_again, evidence_again = _choose(rows, index, maps, fit=again.fit)
    assert again.fitted == 0 and again.reused == 2 * 2 * 5
    assert chosen_again == chosen
    pd.testing.assert_frame_equal(evidence_again, evidence)
