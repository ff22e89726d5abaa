"""Which segmentation an `auto_select` category gets: one segment, static k-means segments or
per-image segments, chosen out of fold on the brf_train rows only.

Each candidate (`segad.segments.segment_maps.CANDIDATES`, simplest first) gives its own feature
table of the category's brf_train rows. One probe method is scored out of fold on each: the BRF
over every detector's segment statistics and maxima (no classifier: the choice is about the maps'
parts), with the same folds per candidate (`segad.meta.held_out.fold_ids`, drawn with the split
seed; whole defect types held out where there are two or more), so differences are paired.
Per (seed, fold) pair the held-out rows give the selection's utility
``(1 - operating_weight) * AUROC + operating_weight * PG@miss_rate``.

The rule prefers the simpler candidate: the best candidate by mean utility is found, then the
simplest candidate whose mean utility is below the best's by no more than ``se_multiplier``
standard errors of the paired difference, or than the change one bad image can cause
(`segad.meta.held_out.one_bad_margin`), ships. A textured surface whose segments are speckle
thus gets one segment unless its segments clearly pay.

Where a seed's brf_train rows hold fewer than 2 good or 2 bad rows, or there is one detector-less
table, nothing is chosen and the category keeps the alignment's choice (`SegmentMaps.sources`).
Test rows are never read: `choose_segmentations` drops every row whose role is not brf_train.

Example:
    >>> import numpy as np
    >>> from segad.meta.held_out import HeldOut
    >>> from segad.meta.segmentation_choice import simplest_within
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> ids = np.array(["g0", "g1", "g2", "b0", "b1", "b2"])
    >>> flat = np.array([0.1, 0.2, 0.3, 0.2, 0.3, 0.4])
    >>> sharp = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7])
    >>> pairs = [HeldOut(y, ids, {"single": flat, "auto": sharp})] * 2
    >>> simplest_within(pairs, ["single", "auto"], miss_rate=0.02, weight=0.5, se_multiplier=1.0)[0]
    'auto'
    >>> pairs = [HeldOut(y, ids, {"single": sharp, "auto": sharp})] * 2   # a tie: the simpler ships
    >>> simplest_within(pairs, ["single", "auto"], miss_rate=0.02, weight=0.5, se_multiplier=1.0)[0]
    'single'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from segad.columns import columns_of
from segad.meta.brf import method_name
from segad.meta.held_out import HeldOut, fold_ids, held_out_metrics, judged_rows, one_bad_margin, out_of_fold
from segad.meta.selection import Candidate
from segad.meta.selection_params import DEFAULT_SELECTION, SelectionParams
from segad.schemas import SegmentationSelection, columns
from segad.segments.segment_maps import SegmentMaps

log = logging.getLogger(__name__)

#: Columns of the evidence table (`segad.schemas.SegmentationSelection`) without its partition
#: columns dataset and benchmark: one row per category and candidate.
EVIDENCE_COLUMNS = [c for c in columns(SegmentationSelection) if c not in ("dataset", "benchmark")]


def simplest_within(
    pairs: Sequence[HeldOut], names: Sequence[str], miss_rate: float, weight: float, se_multiplier: float
) -> tuple[str, pd.DataFrame]:
    """The rule of the module docstring over the candidates `names` (simplest first).

    Returns (chosen name, one evidence row per candidate: mean AUROC, PG and utility over the
    pairs, its shortfall against the best candidate, that shortfall's standard error and the
    one-bad-image margin)."""
    per_pair = {
        n: np.array([held_out_metrics(p.labels, p.scores[n], miss_rate) for p in pairs], dtype=np.float64).reshape(
            -1, 2
        )
        for n in names
    }
    utility = {n: (1 - weight) * v[:, 0] + weight * v[:, 1] for n, v in per_pair.items()}
    valid = np.all([np.isfinite(u) for u in utility.values()], axis=0)
    if not valid.any():
        raise ValueError("no (seed, fold) pair scores every candidate segmentation")
    mean = {n: float(np.mean(utility[n][valid])) for n in names}
    best = max(names, key=lambda n: (mean[n], -list(names).index(n)))
    rows, chosen = [], None
    for n in names:
        diff = (utility[best] - utility[n])[valid]
        se = float(np.std(diff, ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("inf")
        margin = 0.0 if n == best else one_bad_margin(pairs, best, n, miss_rate, weight)
        shortfall = float(np.mean(diff))
        if chosen is None and shortfall <= max(se_multiplier * se, margin):
            chosen = n
        rows.append(
            {
                "segmentation": n,
                "n_pairs": int(valid.sum()),
                "auroc": float(np.mean(per_pair[n][valid, 0])),
                "pg": float(np.mean(per_pair[n][valid, 1])),
                "utility": mean[n],
                "shortfall": shortfall,
                "shortfall_se": se,
                "one_bad_margin": margin,
            }
        )
    assert chosen is not None  # the best candidate's shortfall is 0
    evidence = pd.DataFrame(rows)
    evidence["chosen"] = evidence["segmentation"] == chosen
    return chosen, evidence


def choose_segmentations(
    rows: pd.DataFrame,
    segmentation: SegmentMaps,
    features_of: Callable[[pd.DataFrame, SegmentMaps], pd.DataFrame],
    detectors: Sequence[str],
    config,
    params: SelectionParams = DEFAULT_SELECTION,
    fit=None,
) -> tuple[dict[str, str], pd.DataFrame]:
    """Choose a candidate segmentation for every category with `SegmentMaps.alternatives`.

    Args:
        rows: feature rows (`segad.segments.features.feature_rows`); only brf_train rows are read.
        segmentation: the run's segment maps with their candidates.
        features_of: ``features_of(rows, segment_maps)`` -> the feature table of `rows` under those
            maps, without the classifier score (`segad.segments.features.build_feature_table`).
        detectors: the run's detectors: the probe is their SegAD combination.
        config: the BRF settings (`segad.meta.brf.BRFConfig`) of the out-of-fold BRFs.
        fit: fits them (`segad.meta.held_out.out_of_fold`; a `BRFStore.fit` reuses earlier fits).
    Returns:
        (category -> chosen candidate, evidence with `EVIDENCE_COLUMNS`).
    """
    train = rows[rows["role"] == "brf_train"]
    probe = Candidate(method_name(detectors), tuple(sorted(detectors)))
    chosen: dict[str, str] = {}
    frames = []
    for category, options in sorted(segmentation.alternatives.items()):
        cat_rows = train[train["category"] == category].reset_index(drop=True)
        counts = [
            (int((r["label"] == 0).sum()), int((r["label"] == 1).sum())) for _, r in cat_rows.groupby("split_seed")
        ]
        if len(options) < 2 or not counts or min(min(c) for c in counts) < 2:
            log.warning(
                "segmentation (%s): too few brf_train rows to choose out of fold (good/bad per seed %s); keeping %s",
                category,
                counts,
                segmentation.sources.get(category),
            )
            continue
        names = list(options)
        tables = {n: features_of(cat_rows, segmentation.with_choice({category: n})) for n in names}
        if any(len(t) != len(cat_rows) for t in tables.values()):
            raise ValueError(f"segmentation choice ({category}): a candidate's feature table lost rows")
        pairs = []
        for seed, seed_rows in cat_rows.groupby("split_seed", sort=True):
            index = seed_rows.index
            labels = seed_rows["label"].to_numpy().astype(np.int64)
            types = seed_rows["defect_type"].to_numpy() if "defect_type" in seed_rows else None
            folds = fold_ids(labels, int(seed), params.folds, types)
            scores = {}
            for n, table in tables.items():
                seed_table = table.loc[index].reset_index(drop=True)
                columns = columns_of(probe.members, list(seed_table.columns))
                scores[n] = out_of_fold(seed_table, [probe], {probe.method: columns}, config, int(seed), folds, fit)[
                    probe.method
                ]
            judged = judged_rows(labels, seed_rows["image_id"])
            ids = seed_rows["image_id"].astype(str).to_numpy()
            for fold in np.unique(folds):
                held = judged & (folds == fold)
                pairs.append(HeldOut(labels[held], ids[held], {n: v[held] for n, v in scores.items()}))
        name, evidence = simplest_within(pairs, names, params.miss_rate, params.operating_weight, params.se_multiplier)
        evidence.insert(0, "category", category)
        evidence.insert(2, "n_segments", [options[n].n_segments for n in evidence["segmentation"]])
        frames.append(evidence)
        chosen[category] = name
        log.info(
            "segmentation (%s): %s chosen out of fold (probe %s); utility x100 %s",
            category,
            name,
            probe.method,
            ", ".join(f"{r.segmentation} {100 * r.utility:.1f}" for r in evidence.itertuples()),
        )
    # one marker row per category without a choice, so a table is always written and an older
    # run's choice never outlives the segmentation it was made for
    unchosen = sorted(set(rows["category"].astype(str)) - set(chosen))
    markers = [
        {"category": c, "segmentation": "", "n_segments": segmentation.n_segments[c], "n_pairs": 0, "chosen": False}
        for c in unchosen
    ]
    typed = SegmentationSelection.empty()[EVIDENCE_COLUMNS]  # the model's dtypes, also for marker rows
    table = pd.concat([typed, *frames, pd.DataFrame(markers)], ignore_index=True)[EVIDENCE_COLUMNS]
    return chosen, table


def chosen_of(evidence: pd.DataFrame | None, dataset_id: str, benchmark: str) -> dict[str, str]:
    """category -> chosen segmentation of this dataset id and regime in an evidence table (with
    columns dataset and benchmark; empty without one)."""
    if evidence is None or evidence.empty:
        return {}
    rows = evidence[
        (evidence["dataset"].astype(str) == dataset_id)
        & (evidence["benchmark"].astype(str) == benchmark)
        & evidence["chosen"].fillna(False).astype(bool)
    ]
    return dict(zip(rows["category"].astype(str), rows["segmentation"].astype(str), strict=True))


def chosen_segmentation(
    segmentation: SegmentMaps, evidence: pd.DataFrame | None, dataset_id: str, benchmark: str
) -> SegmentMaps:
    """The run's segment maps with the features stage's choice (`chosen_of`) applied: the maps the
    feature table, and so the BRFs and the bundle, were computed with."""
    return segmentation.with_choice(chosen_of(evidence, dataset_id, benchmark))
