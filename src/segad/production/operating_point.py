"""The operating point of a bundle: a threshold on the SegAD score and the decision it makes.

- Operating point for a target miss rate m (e.g. 0.02 = at most 2 % of bad parts accepted):
  threshold = the m-quantile (numpy's linear one) of the held-out bad scores, the PGm operating
  point of "Beyond Academic Benchmarks"; a part is rejected when ``score >= threshold``.
  Expected good-part pass rate = share of held-out good scores below the threshold (= PGm of
  `segad.evaluation.metrics`); expected miss rate = share of held-out bad scores below it (<= m up to the
  quantile's interpolation).
- Decisions: ``accept``, ``reject``, or ``error`` for an image that could not be scored. An error
  is never counted as a pass.

Example:
    >>> import numpy as np
    >>> from segad.production.operating_point import choose_operating_point, decide
    >>> rng = np.random.default_rng(0)
    >>> labels = np.r_[np.zeros(500, int), np.ones(100, int)]
    >>> scores = np.r_[rng.normal(0, 1, 500), rng.normal(4, 1, 100)]
    >>> op = choose_operating_point(labels, scores, max_miss_rate=0.02)
    >>> op.expected_miss_rate <= 0.02, round(op.expected_pass_rate, 3)
    (True, 0.99)
    >>> decide(np.array([op.threshold - 1, op.threshold, np.nan]), op.threshold).tolist()
    ['accept', 'reject', 'error']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from segad.evaluation.metrics import pg, split_scores
from segad.ingestion.defects import is_synthetic
from segad.meta.blend import Blend
from segad.meta.held_out import fold_ids, judged_rows

ACCEPT, REJECT, ERROR = "accept", "reject", "error"


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold on the SegAD score and what it is expected to do.

    Attributes:
        threshold: reject when score >= threshold (score units: BRF raw margin).
        target_miss_rate: largest share of bad parts allowed to pass, in [0, 1].
        expected_pass_rate: share of held-out good parts accepted (PG at the target), [0, 1].
        expected_miss_rate: share of held-out bad parts accepted, [0, 1].
        n_good, n_bad: held-out images the threshold was chosen on.
        source: where the held-out scores came from (free text, for the manifest).
    """

    threshold: float
    target_miss_rate: float
    expected_pass_rate: float
    expected_miss_rate: float
    n_good: int
    n_bad: int
    source: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def choose_operating_point(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    max_miss_rate: float = 0.02,
    source: str = "",
) -> OperatingPoint:
    """Threshold at the `max_miss_rate` quantile of the bad scores (the PGn operating point).

    Args:
        labels: 0 good / 1 bad per held-out image, (N,).
        scores: held-out scores (N,), higher = more anomalous. Use scores of a model that did not
            see these images (e.g. out-of-fold BRF scores), or the rates are optimistic.
        max_miss_rate: target share of bad parts accepted, in (0, 1).
        source: description stored with the result.
    """
    if not 0.0 < max_miss_rate < 1.0:
        raise ValueError(f"max_miss_rate must be in (0, 1), got {max_miss_rate}")
    good, bad = split_scores(labels, scores, name="operating-point scores")
    if bad.size < int(np.ceil(1.0 / max_miss_rate)):
        # fewer than 1/m bad images: the m-quantile is the minimum or an interpolation below
        # the second-smallest score; allowed, but say so in the source.
        source = (source + "; " if source else "") + (
            f"only {bad.size} bad images for a {max_miss_rate:.1%} miss rate: threshold is "
            "interpolated between the lowest bad scores"
        )
    threshold = float(np.quantile(bad, max_miss_rate))
    return OperatingPoint(
        threshold=threshold,
        target_miss_rate=float(max_miss_rate),
        expected_pass_rate=pg(labels, scores, n=100.0 * max_miss_rate, name="operating point"),
        expected_miss_rate=float(np.mean(bad < threshold)),
        n_good=int(good.size),
        n_bad=int(bad.size),
        source=source,
    )


def out_of_fold_scores(
    features: Any,
    labels: np.ndarray,
    config=None,
    seed: int = 0,
    n_folds: int = 5,
    fit=None,
    fold_of: np.ndarray | None = None,
) -> np.ndarray:
    """Held-out BRF scores of the training rows: float64 (N,), by stratified k-fold.

    Each row is scored by a BRF (`segad.meta.brf.fit_brf`, same `config` and `seed`) fitted on the
    other folds only, so the scores behave like those of unseen parts. Folds are drawn with
    `seed`; `n_folds` is lowered to the number of bad (or good) rows when there are fewer.
    `fit` replaces `fit_brf` (e.g. `segad.meta.brf_store.BRFStore.fit`, which reuses stored models).
    `features`: float (N, F), an array or a DataFrame (its column names give the BRF's monotone
    constraints, as in the brf stage). `fold_of` (N,) gives each row's fold instead
    (`segad.meta.held_out.fold_ids`: whole defect types held out), so the scores are those the
    selection computed.
    """
    from sklearn.model_selection import StratifiedKFold

    from segad.meta.brf import BRFConfig, brf_scores, fit_brf

    named = hasattr(features, "columns")  # a DataFrame keeps the names the monotone constraints need
    features = features.astype(np.float64).reset_index(drop=True) if named else np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    n_minority = int(min((labels == 0).sum(), (labels == 1).sum()))
    folds = min(int(n_folds), n_minority)
    if folds < 2:
        raise ValueError(
            f"out-of-fold scores need at least 2 good and 2 bad rows, got {int((labels == 0).sum())} "
            f"good and {int((labels == 1).sum())} bad"
        )
    config = config or BRFConfig()
    fit = fit or fit_brf
    scores = np.full(labels.shape[0], np.nan)
    if fold_of is not None:
        fold_of = np.asarray(fold_of)
        splits = [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in np.unique(fold_of)]
    else:
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed)).split(features, labels))
    folds = len(splits)
    for k, (fit_rows, held_rows) in enumerate(splits):
        fit_part, held_part = (
            (features.iloc[fit_rows], features.iloc[held_rows]) if named else (features[fit_rows], features[held_rows])
        )
        model = fit(fit_part, labels[fit_rows], config, seed=seed, context=f"out-of-fold {k + 1}/{folds}")
        scores[held_rows] = brf_scores(model, held_part)
    return scores


def decide(scores: np.ndarray, threshold: float) -> np.ndarray:
    """'reject' where score >= threshold, 'accept' below, 'error' where the score is not finite."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.where(scores >= threshold, REJECT, ACCEPT).astype(object)
    out[~np.isfinite(scores)] = ERROR
    return out


def training_operating_point(
    rows: pd.DataFrame,
    columns: list[str],
    config,
    seed: int,
    category: str,
    n_folds: int,
    max_miss_rate: float,
    fit=None,
    fitted: bool = True,
    blend_column: str | None = None,
) -> tuple[OperatingPoint, Blend | None]:
    """(threshold at `max_miss_rate` (``bundle.max_miss_rate``) on out-of-fold BRF scores of the
    brf_train `rows`, the blend the bundle ships or None).

    With `blend_column` (the strongest member's score column, `segad.meta.blend`) the out-of-fold
    BRF scores of the good rows and that column's values of them are the blend's references, and
    the threshold is chosen on the blended scores, the scores the bundle will give.

    The `n_folds` (``bundle.oof_folds``) folds are the selection's (`segad.meta.held_out.fold_ids`):
    with ``bundle.oof_folds`` equal to ``brf.selection.folds`` (both 5 by default) the blend and its
    scores are those of the ``selected`` rows. The judged rows are `segad.meta.held_out.judged_rows`. A single input (``fitted`` False) needs no fold: its scores on those rows
    are already those of unseen parts.
    """
    labels = rows["label"].to_numpy().astype(np.int64)
    folds = int(n_folds)
    if fitted:
        types = rows["defect_type"].to_numpy() if "defect_type" in rows.columns else None
        held_out = out_of_fold_scores(
            rows[columns],
            labels,
            config,
            seed=seed,
            n_folds=folds,
            fit=fit,
            fold_of=fold_ids(labels, seed, folds, types),
        )
    else:
        held_out = rows[columns[0]].to_numpy(np.float64)
    blend = None
    if blend_column is not None:
        member = rows[blend_column].to_numpy(np.float64)
        blend = Blend.of(blend_column, held_out[labels == 0], member[labels == 0])
        held_out = blend.score(held_out, member)
    synthetic = is_synthetic(rows["image_id"]).to_numpy()
    judged = judged_rows(labels, rows["image_id"])
    source = (
        (
            f"{folds}-fold out-of-fold BRF scores of the brf_train rows (whole defect types held out where "
            "they are two or more) "
            if fitted
            else f"the single input {columns[0]} on the brf_train rows "
        )
        + (f"blended with {blend_column} " if blend is not None else "")
        + (
            f"(split_seed {seed}, category {category}; {int(synthetic.sum())} synthetic defects"
            f"{', which train the fold models but not the threshold' if not judged.all() else ''})"
        )
    )
    op = choose_operating_point(labels[judged], held_out[judged], max_miss_rate, source=source)
    return op, blend
