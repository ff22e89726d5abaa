"""Per-segment and per-detector explanations of a SegAD score.

Per-segment contribution: XGBoost's exact TreeSHAP values (``pred_contribs``) of the feature
columns, summed over the columns of each segment (``seg<l>__*``, `segad.columns`); the
per-detector map maxima (and the classifier score) form the group ``global``; the model's bias is
``bias``. The groups sum to the score (additivity of SHAP on the raw margin).

Example:
    >>> from segad.production.explain import contribution_groups, contribution_columns
    >>> contribution_groups(["seg0__padim__q995", "seg1__padim__mean", "padim__max"])
    ['seg0', 'seg1', 'global']
    >>> contribution_columns(2)
    ['contrib_seg0', 'contrib_seg1', 'contrib_global', 'contrib_bias']
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from segad.columns import BIAS_GROUP, GLOBAL_GROUP, parse_column

_CONTRIB_SEGMENT = re.compile(r"^contrib_seg(\d+)$")


def contribution_columns(n_segments: int) -> list[str]:
    """Columns of `group_contributions`: ``contrib_seg0..contrib_seg<L-1>``, ``contrib_global``,
    ``contrib_bias``."""
    return [f"contrib_seg{l}" for l in range(int(n_segments))] + [f"contrib_{GLOBAL_GROUP}", f"contrib_{BIAS_GROUP}"]


def detector_contribution_column(owner: str) -> str:
    """``contrib_det_<owner>``: the column of `detector_contributions` for one detector."""
    return f"contrib_det_{owner}"


def contribution_groups(columns: Sequence[str]) -> list[str]:
    """Group of each feature column: 'seg<l>' for segment statistics, 'global' for maxima and the
    classifier score. ValueError naming a column that is not a feature column."""
    groups = []
    for column in columns:
        parsed = parse_column(column)
        groups.append(f"seg{parsed.segment}" if parsed.kind == "segment" else GLOBAL_GROUP)
    return groups


def _check(contribs: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    contribs = np.asarray(contribs, dtype=np.float64)
    if contribs.ndim != 2 or contribs.shape[1] != len(columns) + 1:
        raise ValueError(f"contributions {contribs.shape} do not match {len(columns)} features + bias")
    return contribs


def group_contributions(contribs: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Sum SHAP contributions per segment.

    Args:
        contribs: float (N, F + 1): one column per feature (in `columns` order) and the bias last,
            as ``Booster.predict(..., pred_contribs=True)`` returns.
        columns: the F feature column names.
    Returns:
        float64 frame (N, L + 2): ``contrib_seg<l>`` for each segment present in `columns`
        (ascending), ``contrib_global``, ``contrib_bias``; each row sums to the raw margin.
    """
    contribs = _check(contribs, columns)
    groups = contribution_groups(columns)
    segments = sorted({g for g in groups if g != GLOBAL_GROUP}, key=lambda g: int(g[3:]))
    out = {}
    for name in [*segments, GLOBAL_GROUP]:
        mask = np.array([g == name for g in groups])
        out[f"contrib_{name}"] = contribs[:, :-1][:, mask].sum(axis=1)
    out[f"contrib_{BIAS_GROUP}"] = contribs[:, -1]
    return pd.DataFrame(out)


def detector_contributions(contribs: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Sum SHAP contributions per detector: ``contrib_det_<detector>`` float64 (N, K), bias excluded.

    A detector's group holds its segment statistics and its map maximum; the classifier score,
    when present, is its own group ``classifier``. Groups in order of first appearance.
    """
    contribs = _check(contribs, columns)
    owners = [parse_column(column).owner for column in columns]
    out = {}
    for owner in dict.fromkeys(owners):
        mask = np.array([o == owner for o in owners])
        out[detector_contribution_column(owner)] = contribs[:, :-1][:, mask].sum(axis=1)
    return pd.DataFrame(out)


def top_segment(grouped: pd.DataFrame) -> np.ndarray:
    """int64 (N,): index of the segment with the largest positive contribution per row of a
    `group_contributions` frame; -1 if none is > 0."""
    segments = {c: int(m.group(1)) for c in grouped.columns if (m := _CONTRIB_SEGMENT.match(c))}
    if not segments:
        return np.full(len(grouped), -1, dtype=np.int64)
    values = grouped[list(segments)].to_numpy()
    best = values.argmax(axis=1)
    index = np.array(list(segments.values()))[best]
    return np.where(values.max(axis=1) > 0, index, -1).astype(np.int64)
