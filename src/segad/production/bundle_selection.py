"""The bundle's side of the out-of-fold selection (`segad.meta.selection`): which method of the
brf stage's evidence table (`brf_selection`) ships for a dataset id, regime and category, its
members, and the evidence rows recorded in the manifest (also those of `segmentation_selection`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from segad.columns import CLASSIFIER, CLASSIFIER_COLUMN, max_column
from segad.meta.brf import SEGAD_SUFFIX, combination_members


def _chosen_rows(selection: pd.DataFrame | None, dataset_id: str, benchmark: str, category: str) -> pd.DataFrame:
    """The evidence row(s) the selection chose for this regime and category (empty without one)."""
    if selection is None or selection.empty or "chosen" not in selection.columns:
        return pd.DataFrame()
    return selection[
        (selection["dataset"].astype(str) == dataset_id)
        & (selection["benchmark"].astype(str) == benchmark)
        & (selection["category"].astype(str) == category)
        & selection["chosen"].fillna(False).astype(bool)
    ]


def selected_method(selection: pd.DataFrame | None, dataset_id: str, benchmark: str, category: str) -> str | None:
    """The method the out-of-fold selection chose for this regime and category; None without one."""
    rows = _chosen_rows(selection, dataset_id, benchmark, category)
    return str(rows["method"].iloc[0]) if len(rows) else None


def blend_member(selection: pd.DataFrame | None, dataset_id: str, benchmark: str, category: str) -> str | None:
    """The member the chosen combination of this regime and category is blended with
    (`segad.meta.blend`); None for a single input, without a selection, or with the blend off."""
    rows = _chosen_rows(selection, dataset_id, benchmark, category)
    member = rows["blend_with"].iloc[0] if len(rows) and "blend_with" in rows.columns else None
    return str(member) if isinstance(member, str) and member else None


def evidence_records(evidence: pd.DataFrame | None, dataset_id: str, benchmark: str, category: str) -> list[dict]:
    """The rows of one dataset id, regime and category of an evidence table (`brf_selection`,
    `segmentation_selection`), as JSON-ready records for the manifest (NaN and infinite values as
    null); empty without a table."""
    from segad.versions import jsonable

    if evidence is None or evidence.empty:
        return []
    rows = evidence[
        (evidence["dataset"].astype(str) == dataset_id)
        & (evidence["benchmark"].astype(str) == benchmark)
        & (evidence["category"].astype(str) == category)
    ]
    records = jsonable(rows.drop(columns=["dataset", "benchmark"]).to_dict("records"))
    return [{k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in r.items()} for r in records]


def selected_members(chosen: str, default: list[str], scored: Sequence[str]) -> tuple[list[str], bool, str | None]:
    """(detectors, with classifier, single-input column or None) that ship the chosen method.

    A detector alone ships that detector with a model whose score is its map max; the classifier
    alone ships with the default detectors (their features are computed, the model reads only
    ``classifier__score``); a SegAD combination ships its members and BRF.
    """
    if chosen.endswith(f"+{SEGAD_SUFFIX}"):
        members = combination_members(chosen)
        return [m for m in members if m != CLASSIFIER], CLASSIFIER in members, None
    if chosen == CLASSIFIER:
        return [d for d in default if d != CLASSIFIER], True, CLASSIFIER_COLUMN
    if chosen in scored:
        raise ValueError(
            f"brf_selection chose {chosen}, whose own score cannot be bundled yet; set bundle.detectors "
            "to a combination without it"
        )
    return [chosen], False, max_column(chosen)


def member_column(member: str, columns: Sequence[str]) -> str:
    """The score column of the blend's member among the BRF's feature `columns`."""
    column = CLASSIFIER_COLUMN if member == CLASSIFIER else max_column(member)
    if column not in columns:
        raise ValueError(f"brf_selection blends with {member}, whose score {column} is not a column of the shipped BRF")
    return column
