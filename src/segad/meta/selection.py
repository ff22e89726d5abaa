"""Do-no-harm selection: which method to ship, decided out of fold on the brf_train rows only.

Candidates of a category: each single input (a detector alone = its own image score or map max,
the classifier g(I) alone = its cross-fitted logit) and every SegAD combination of the run. Each
is scored out of fold on the ``brf_train`` rows of every split seed: a single input needs no
fit (its detector never saw those rows, the classifier score is cross-fitted), a combination is
scored by BRFs fitted on the other folds (drawn with the split seed, the same folds for every
candidate, so differences are paired). Where the bad rows name two or more defect types, each
type is held out whole (`segad.ingestion.splits.defect_type_folds`): a supervised candidate is
then judged on defect types it never saw, as the test set's unseen defects will judge it; else
the folds are stratified k-fold.

Per (seed, fold) the held-out rows give AUROC and PG at ``miss_rate`` (the operating point a
bundle promises); the utility is ``(1 - operating_weight) * AUROC + operating_weight * PG``.

The rule is conservative:

1. The baseline is the single input with the highest mean utility.
2. A richer candidate *wins* only if its mean paired utility gain over the baseline exceeds both
   ``se_multiplier`` standard errors of that gain over all (seed, fold) pairs, and the largest
   change of that same mean gain that dropping any one bad image causes (from every pair that
   holds it): a margin one bad image could flip is no win. It must also not lose AUROC or PG by
   more than one standard error.
3. Among the winners, the one-standard-error rule: the simplest candidate (fewest members) whose
   mean utility is within one standard error of the best winner's is chosen. No winner: the
   baseline ships.

Test rows are never read: `select_methods` drops every row whose role is not ``brf_train``
before anything else.

Example:
    >>> from segad.meta.selection import SelectionParams
    >>> SelectionParams().miss_rate
    0.02
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass as plain_dataclass

import numpy as np
import pandas as pd

from segad.meta.brf import DEFAULT_BRF, brf_scores, combination_columns, fit_brf, method_name, plan_methods
from segad.meta.selection_params import DEFAULT_SELECTION, SelectionParams

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SELECTION", "SELECTED", "Candidate", "Selection", "SelectionParams", "run_selection"]

#: Method name of the selected method's rows in ``scores`` and ``metrics.csv``.
SELECTED = "selected"

#: Columns of the selection evidence table (``brf_selection``).
EVIDENCE_COLUMNS = [
    "dataset",
    "benchmark",
    "category",
    "method",
    "members",
    "n_pairs",
    "auroc",
    "auroc_se",
    "pg",
    "pg_se",
    "utility",
    "gain",
    "gain_se",
    "one_bad_margin",
    "baseline",
    "wins",
    "chosen",
]


@plain_dataclass(frozen=True)
class Candidate:
    """A method to choose from: a single input (one score column) or a SegAD combination.

    Attributes:
        method: its method name (``patchcore``, ``classifier``, ``padim+patchcore+segad``).
        members: the inputs it reads (one for a single input).
        column: the score column of a single input; None for a combination.
    """

    method: str
    members: tuple[str, ...]
    column: str | None = None

    @property
    def complexity(self) -> int:
        """0 for a single input, else the number of members."""
        return 0 if self.column is not None else len(self.members)


@plain_dataclass(frozen=True)
class Selection:
    """The outcome: the chosen method per category and the evidence table (`EVIDENCE_COLUMNS`)."""

    chosen: dict[str, str]
    evidence: pd.DataFrame


# --------------------------------------------------------------------------------------------
# metrics of held-out scores


def _auroc_contributions(good: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Per bad score: share of good scores below it (ties count half); their mean is the AUROC."""
    good = np.sort(good)
    below = np.searchsorted(good, bad, side="left")
    upto = np.searchsorted(good, bad, side="right")
    return (below + 0.5 * (upto - below)) / good.size


def _pg(good: np.ndarray, bad: np.ndarray, miss_rate: float) -> float:
    """PG at `miss_rate` (`segad.evaluation.metrics.pg`): good share below the bad quantile."""
    return float(np.mean(good < np.quantile(bad, miss_rate)))


def _utility(auroc, pg, weight: float):
    """Utility of AUROC and PG (floats or arrays): ``(1 - weight) * AUROC + weight * PG``."""
    return (1.0 - weight) * auroc + weight * pg


@plain_dataclass(frozen=True)
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
        return _utility(r[0], r[1], weight) - _utility(b[0], b[1], weight)

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


# --------------------------------------------------------------------------------------------
# candidates scored out of fold


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
    candidates: Sequence[Candidate],
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


def choose(
    pairs: Sequence[HeldOut],
    candidates: Sequence[Candidate],
    params: SelectionParams = DEFAULT_SELECTION,
) -> tuple[str, pd.DataFrame]:
    """Apply the rule (module docstring) to one category's out-of-fold evidence.

    Args:
        pairs: the held-out rows of every (seed, fold) pair, with every candidate's scores (NaN
            where a candidate was not scored: too few rows to fold).
        candidates: the candidates (at least one single input).
    Returns:
        (chosen method, evidence rows: one per candidate).
    """
    per_fold = {
        c.method: np.array(
            [held_out_metrics(p.labels, p.scores[c.method], params.miss_rate) for p in pairs], dtype=np.float64
        ).reshape(-1, 2)
        for c in candidates
    }
    w = params.operating_weight
    by_name = {c.method: c for c in candidates}
    utility = {m: (1 - w) * v[:, 0] + w * v[:, 1] for m, v in per_fold.items()}
    singles = [c.method for c in candidates if c.column is not None]
    if not singles:
        raise ValueError("selection needs at least one single input (a detector alone)")
    # pairs every single input has; a combination without scores there (too few rows to fold) cannot win
    valid = np.all([np.isfinite(utility[m]) for m in singles], axis=0)

    def se(x: np.ndarray) -> float:
        x = x[valid]
        return float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("inf")

    baseline = max(singles, key=lambda m: (float(np.mean(utility[m][valid])), m))
    rows, winners = [], []
    for candidate in candidates:
        m = candidate.method
        diff = utility[m] - utility[baseline]
        d_auroc = per_fold[m][:, 0] - per_fold[baseline][:, 0]
        d_pg = per_fold[m][:, 1] - per_fold[baseline][:, 1]
        gain, gain_se = float(np.mean(diff[valid])), se(diff)
        margin = 0.0
        wins = False
        if m != baseline and candidate.complexity > 0 and np.isfinite(diff[valid]).all():
            margin = one_bad_margin(pairs, m, baseline, params.miss_rate, w)
            wins = bool(
                gain > max(params.se_multiplier * gain_se, margin)
                and np.mean(d_auroc[valid]) > -se(d_auroc)
                and np.mean(d_pg[valid]) > -se(d_pg)
            )
        if wins:
            winners.append(m)
        rows.append(
            {
                "method": m,
                "members": "+".join(candidate.members),
                "n_pairs": int(valid.sum()),
                "auroc": float(np.mean(per_fold[m][valid, 0])),
                "auroc_se": se(per_fold[m][:, 0]),
                "pg": float(np.mean(per_fold[m][valid, 1])),
                "pg_se": se(per_fold[m][:, 1]),
                "utility": float(np.mean(utility[m][valid])),
                "gain": gain,
                "gain_se": gain_se,
                "one_bad_margin": margin,
                "baseline": m == baseline,
                "wins": wins,
            }
        )
    chosen = baseline
    if winners:
        best = max(winners, key=lambda m: float(np.mean(utility[m][valid])))
        close = [
            m
            for m in winners
            if np.mean(utility[m][valid]) >= np.mean(utility[best][valid]) - se(utility[best] - utility[m])
        ]
        chosen = min(close, key=lambda m: (by_name[m].complexity, -float(np.mean(utility[m][valid])), m))
    evidence = pd.DataFrame(rows)
    evidence["chosen"] = evidence["method"] == chosen
    return chosen, evidence


def select_methods(
    table: pd.DataFrame,
    candidates: Sequence[Candidate],
    columns_for: Mapping[str, Mapping[str, list[str]]],
    config,
    params: SelectionParams = DEFAULT_SELECTION,
    fit=None,
) -> Selection:
    """Choose one method per category from the ``brf_train`` rows of `table` (all its seeds).

    Args:
        table: the run's feature table (columns category, split_seed, role, label, image_id and
            the feature columns); rows of any other role are dropped first.
        candidates: every method to weigh (`Candidate`).
        columns_for: category -> combination method -> its BRF feature columns.
        config: the BRF settings (`segad.meta.brf.BRFConfig`) of the out-of-fold BRFs.
        fit: fits them (`out_of_fold`).
    """
    from segad.ingestion.defects import is_synthetic

    train = table[table["role"] == "brf_train"]
    chosen, frames = {}, []
    for category, rows in train.groupby("category", sort=True):
        pairs: list[HeldOut] = []
        for seed, seed_rows in rows.groupby("split_seed", sort=True):
            seed_rows = seed_rows.reset_index(drop=True)
            labels = seed_rows["label"].to_numpy().astype(np.int64)
            if min((labels == 0).sum(), (labels == 1).sum()) >= 2:
                types = seed_rows["defect_type"].to_numpy() if "defect_type" in seed_rows else None
                folds = fold_ids(labels, int(seed), params.folds, types)
                fitted = candidates
            else:  # too few rows to fold: single inputs are judged on all rows, combinations not at all
                log.warning(
                    "selection (%s, split_seed %s): %d good / %d bad brf_train rows cannot be folded; "
                    "only single inputs are weighed",
                    category,
                    seed,
                    int((labels == 0).sum()),
                    int((labels == 1).sum()),
                )
                folds = np.zeros(labels.shape[0], dtype=np.int64)
                fitted = [c for c in candidates if c.column is not None]
            scores = out_of_fold(seed_rows, fitted, columns_for[str(category)], config, int(seed), folds, fit)
            for candidate in candidates:
                scores.setdefault(candidate.method, np.full(labels.shape[0], np.nan))
            synthetic = is_synthetic(seed_rows["image_id"]).to_numpy()
            real_bad = bool(((labels == 1) & ~synthetic).any())
            judged = ~synthetic if real_bad else np.ones_like(synthetic)
            image_ids = seed_rows["image_id"].astype(str).to_numpy()
            for fold in np.unique(folds):
                held = judged & (folds == fold)
                pairs.append(HeldOut(labels[held], image_ids[held], {m: v[held] for m, v in scores.items()}))
        method, evidence = choose(pairs, candidates, params)
        chosen[str(category)] = method
        evidence.insert(0, "category", str(category))
        frames.append(evidence)
        row = evidence.set_index("method").loc[method]
        log.info(
            "selection (%s): %s ships; out of fold AUROC %.1f, PG %.1f; gain %+.2f over baseline %s "
            "(SE %.2f, one-bad-image margin %.2f; utility points x100); candidates: %s",
            category,
            method,
            100 * row["auroc"],
            100 * row["pg"],
            100 * row["gain"],
            evidence.loc[evidence["baseline"], "method"].iloc[0],
            100 * row["gain_se"],
            100 * row["one_bad_margin"],
            ", ".join(f"{r.method} {100 * r.utility:.1f}{' wins' if r.wins else ''}" for r in evidence.itertuples()),
        )
    return Selection(chosen, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())


def candidates_of(table: pd.DataFrame, detectors: Sequence[str], combinations=None) -> list[Candidate]:
    """Every single input and SegAD combination of a run (`segad.meta.brf.plan_methods`)."""
    alone, combos = plan_methods(table, detectors, combinations)
    singles = [Candidate(method, (method,), column) for method, column in alone.items()]
    return singles + [Candidate(method_name(c), tuple(sorted(c))) for c in combos]


def run_selection(
    table: pd.DataFrame,
    detectors: Sequence[str],
    combinations=None,
    config=None,
    params: SelectionParams = DEFAULT_SELECTION,
    fit=None,
) -> Selection:
    """`select_methods` over every candidate of a run's feature table (brf_train rows only);
    `fit` fits the out-of-fold BRFs (`out_of_fold`)."""
    train = table[table["role"] == "brf_train"]
    candidates = candidates_of(train, detectors, combinations)
    combos = [list(c.members) for c in candidates if c.column is None]
    return select_methods(train, candidates, combination_columns(train, combos), config or DEFAULT_BRF, params, fit)


def selected_scores(scores: pd.DataFrame, table: pd.DataFrame, chosen: Mapping[str, str]) -> pd.DataFrame:
    """The chosen method's rows of `scores` (image_id, split_seed, method, score), renamed `SELECTED`.

    `table` gives each image's category (the choice is per category).
    """
    category = table.drop_duplicates("image_id").set_index("image_id")["category"].astype(str)
    rows = scores[scores["image_id"].map(category).map(chosen) == scores["method"]].copy()
    rows["method"] = SELECTED
    return rows
