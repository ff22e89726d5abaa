"""Bootstrap intervals of the mean over seeds of AUROC, PG2 and PB2.

With fewer than ~50 bad test images PG2 and PB2 swing 10-20 points on one image, and a mean over
split seeds hides it (the seeds share the test images). `bootstrap_intervals` resamples the test
images with replacement (good and bad apart, so each resample keeps the class counts), computes
each metric per seed on the resampled images and averages over the seeds; the 2.5 % and 97.5 %
percentiles of `n_boot` such means are the 95 % interval. The generator is seeded the same way for
every method, so methods are compared on the same resamples. Metric definitions as
`segad.evaluation.metrics` (AUROC with ties one half; PG at the 2 % quantile of the bad scores;
PB above the 98 % quantile of the good ones).

Example:
    >>> import numpy as np
    >>> from segad.evaluation.bootstrap import bootstrap_intervals
    >>> labels = np.r_[np.zeros(50, int), np.ones(10, int)]
    >>> scores = np.r_[np.random.default_rng(0).normal(0, 1, 50), np.random.default_rng(1).normal(2, 1, 10)]
    >>> low, high = bootstrap_intervals([(labels, scores)], n_boot=200)["auroc"]
    >>> bool(0.5 < low < high <= 1.0)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: metrics that get an interval, and the suffixes of their columns in ``metrics``
INTERVAL_METRICS = ("auroc", "pg2", "pb2")
LOW, HIGH = "_lo", "_hi"
INTERVAL_COLUMNS = tuple(f"{m}{side}" for m in INTERVAL_METRICS for side in (LOW, HIGH))


def _resampled(good: np.ndarray, bad: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict[str, np.ndarray]:
    """AUROC, PG2 and PB2 of `n_boot` resamples of one seed's good and bad scores, (n_boot,) each."""
    counts_good = rng.multinomial(good.size, np.full(good.size, 1.0 / good.size), size=n_boot).astype(np.float64)
    counts_bad = rng.multinomial(bad.size, np.full(bad.size, 1.0 / bad.size), size=n_boot).astype(np.float64)
    kernel = (good[:, None] < bad[None, :]) + 0.5 * (good[:, None] == bad[None, :])
    auroc = ((counts_good @ kernel) * counts_bad).sum(axis=1) / (good.size * bad.size)
    good_order, bad_order = np.argsort(good), np.argsort(bad)
    pg2 = np.empty(n_boot)
    pb2 = np.empty(n_boot)
    for b in range(n_boot):
        resampled_bad = np.repeat(bad[bad_order], counts_bad[b, bad_order].astype(np.int64))
        resampled_good = np.repeat(good[good_order], counts_good[b, good_order].astype(np.int64))
        pg2[b] = np.mean(resampled_good < np.quantile(resampled_bad, 0.02))
        pb2[b] = np.mean(resampled_bad > np.quantile(resampled_good, 0.98))
    return {"auroc": auroc, "pg2": pg2, "pb2": pb2}


def bootstrap_intervals(
    seeds: Sequence[tuple[np.ndarray, np.ndarray]], n_boot: int = 500, level: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)} of the mean over `seeds` ((labels, scores) per seed) of AUROC, PG2, PB2.

    NaN bounds where a seed lacks a class or has non-finite scores.
    """
    rng = np.random.default_rng(seed)
    totals: dict[str, np.ndarray] = {m: np.zeros(n_boot) for m in INTERVAL_METRICS}
    for labels, scores in seeds:
        labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
        good, bad = scores[labels == 0], scores[labels == 1]
        if good.size == 0 or bad.size == 0 or not np.isfinite(scores).all():
            return {m: (float("nan"), float("nan")) for m in INTERVAL_METRICS}
        for metric, values in _resampled(good, bad, rng, n_boot).items():
            totals[metric] += values / len(seeds)
    tail = 100 * (1 - level) / 2
    return {m: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for m, v in totals.items()}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two intervals (low, high) overlap (NaN bounds count as overlapping: nothing told apart)."""
    if any(np.isnan(v) for v in (*a, *b)):
        return True
    return a[0] <= b[1] and b[0] <= a[1]


def rows_overlap(table, first: str, second: str, metric: str) -> bool:
    """Whether rows `first` and `second` of `table` (indexed by method) both carry `metric`'s interval
    (columns ``<metric>_lo`` / ``<metric>_hi``, finite) and the two intervals overlap; False where
    an interval is missing (nothing to tell apart by it)."""
    bounds = [f"{metric}{LOW}", f"{metric}{HIGH}"]
    if not set(bounds) <= set(table.columns):
        return False
    (a_lo, a_hi), (b_lo, b_hi) = (table.loc[name, bounds].astype(float) for name in (first, second))
    return not np.isnan([a_lo, a_hi, b_lo, b_hi]).any() and overlap((a_lo, a_hi), (b_lo, b_hi))
