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

With ``blend`` on (the default), a combination is judged, and ships, as its blend with its
strongest member (`segad.meta.blend`): the member single input with the highest mean out-of-fold
utility. Its out-of-fold BRF scores are put on the scale of the seed's good rows (their own
out-of-fold scores, all folds), so a combination wins only if the blend, what a user gets, beats
the baseline.

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
from dataclasses import field

import numpy as np
import pandas as pd

from segad.meta.blend import Blend
from segad.meta.brf import DEFAULT_BRF, combination_columns, method_name, plan_methods
from segad.meta.held_out import (
    HeldOut,
    fold_ids,
    held_out_metrics,
    judged_rows,
    one_bad_margin,
    out_of_fold,
    utility_of,
)
from segad.meta.selection_params import DEFAULT_SELECTION, SelectionParams
from segad.schemas import BRFSelection, columns

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SELECTION", "SELECTED", "Candidate", "Selection", "SelectionParams", "run_selection"]

#: Method name of the selected method's rows in ``scores`` and ``metrics.csv``.
SELECTED = "selected"

#: Columns of the selection evidence table (``brf_selection``, `segad.schemas.BRFSelection`).
EVIDENCE_COLUMNS = list(columns(BRFSelection))


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
    """The outcome: the chosen method per category, the evidence table (`EVIDENCE_COLUMNS`) and,
    where a chosen combination ships blended, its blend per (category, split seed)."""

    chosen: dict[str, str]
    evidence: pd.DataFrame
    blends: dict[tuple[str, int], Blend] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# candidates scored out of fold


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


@plain_dataclass(frozen=True)
class SeedScores:
    """One split seed's out-of-fold evidence of a category.

    Attributes:
        seed: the split seed; rows: its brf_train rows; labels (n,) in {0, 1}; folds (n,) fold ids;
        judged (n,) bool: rows the metrics count (real rows where real bad ones exist);
        scores: method -> out-of-fold scores (n,), NaN where not scored.
    """

    seed: int
    rows: pd.DataFrame
    labels: np.ndarray
    folds: np.ndarray
    judged: np.ndarray
    scores: dict[str, np.ndarray]


def _seed_scores(rows, seed, category, candidates, columns_for, config, params, fit) -> SeedScores:
    """Every candidate's out-of-fold scores on one seed's brf_train `rows` (`out_of_fold`)."""
    labels = rows["label"].to_numpy().astype(np.int64)
    if min((labels == 0).sum(), (labels == 1).sum()) >= 2:
        types = rows["defect_type"].to_numpy() if "defect_type" in rows else None
        folds = fold_ids(labels, seed, params.folds, types)
        fitted = list(candidates)
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
    scores = out_of_fold(rows, fitted, columns_for[category], config, seed, folds, fit)
    for candidate in candidates:
        scores.setdefault(candidate.method, np.full(labels.shape[0], np.nan))
    return SeedScores(seed, rows, labels, folds, judged_rows(labels, rows["image_id"]), scores)


def _pairs(seeds: Sequence[SeedScores]) -> list[HeldOut]:
    """The held-out (seed, fold) pairs of the seeds' judged rows."""
    pairs = []
    for s in seeds:
        image_ids = s.rows["image_id"].astype(str).to_numpy()
        for fold in np.unique(s.folds):
            held = s.judged & (s.folds == fold)
            pairs.append(HeldOut(s.labels[held], image_ids[held], {m: v[held] for m, v in s.scores.items()}))
    return pairs


def strongest_members(
    pairs: Sequence[HeldOut], candidates: Sequence[Candidate], params: SelectionParams = DEFAULT_SELECTION
) -> dict[str, str]:
    """Combination method -> its member single input with the highest mean out-of-fold utility
    (ties: the first name); combinations without a single-input member are left out."""
    singles = [c.method for c in candidates if c.column is not None]

    def mean_utility(method: str) -> float:
        values = np.array([held_out_metrics(p.labels, p.scores[method], params.miss_rate) for p in pairs]).reshape(
            -1, 2
        )
        utility = utility_of(values[:, 0], values[:, 1], params.operating_weight)
        utility = utility[np.isfinite(utility)]
        return float(utility.mean()) if utility.size else -np.inf

    utility = {m: mean_utility(m) for m in singles}
    return {
        c.method: max(sorted(m for m in c.members if m in utility), key=lambda m: utility[m])
        for c in candidates
        if c.column is None and any(m in utility for m in c.members)
    }


def _blended(seed: SeedScores, partners: Mapping[str, str], columns: Mapping[str, str | None]):
    """(the seed's evidence with each partnered combination's scores blended, method -> `Blend`).

    The blend's references are the seed's good rows: the combination's out-of-fold scores of
    them (all folds) and the member's own scores; a combination never scored here is left as is.
    """
    scores, blends = dict(seed.scores), {}
    good = seed.labels == 0
    for method, member in partners.items():
        raw = seed.scores[method]
        if not np.isfinite(raw).any():
            continue
        column = str(columns[member])
        values = seed.rows[column].to_numpy(np.float64)
        blend = Blend.of(column, raw[good], values[good])
        scores[method], blends[method] = blend.score(raw, values), blend
    return SeedScores(seed.seed, seed.rows, seed.labels, seed.folds, seed.judged, scores), blends


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
    train = table[table["role"] == "brf_train"]
    singles = {c.method: c.column for c in candidates if c.column is not None}
    chosen: dict[str, str] = {}
    frames: list[pd.DataFrame] = []
    blends: dict[tuple[str, int], Blend] = {}
    for category, rows in train.groupby("category", sort=True):
        seeds = [
            _seed_scores(
                seed_rows.reset_index(drop=True), int(seed), str(category), candidates, columns_for, config, params, fit
            )
            for seed, seed_rows in rows.groupby("split_seed", sort=True)
        ]
        partners = strongest_members(_pairs(seeds), candidates, params) if params.blend else {}
        blended = [_blended(seed, partners, singles) for seed in seeds]
        method, evidence = choose(_pairs([b for b, _ in blended]), candidates, params)
        evidence.insert(evidence.columns.get_loc("wins") + 1, "blend_with", evidence["method"].map(partners).fillna(""))
        chosen[str(category)] = method
        for seed, (_, seed_blends) in zip(seeds, blended, strict=True):
            if method in seed_blends:
                blends[(str(category), seed.seed)] = seed_blends[method]
        evidence.insert(0, "category", str(category))
        frames.append(evidence)
        row = evidence.set_index("method").loc[method]
        log.info(
            "selection (%s): %s%s ships; out of fold AUROC %.1f, PG %.1f; gain %+.2f over baseline %s "
            "(SE %.2f, one-bad-image margin %.2f; utility points x100); candidates: %s",
            category,
            method,
            f" (blended with {row['blend_with']})" if row["blend_with"] else "",
            100 * row["auroc"],
            100 * row["pg"],
            100 * row["gain"],
            evidence.loc[evidence["baseline"], "method"].iloc[0],
            100 * row["gain_se"],
            100 * row["one_bad_margin"],
            ", ".join(f"{r.method} {100 * r.utility:.1f}{' wins' if r.wins else ''}" for r in evidence.itertuples()),
        )
    return Selection(chosen, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), blends)


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


def selected_scores(
    scores: pd.DataFrame,
    table: pd.DataFrame,
    chosen: Mapping[str, str],
    blends: Mapping[tuple[str, int], Blend] | None = None,
) -> pd.DataFrame:
    """The chosen method's rows of `scores` (image_id, split_seed, method, score), renamed `SELECTED`.

    `table` gives each image's category (the choice is per category) and, where `blends` holds the
    (category, split seed) of a chosen combination, the member's score of each test row: the
    selected score is then the blend (`segad.meta.blend`).
    """
    category = table.drop_duplicates("image_id").set_index("image_id")["category"].astype(str)
    of_category = scores["image_id"].map(category)
    rows = scores[of_category.map(chosen) == scores["method"]].copy()
    rows["method"] = SELECTED
    test = table[table["role"] == "test"]
    for (name, seed), blend in (blends or {}).items():
        mine = (of_category.loc[rows.index] == name) & (rows["split_seed"] == seed)
        member = test[(test["category"].astype(str) == name) & (test["split_seed"] == seed)].set_index("image_id")[
            blend.column
        ]
        values = rows.loc[mine, "image_id"].map(member).to_numpy(np.float64)
        rows.loc[mine, "score"] = blend.score(rows.loc[mine, "score"].to_numpy(np.float64), values)
    return rows
