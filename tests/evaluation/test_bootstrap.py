"""Bootstrap intervals of the mean over seeds (segad.evaluation.bootstrap)."""

from __future__ import annotations

import numpy as np

from segad.evaluation.bootstrap import bootstrap_intervals, overlap
from segad.evaluation.metrics import auroc, pb, pg


def _seed(n_good: int, n_bad: int, shift: float, seed: int):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_good, int), np.ones(n_bad, int)]
    return labels, np.r_[rng.normal(0, 1, n_good), rng.normal(shift, 1, n_bad)]


def test_the_interval_holds_the_mean_and_narrows_with_more_bad_images():
    few = [_seed(200, 15, 2.0, s) for s in range(3)]
    many = [_seed(200, 300, 2.0, s) for s in range(3)]
    for seeds in (few, many):
        means = {
            "auroc": np.mean([auroc(*s) for s in seeds]),
            "pg2": np.mean([pg(*s) for s in seeds]),
            "pb2": np.mean([pb(*s) for s in seeds]),
        }
        intervals = bootstrap_intervals(seeds, n_boot=300)
        for metric, (low, high) in intervals.items():
            assert low <= means[metric] <= high, metric
    width = {m: bootstrap_intervals(s, n_boot=300)["auroc"] for m, s in (("few", few), ("many", many))}
    assert width["few"][1] - width["few"][0] > width["many"][1] - width["many"][0]


def test_same_seed_same_interval_and_a_missing_class_gives_nan():
    seeds = [_seed(50, 10, 1.0, 0)]
    assert bootstrap_intervals(seeds, n_boot=100) == bootstrap_intervals(seeds, n_boot=100)
    labels = np.zeros(10, int)
    assert np.isnan(bootstrap_intervals([(labels, np.arange(10.0))], n_boot=10)["auroc"][0])


def test_overlap():
    assert overlap((0.1, 0.3), (0.25, 0.5)) and not overlap((0.1, 0.2), (0.3, 0.4))
    assert overlap((float("nan"), 0.2), (0.3, 0.4))


def test_rows_overlap_needs_both_intervals():
    import pandas as pd

    from segad.evaluation.bootstrap import rows_overlap

    table = pd.DataFrame({"auroc_lo": [0.8, 0.85, 0.95], "auroc_hi": [0.9, 0.95, 0.99]}, index=["a", "b", "c"])
    assert rows_overlap(table, "a", "b", "auroc") and not rows_overlap(table, "a", "c", "auroc")
    assert not rows_overlap(table.assign(auroc_lo=float("nan")), "a", "b", "auroc")  # no interval: not told
    assert not rows_overlap(table, "a", "b", "pg2")  # the metric has no interval columns
