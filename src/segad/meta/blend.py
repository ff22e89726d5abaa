"""The blend that ships a SegAD combination: its BRF score averaged with its strongest member's own score.

Few bad training images and defect types the training rows never show (VAD's unseen types)
are where a BRF can rank worse than the detector it reads: it learns the defects it saw and can
silence the rest. The blend keeps half of the final score with the combination's strongest
single input (the member with the best out-of-fold utility, `segad.meta.selection`), so a part
that this input alone finds strange stays suspicious.

Both scores are first put on one scale, that of the good parts of the brf_train rows:

    e(x) = share of the good reference scores <= x                 (x <= max of the reference)
    e(x) = 1 + (x - max) / (max - median)                          (x > max)

so e is 0..1 inside the good parts' range and keeps growing, linearly, past the most anomalous
good part (no cap: a part far beyond every good part stays far beyond). The blended score is
``(e_brf(brf score) + e_member(member score)) / 2``: an equal-weight, fit-free second stage, the most
regularised form of stacking. The BRF's reference is its *out-of-fold* scores of the good rows
(an in-sample BRF scores its own training rows too well); the member's reference is its own score
of the same rows (a detector never saw them, the classifier's score is cross-fitted).

Example:
    >>> import numpy as np
    >>> from segad.meta.blend import Blend
    >>> blend = Blend.of("patchcore__max", model_good=np.array([0.0, 1.0, 2.0]), member_good=np.array([1.0, 2.0, 3.0]))
    >>> blend.score(np.array([2.0]), np.array([5.0])).round(3).tolist()  # (1 + (1 + 2 / 1)) / 2
    [2.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def good_scale(x: np.ndarray, good: np.ndarray) -> np.ndarray:
    """`x` (N,) on the scale of the sorted good reference scores `good` (M,): float64 (N,), see the
    module docstring; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float64)
    top, middle = float(good[-1]), float(np.median(good))
    out = np.searchsorted(good, x, side="right") / good.size
    beyond = x > top
    out[beyond] = 1.0 + (x[beyond] - top) / max(top - middle, 1e-12)
    out[~np.isfinite(x)] = np.nan
    return out


@dataclass(frozen=True, eq=False)
class Blend:
    """One shipped blend: the member's score column and the two sorted good reference samples.

    Attributes:
        column: the member's own score column among the BRF's feature columns (``<d>__max``,
            ``classifier__score``).
        model_good: float64 (M,), sorted: out-of-fold BRF scores of the good brf_train rows.
        member_good: float64 (K,), sorted: the member's scores of the good brf_train rows.
    """

    column: str
    model_good: np.ndarray
    member_good: np.ndarray

    @classmethod
    def of(cls, column: str, model_good, member_good) -> Blend:
        """A blend from unsorted reference scores; ValueError where one has no finite score."""
        refs = []
        for name, values in (("BRF", model_good), (column, member_good)):
            values = np.asarray(values, dtype=np.float64)
            values = np.sort(values[np.isfinite(values)])
            if values.size == 0:
                raise ValueError(f"blend: no finite {name} score of a good brf_train row to scale by")
            refs.append(values)
        return cls(str(column), refs[0], refs[1])

    def score(self, model_scores: np.ndarray, member_scores: np.ndarray) -> np.ndarray:
        """Blended scores float64 (N,) of BRF scores (N,) and the member's scores (N,); higher = more anomalous."""
        return (good_scale(model_scores, self.model_good) + good_scale(member_scores, self.member_good)) / 2.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the bundle manifest's ``blend``)."""
        return {
            "column": self.column,
            "model_good": [float(v) for v in self.model_good],
            "member_good": [float(v) for v in self.member_good],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], columns: Sequence[str] | None = None) -> Blend:
        """Inverse of `as_dict`; ValueError naming the field that is missing or not a list of
        numbers, or a column that is not one of `columns` (the feature columns, where given)."""
        try:
            blend = cls.of(str(data["column"]), list(data["model_good"]), list(data["member_good"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"blend: needs column, model_good and member_good lists ({error!r})") from error
        if columns is not None and blend.column not in columns:
            raise ValueError(f"the blend reads {blend.column}, not a feature column")
        return blend
