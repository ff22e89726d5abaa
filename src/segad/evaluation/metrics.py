"""Image-level metrics for anomaly detection, with bad (defective) images as the positive class.

Definitions (scores: higher = more anomalous; quantiles are numpy's default linear ones):

- AUROC: area under the ROC curve; ties between a good and a bad score count one half
  (Mann-Whitney U / (n_good * n_bad)): scikit-learn's ``roc_auc_score``.
- FPR@95TPR: threshold = 5% quantile of the bad scores; FPR = share of good scores >= threshold.
  Equals ``1 - PG5`` by construction.
- PGn ("presorted good", TNR at n% FNR): threshold = n% quantile of the bad scores;
  PGn = share of good scores < threshold. PG2 is the industrial headline number.
- PBn ("presorted bad", TPR at n% FPR): threshold = (100 - n)% quantile of the good scores;
  PBn = share of bad scores > threshold.
- F1-max: the best F1 over all thresholds "bad if score >= t" (t over the distinct scores), from
  scikit-learn's ``precision_recall_curve``.
- AP: average precision, sum over thresholds of (R_k - R_{k-1}) * P_k: scikit-learn's
  ``average_precision_score``. An AUPR integrated with the trapezoid rule is a different number
  (docs/metrics.md).

AUROC, the ROC curve, F1-max and AP are scikit-learn's; PGn, PBn and FPR@95TPR (quantile
thresholds, defined above) are computed here.

All rates are fractions in [0, 1]. Every function raises `MetricInputError` naming the evaluated
set when it has no good or no bad image, or when a score is NaN / infinite.

Example:
    >>> import numpy as np
    >>> from segad.evaluation.metrics import image_metrics, pg, aggregate_over_seeds
    >>> labels = np.array([0, 0, 0, 0, 1, 1])
    >>> scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.95])
    >>> m = image_metrics(labels, scores, name="toy")
    >>> round(m.auroc, 4), m.n_good, m.n_bad
    (0.875, 4, 2)
    >>> round(pg(labels, scores, n=2), 4)   # threshold = 2% quantile of bad = 0.803
    0.75
    >>> round(m.fpr95tpr + pg(labels, scores, n=5), 6)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as sklearn_metrics
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

#: Metric columns of ``metrics.csv`` (docs/schemas.md), in order.
METRIC_COLUMNS: tuple[str, ...] = ("auroc", "fpr95tpr", "pg2", "pb2", "f1max", "ap")
#: Count columns of ``metrics.csv``.
COUNT_COLUMNS: tuple[str, ...] = ("n_good", "n_bad")


class MetricInputError(ValueError):
    """Scores or labels cannot be evaluated; the message names the set and the problem."""


@dataclass(frozen=True)
class ImageMetrics:
    """Image-level metrics of one evaluated set (fractions in [0, 1]; counts of images)."""

    auroc: float
    fpr95tpr: float
    pg2: float
    pb2: float
    f1max: float
    ap: float
    n_good: int
    n_bad: int

    def as_dict(self) -> dict[str, float | int]:
        """The metrics as a flat dict with the ``metrics.csv`` column names."""
        return asdict(self)


def split_scores(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and split scores into (good, bad) float64 arrays.

    Args:
        labels: 0 (good) / 1 (bad) per image, shape (N,).
        scores: anomaly score per image, shape (N,), higher = more anomalous.
        name: names the evaluated set in error messages.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1 or labels.shape != scores.shape:
        raise MetricInputError(
            f"{name}: labels and scores must be 1-D arrays of the same length, "
            f"got shapes {labels.shape} and {scores.shape}"
        )
    unknown = set(np.unique(labels).tolist()) - {0, 1}
    if unknown:
        raise MetricInputError(f"{name}: labels must be 0 (good) or 1 (bad), found {sorted(unknown)}")
    if not np.isfinite(scores).all():
        n_bad_values = int((~np.isfinite(scores)).sum())
        raise MetricInputError(f"{name}: {n_bad_values} score(s) are NaN or infinite")
    good, bad = scores[labels == 0], scores[labels == 1]
    if good.size == 0:
        raise MetricInputError(
            f"{name}: no good image (label 0) among {scores.size} scores; the metric needs both classes"
        )
    if bad.size == 0:
        raise MetricInputError(
            f"{name}: no bad image (label 1) among {scores.size} scores; the metric needs both classes"
        )
    return good, bad


def _check_percent(n: float, what: str) -> float:
    if not 0.0 <= n <= 100.0:
        raise ValueError(f"{what} must be a percentage in [0, 100], got {n}")
    return float(n)


def _checked(labels, scores, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64, scores float64) after `split_scores`' checks, for scikit-learn."""
    split_scores(labels, scores, name)
    return np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def auroc(labels, scores, name: str = "scores") -> float:
    """Area under the ROC curve (ties count one half): scikit-learn's ``roc_auc_score``."""
    return float(roc_auc_score(*_checked(labels, scores, name)))


def pg(labels, scores, n: float = 2.0, name: str = "scores") -> float:
    """PGn: TNR at n% FNR. Threshold = n% quantile of bad scores; share of good scores below it."""
    n = _check_percent(n, "PGn's n")
    good, bad = split_scores(labels, scores, name)
    threshold = np.quantile(bad, n / 100.0)
    return float(np.mean(good < threshold))


def pb(labels, scores, n: float = 2.0, name: str = "scores") -> float:
    """PBn: TPR at n% FPR. Threshold = (100-n)% quantile of good scores; share of bad above it."""
    n = _check_percent(n, "PBn's n")
    good, bad = split_scores(labels, scores, name)
    threshold = np.quantile(good, 1.0 - n / 100.0)
    return float(np.mean(bad > threshold))


def fpr_at_tpr(labels, scores, tpr: float = 0.95, name: str = "scores") -> float:
    """FPR at the given TPR: threshold = (1-tpr) quantile of bad scores; share of good >= it.

    ``fpr_at_tpr(..., 0.95)`` is FPR@95TPR and equals ``1 - pg(..., n=5)``.
    """
    if not 0.0 <= tpr <= 1.0:
        raise ValueError(f"tpr must be in [0, 1], got {tpr}")
    good, bad = split_scores(labels, scores, name)
    threshold = np.quantile(bad, 1.0 - tpr)
    return float(np.mean(good >= threshold))


def roc_curve(labels, scores, name: str = "scores") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds), one per distinct score, starting at (0, 0) with threshold
    +inf: scikit-learn's ``roc_curve`` keeping every point (``drop_intermediate=False``)."""
    fpr, tpr, thresholds = sklearn_metrics.roc_curve(*_checked(labels, scores, name), drop_intermediate=False)
    return fpr, tpr, thresholds


def f1_max(labels, scores, name: str = "scores") -> float:
    """Best F1 over the thresholds 'bad if score >= t', t over the distinct scores (scikit-learn's
    ``precision_recall_curve``; its closing point, recall 0, has F1 0)."""
    precision, recall, _ = precision_recall_curve(*_checked(labels, scores, name))
    denominator = precision + recall
    f1 = np.divide(2.0 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(f1.max())


def average_precision(labels, scores, name: str = "scores") -> float:
    """Average precision, sum over thresholds of (R_k - R_{k-1}) * P_k: scikit-learn's
    ``average_precision_score``, clipped to [0, 1] (its sum of precision x recall steps can end a
    rounding error above 1, e.g. 1.0000000000000002)."""
    return min(1.0, float(average_precision_score(*_checked(labels, scores, name))))


def image_metrics(labels, scores, name: str = "scores") -> ImageMetrics:
    """All ``metrics.csv`` metrics of one evaluated set (see the module docstring)."""
    good, bad = split_scores(labels, scores, name)
    return ImageMetrics(
        auroc=auroc(labels, scores, name),
        fpr95tpr=fpr_at_tpr(labels, scores, 0.95, name),
        pg2=pg(labels, scores, 2.0, name),
        pb2=pb(labels, scores, 2.0, name),
        f1max=f1_max(labels, scores, name),
        ap=average_precision(labels, scores, name),
        n_good=int(good.size),
        n_bad=int(bad.size),
    )


def aggregate_over_seeds(
    table: pd.DataFrame,
    keys: Sequence[str],
    seed_column: str = "split_seed",
    value_columns: Sequence[str] = METRIC_COLUMNS + COUNT_COLUMNS,
    ddof: int = 1,
) -> pd.DataFrame:
    """Per-seed rows followed by ``mean`` and ``std`` rows over the seeds of each key group.

    Args:
        table: one row per (keys..., seed) with the value columns.
        keys: columns identifying a group (e.g. dataset, category, method, subset).
        seed_column: the seed column; in the result it holds the seed as a string, or
            ``"mean"`` / ``"std"`` on the aggregate rows.
        value_columns: columns to aggregate (NaN-aware).
        ddof: delta degrees of freedom of the std (1: sample std; NaN with a single seed).

    Returns:
        A new frame with the columns of ``table``: the per-seed rows, then per group one mean
        row and one std row. Group order follows first appearance in ``table``.
    """
    keys = list(keys)
    missing = [c for c in [*keys, seed_column, *value_columns] if c not in table.columns]
    if missing:
        raise KeyError(f"aggregate_over_seeds: table lacks columns {missing}")
    duplicated = table.duplicated([*keys, seed_column])
    if duplicated.any():
        raise ValueError(
            f"aggregate_over_seeds: {int(duplicated.sum())} duplicated (keys, seed) rows; "
            f"first: {table.loc[duplicated, [*keys, seed_column]].iloc[0].to_dict()}"
        )
    per_seed = table.copy()
    per_seed[seed_column] = per_seed[seed_column].astype(str)
    value_columns = list(value_columns)
    grouped = table.groupby(keys, sort=False, dropna=False)[value_columns]
    mean = grouped.mean().reset_index()
    mean[seed_column] = "mean"
    std = grouped.std(ddof=ddof).reset_index()
    std[seed_column] = "std"
    # keep each group's mean and std together (groupby(sort=False) keeps first-appearance order)
    mean["_order"], std["_order"] = np.arange(len(mean)), np.arange(len(std))
    aggregates = pd.concat([mean, std], ignore_index=True)
    aggregates = aggregates.sort_values("_order", kind="mergesort").drop(columns="_order")
    result = pd.concat([per_seed, aggregates], ignore_index=True)
    return result[list(table.columns)]
