"""segad.production.operating_point.training_operating_point: the bundle's threshold: out-of-fold BRF scores, judged on real bad rows when synthetic ones top them up."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segad.meta.brf import BRFConfig
from segad.production.operating_point import choose_operating_point, out_of_fold_scores, training_operating_point

CONFIG = BRFConfig(n_estimators=2, num_parallel_tree=5, n_jobs=1)


def _rows(n_good: int, n_real: int, n_synthetic: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    score = np.r_[rng.normal(0, 1, n_good), rng.normal(3, 1, n_real), rng.normal(6, 1, n_synthetic)]
    ids = [f"good/{i}.png" for i in range(n_good)] + [f"bad/{i}.png" for i in range(n_real)]
    ids += [f"synthetic/0/good_{i}__0.png" for i in range(n_synthetic)]
    return pd.DataFrame({"image_id": ids, "label": [0] * n_good + [1] * (n_real + n_synthetic), "padim__max": score})


def test_top_up_trains_the_folds_but_only_real_bad_rows_set_the_threshold():
    rows = _rows(40, 12, 20)
    point, blend = training_operating_point(rows, ["padim__max"], CONFIG, 0, "c", 5, 0.1)
    assert point.n_bad == 12 and point.n_good == 40
    assert "20 synthetic defects, which train the fold models but not the threshold" in point.source


def test_one_class_rows_judge_on_their_synthetic_defects():
    rows = _rows(40, 0, 20)
    point, blend = training_operating_point(rows, ["padim__max"], CONFIG, 0, "c", 5, 0.1)
    assert point.n_bad == 20 and "20 synthetic defects)" in point.source
    assert blend is None


def test_a_blended_bundle_sets_its_threshold_on_the_blended_out_of_fold_scores():
    rows = _rows(40, 12, 0)
    rows["patchcore__max"] = np.r_[np.linspace(0, 1, 40), np.linspace(0.5, 3, 12)]
    columns = ["padim__max", "patchcore__max"]
    point, blend = training_operating_point(rows, columns, CONFIG, 0, "c", 5, 0.1, blend_column="patchcore__max")
    assert blend is not None and blend.column == "patchcore__max"
    np.testing.assert_array_equal(blend.member_good, np.linspace(0, 1, 40))
    labels = rows["label"].to_numpy()
    held_out = out_of_fold_scores(rows[columns].to_numpy(), labels, CONFIG, seed=0, n_folds=5)
    np.testing.assert_array_equal(blend.model_good, np.sort(held_out[labels == 0]))
    expected = choose_operating_point(labels, blend.score(held_out, rows["patchcore__max"].to_numpy()), 0.1)
    assert point.threshold == expected.threshold
    assert "blended with patchcore__max" in point.source


def test_the_bundle_blends_with_the_selections_own_references():
    """Same rows, settings and folds: the bundle's blend is the one the selected test rows used."""
    from segad.meta.selection import run_selection

    rng = np.random.default_rng(3)
    n_good, n_bad = 60, 20
    labels = np.r_[np.zeros(n_good, int), np.ones(n_bad, int)]
    frames = []
    for role in ("brf_train", "test"):
        rows = {"image_id": [f"{role}/{i}.png" for i in range(labels.size)], "category": "c", "split_seed": 0}
        rows |= {"role": role, "label": labels}
        for det in ("padim", "patchcore"):
            rows[f"{det}__max"] = rng.normal(0, 1, labels.size) + 0.5 * labels
            for stat in ("q995", "skew", "kurtosis", "mean"):
                rows[f"seg0__{det}__{stat}"] = rng.normal(0, 1, labels.size)
        rows["seg0__padim__q995"] += 4.0 * labels
        frames.append(pd.DataFrame(rows))
    table = pd.concat(frames, ignore_index=True)
    config = BRFConfig(n_estimators=2, num_parallel_tree=5, n_jobs=1, monotone=True)
    selection = run_selection(table, ["padim", "patchcore"], config=config)
    chosen = selection.chosen["c"]
    assert chosen.endswith("+segad")
    wanted = selection.blends[("c", 0)]
    train = table[table["role"] == "brf_train"]
    columns = [c for c in table.columns if "__" in c and c.split("__")[-2] in chosen.split("+")]
    _, blend = training_operating_point(train, columns, config, 0, "c", 5, 0.02, blend_column=wanted.column)
    assert blend is not None
    np.testing.assert_allclose(blend.model_good, wanted.model_good)
    np.testing.assert_array_equal(blend.member_good, wanted.member_good)
