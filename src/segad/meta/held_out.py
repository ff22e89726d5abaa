"""Held-out scores for the do-no-harm selection (`segad.meta.selection`): the folds, the candidates'
out-of-fold scores and their metrics.

Per (seed, fold) pair the held-out rows give AUROC and PG at a miss rate; their utility is
``(1 - weight) * AUROC + weight * PG``. `one_bad_margin` measures how much one bad image can move
a mean paired utility gain.

Example:
    >>> import numpy as np
    >>> from segad.meta.held_out import held_out_metrics
    >>> held_out_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), 0.02)
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["HeldOut", "fold_ids", "held_out_metrics", "judged_rows", "one_bad_margin", "out_of_fold", "utility_of"]


def _auroc_contributions(good: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Per bad score: share of good scores below it (ties count half); their mean is the AUROC."""
    good = np.sort(good)
    below = np.searchsorted(good, bad, side="left")
    upto = np.searchsorted(good, bad, side="right")
    return (below + 0.5 * (upto - below)) / good.size


def _pg(good: np.ndarray, bad: np.ndarray, miss_rate: float) -> float:
    """PG at `miss_rate` (`segad.evaluation.metrics.pg`): good share below the bad quantile."""
    return float(np.mean(good < np.quantile(bad, miss_rate)))


def utility_of(auroc, pg, weight: float):
    """Utility of AUROC and PG (floats or arrays): ``(1 - weight) * AUROC + weight * PG``."""
    return (1.0 - weight) * auroc + weight * pg


@dataclass(frozen=True)
class HeldOut:
    """One (seed, fold) pair's held-out rows: labels (n,) in {0, 1}, image ids (n,), method -> scores (n,)."""

    labels: np.ndarray
    image_ids: np.ndarray
    scores: Mapping[str, np.ndarray]


def held_out_metrics(labels: np.ndarray, scores: np.ndarray, miss_rate: float) -> tuple[float, float]:
    """(AUROC, PG at `miss_rate`) of held-out rows; NaN where a class or a finite score is missing."""
    good, bad = scores[labels == 0], scores[labels == 1]
    if good.size == 0 or bad.size == 0 or not (np.isfinite(good).all() and np.isfinite(bad).all()):
        return (np.nan, np.nan)
    return float(_auroc_contributions(good, bad).mean()), _pg(good, bad, miss_rate)


def one_bad_margin(pairs: Sequence[HeldOut], richer: str, baseline: str, miss_rate: float, weight: float) -> float:
    """Largest change of the mean paired utility gain (richer - baseline) that dropping one bad image causes.

    The gain is the mean over the (seed, fold) pairs where both have a utility, as `choose` weighs
    it; a bad image is dropped from every pair that holds it (an image can be a brf_train row of
    several split seeds). Fewer than 3 bad images in all: infinite (no combination can win).
    """

    def gain_of(pair: HeldOut, keep: np.ndarray) -> float:
        r = held_out_metrics(pair.labels[keep], pair.scores[richer][keep], miss_rate)
        b = held_out_metrics(pair.labels[keep], pair.scores[baseline][keep], miss_rate)
        return utility_of(r[0], r[1], weight) - utility_of(b[0], b[1], weight)

    gains = np.array([gain_of(pair, np.ones(pair.labels.size, bool)) for pair in pairs], dtype=np.float64)
    valid = np.isfinite(gains)
    holders: dict[str, list[tuple[int, int]]] = {}
    for p, pair in enumerate(pairs):
        if valid[p]:
            for bad_row in np.flatnonzero(pair.labels == 1):
                holders.setdefault(str(pair.image_ids[bad_row]), []).append((p, int(bad_row)))
    if len(holders) < 3:
        return float("inf")
    full = float(gains[valid].mean())
    largest = 0.0
    for held in holders.values():
        changed = gains.copy()
        for p, row in held:
            keep = np.ones(pairs[p].labels.size, bool)
            keep[row] = False
            changed[p] = gain_of(pairs[p], keep)  # NaN when the pair held no other bad image
        kept = valid & np.isfinite(changed)
        without = float(changed[kept].mean()) if kept.any() else 0.0
        largest = max(largest, abs(without - full))
    return largest


def fold_ids(labels: np.ndarray, seed: int, n_folds: int, defect_types: np.ndarray | None = None) -> np.ndarray:
    """Fold ids (0..k-1) of the rows, drawn with `seed`: whole defect types held out where the bad
    rows name two or more (`segad.ingestion.splits.defect_type_folds`), else stratified k-fold;
    k lowered to the minority count (and to the number of types)."""
    from segad.ingestion.splits import defect_type_folds

    labels = np.asarray(labels).astype(np.int64)
    k = min(int(n_folds), int((labels == 0).sum()), int((labels == 1).sum()))
    if k < 2:
        raise ValueError(
            f"out-of-fold selection needs at least 2 good and 2 bad brf_train rows, got "
            f"{int((labels == 0).sum())} good and {int((labels == 1).sum())} bad"
        )
    return defect_type_folds(labels, defect_types, k, int(seed))


def out_of_fold(
    rows: pd.DataFrame,
    candidates: Sequence[Any],
    columns_for: Mapping[str, list[str]],
    config,
    seed: int,
    folds: np.ndarray,
    fit=None,
) -> dict[str, np.ndarray]:
    """Held-out scores of every candidate on `rows` (one seed's brf_train rows of one category).

    `columns_for` maps a combination's method to its BRF feature columns; `fit` fits the BRFs
    (`fit_brf` by default; `segad.meta.brf_store.BRFStore.fit` reuses those of an earlier run).
    """
    from segad.meta.brf import brf_scores, fit_brf

    fit = fit or fit_brf
    labels = rows["label"].to_numpy().astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for candidate in candidates:
        if candidate.column is not None:
            out[candidate.method] = rows[candidate.column].to_numpy(np.float64)
            continue
        cols = columns_for[candidate.method]
        scores = np.full(labels.shape[0], np.nan)
        for fold in np.unique(folds):
            train = folds != fold
            model = fit(
                rows.loc[train, cols],
                labels[train],
                config,
                seed=seed,
                context=f"selection {candidate.method}, fold {fold}",
            )
            scores[~train] = brf_scores(model, rows.loc[~train, cols])
        out[candidate.method] = scores
    return out


def judged_rows(labels: np.ndarray, image_ids) -> np.ndarray:
    """bool (n,): the rows whose held-out scores count. Where real bad rows exist, synthetic defects
    (`segad.ingestion.defects.is_synthetic`) train the fold models but are not judged: a miss rate
    is a promise about real defects; without real bad rows (one_class) every row counts."""
    from segad.ingestion.defects import is_synthetic

    synthetic = is_synthetic(pd.Series(image_ids)).to_numpy()
    real_bad = bool(((np.asarray(labels) == 1) & ~synthetic).any())
    return ~synthetic if real_bad else np.ones_like(synthetic)
