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
from dataclasses import dataclass

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


def _segments(columns: Sequence[str]) -> list[int]:
    """The segments the feature `columns` hold statistics of, ascending."""
    return sorted({int(g[3:]) for g in contribution_groups(columns) if g != GLOBAL_GROUP})


@dataclass(frozen=True)
class ContributionGroups:
    """How SHAP contributions (N, F + 1: one per feature column, the bias last) sum into groups.

    Attributes:
        segment_columns: `contribution_columns(n_segments)`.
        detector_columns: ``contrib_det_<owner>`` per owner.
        segments: float64 (F + 1, L + 2) 0/1: feature (row) -> segment group, ``global`` and
            ``bias`` (column); a segment no column belongs to gets 0.
        detectors: float64 (F + 1, K) 0/1: feature -> its owner (the bias belongs to none).
    Built once per bundle (`Bundle.contribution_groups`), so explaining a row is one matrix product.
    """

    segment_columns: list[str]
    detector_columns: list[str]
    segments: np.ndarray
    detectors: np.ndarray

    @classmethod
    def of(
        cls, columns: Sequence[str], n_segments: int | None = None, owners: Sequence[str] | None = None
    ) -> ContributionGroups:
        """Groups of the feature `columns` over `n_segments` segments (default: up to the largest
        segment in `columns`); `owners` fixes the order of the detector groups (default: order of
        first appearance in `columns`). ValueError naming a column of a segment or owner outside them."""
        groups = contribution_groups(columns)
        column_owners = [parse_column(column).owner for column in columns]
        present = _segments(columns)
        n_segments = (present[-1] + 1 if present else 0) if n_segments is None else int(n_segments)
        owners = list(dict.fromkeys(column_owners)) if owners is None else list(owners)
        for column, group, owner in zip(columns, groups, column_owners, strict=True):
            if owner not in owners or (group != GLOBAL_GROUP and int(group[3:]) >= n_segments):
                raise ValueError(f"feature column {column!r} is outside {n_segments} segments and owners {owners}")
        segment_columns = contribution_columns(n_segments)
        segments = np.zeros((len(columns) + 1, len(segment_columns)))
        detectors = np.zeros((len(columns) + 1, len(owners)))
        for i, (group, owner) in enumerate(zip(groups, column_owners, strict=True)):
            segments[i, segment_columns.index(f"contrib_{group}")] = 1.0
            detectors[i, owners.index(owner)] = 1.0
        segments[-1, -1] = 1.0  # the bias
        return cls(segment_columns, [detector_contribution_column(o) for o in owners], segments, detectors)

    def sum(self, contribs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float64 (N, L + 2) per segment group, global and bias (each row sums to the raw
        margin), and float64 (N, K) per owner, of contributions (N, F + 1)."""
        contribs = np.asarray(contribs, dtype=np.float64)
        if contribs.ndim != 2 or contribs.shape[1] != self.segments.shape[0]:
            raise ValueError(
                f"contributions {contribs.shape} do not match {self.segments.shape[0] - 1} features + bias"
            )
        return contribs @ self.segments, contribs @ self.detectors

    def top_segment(self, segment_part: np.ndarray) -> np.ndarray:
        """int64 (N,): the segment with the largest positive contribution in each row of `sum`'s
        first array; -1 where none is > 0 or the row is NaN (not explained)."""
        n_segments = len(self.segment_columns) - 2
        return _largest_positive(segment_part[:, :n_segments], np.arange(n_segments, dtype=np.int64))


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
    groups = ContributionGroups.of(columns)
    grouped = pd.DataFrame(groups.sum(contribs)[0], columns=groups.segment_columns)
    return grouped[[f"contrib_seg{l}" for l in _segments(columns)] + groups.segment_columns[-2:]]


def detector_contributions(contribs: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Sum SHAP contributions per detector: ``contrib_det_<detector>`` float64 (N, K), bias excluded.

    A detector's group holds its segment statistics and its map maximum; the classifier score,
    when present, is its own group ``classifier``. Groups in order of first appearance.
    """
    groups = ContributionGroups.of(columns)
    return pd.DataFrame(groups.sum(contribs)[1], columns=groups.detector_columns)


def top_segment(grouped: pd.DataFrame) -> np.ndarray:
    """int64 (N,): index of the segment with the largest positive contribution per row of a
    `group_contributions` frame; -1 if none is > 0."""
    segments = {c: int(m.group(1)) for c in grouped.columns if (m := _CONTRIB_SEGMENT.match(c))}
    return _largest_positive(grouped[list(segments)].to_numpy(), np.array(list(segments.values()), dtype=np.int64))


def _largest_positive(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """int64 (N,): `index` of each row's largest value of float (N, S) `values`; -1 where none is
    > 0 (NaN rows included)."""
    if values.shape[1] == 0:
        return np.full(len(values), -1, dtype=np.int64)
    filled = np.nan_to_num(values, nan=-np.inf)
    return np.where(filled.max(axis=1) > 0, index[filled.argmax(axis=1)], -1).astype(np.int64)
