"""The feature-column grammar: the one place that formats and parses SegAD feature names.

A feature table has four kinds of feature columns:

* ``seg<l>__<detector>__<stat>``: statistic `stat` (one of `STATS`) of `detector`'s map over
  segment `l` (0-based);
* ``<detector>__max``: the detector's own image score, the global maximum of its map;
* ``classifier__score``: the supervised classifier's logit g(I);
* ``<detector>__score``: a detector's own image score, for detectors that have one besides their
  map (``supersimplenet_supervised``: its classification head's ``pred_score``). Where present it
  is the detector's score when the detector is evaluated alone.

Detector names are lower-case anomalib names (``patchcore``, ``padim``...; ``[a-z0-9_]+``).

Example (runs as is)::

    >>> from segad.columns import feature_columns, parse_column
    >>> feature_columns(["padim"], n_segments=1, classifier=True)
    ['classifier__score', 'seg0__padim__q995', 'seg0__padim__skew', 'seg0__padim__kurtosis', 'seg0__padim__mean', 'padim__max']
    >>> parse_column("seg3__patchcore__q995")
    Column(kind='segment', owner='patchcore', segment=3, stat='q995')
    >>> parse_column("padim__max").owner
    'padim'
    >>> parse_column(score_column("supersimplenet_supervised")).kind
    'score'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

#: Per-segment statistics, in the order of the feature vector.
STATS: tuple[str, ...] = ("q995", "skew", "kurtosis", "mean")
#: Name under which the classifier g(I) appears as a member of a SegAD combination.
CLASSIFIER = "classifier"
CLASSIFIER_COLUMN = f"{CLASSIFIER}__score"
MAX_STAT = "max"
SCORE_STAT = "score"

_NAME = r"[a-z0-9_]+?"
SEGMENT_PATTERN = re.compile(rf"^seg(?P<segment>\d+)__(?P<owner>{_NAME})__(?P<stat>{'|'.join(STATS)})$")
MAX_PATTERN = re.compile(rf"^(?P<owner>{_NAME})__{MAX_STAT}$")
SCORE_PATTERN = re.compile(rf"^(?P<owner>{_NAME})__{SCORE_STAT}$")
#: The explanation columns of the inspection table (`segad.production.explain`): per segment, the
#: group ``global`` (map maxima and the classifier score), the model's ``bias``, per detector.
GLOBAL_GROUP, BIAS_GROUP = "global", "bias"
CONTRIBUTION_PATTERN = re.compile(rf"^contrib_(seg\d+|{GLOBAL_GROUP}|{BIAS_GROUP}|det_[a-z0-9_]+)$")


@dataclass(frozen=True)
class Column:
    """A parsed feature column. `owner` is the detector (or ``classifier``) the value comes from;
    `segment` and `stat` are None for a detector's maximum, its own score and the classifier score."""

    kind: Literal["segment", "max", "score", "classifier"]
    owner: str
    segment: int | None = None
    stat: str | None = None


def segment_column(segment: int, detector: str, stat: str) -> str:
    """``seg<segment>__<detector>__<stat>``."""
    return f"seg{int(segment)}__{detector}__{stat}"


def max_column(detector: str) -> str:
    """``<detector>__max``."""
    return f"{detector}__{MAX_STAT}"


def score_column(detector: str) -> str:
    """``<detector>__score`` (a detector's own image score; not for ``classifier``)."""
    if detector == CLASSIFIER:
        raise ValueError(f"{CLASSIFIER_COLUMN} is the classifier's column, not a detector's")
    return f"{detector}__{SCORE_STAT}"


def parse_column(name: str) -> Column:
    """Parse a feature column name; ValueError naming it when it is not one."""
    if name == CLASSIFIER_COLUMN:
        return Column("classifier", CLASSIFIER)
    match = SEGMENT_PATTERN.match(name)
    if match:
        return Column("segment", match["owner"], int(match["segment"]), match["stat"])
    match = MAX_PATTERN.match(name)
    if match and match["owner"] != CLASSIFIER:
        return Column("max", match["owner"])
    match = SCORE_PATTERN.match(name)
    if match:
        return Column("score", match["owner"])
    raise ValueError(
        f"{name!r} is not a feature column (seg<l>__<detector>__<stat>, <detector>__max, "
        f"<detector>__score or {CLASSIFIER_COLUMN})"
    )


def is_feature_column(name: str) -> bool:
    """True for the four kinds of feature column."""
    try:
        parse_column(name)
    except ValueError:
        return False
    return True


def feature_columns(
    detectors: Sequence[str], n_segments: int, classifier: bool = False, scored: Sequence[str] = ()
) -> list[str]:
    """Feature columns in the order of the feature vector: the classifier score first, as in the
    paper's equation f = (g(I), q, z, c, m); then the reference code's order, segment-major, then
    detector, then `STATS`; the detectors' maxima; last the own scores of the `scored` detectors
    (in `detectors` order)."""
    columns = [CLASSIFIER_COLUMN] if classifier else []
    columns += [segment_column(s, d, stat) for s in range(n_segments) for d in detectors for stat in STATS]
    columns += [max_column(d) for d in detectors]
    columns += [score_column(d) for d in detectors if d in set(scored)]
    return columns


def columns_of(members: Iterable[str], columns: Sequence[str]) -> list[str]:
    """The feature columns among `columns` (in their order) whose owner is one of `members`; the
    classifier score is selected by the member ``classifier``."""
    wanted = set(members)
    return [c for c in columns if is_feature_column(c) and parse_column(c).owner in wanted]


def vector_order(names: Sequence[str], detectors: Sequence[str]) -> list[str]:
    """`names` with its feature columns in `feature_columns` order (for the largest segment
    present) after the other columns. A table joining categories with different segment counts
    then keeps the reference's order, maxima last, whatever order the categories came in."""
    features = [c for c in names if is_feature_column(c)]
    segments = [parse_column(c).segment for c in features]
    n_segments = max((s for s in segments if s is not None), default=-1) + 1
    scored = [parse_column(c).owner for c in features if parse_column(c).kind == "score"]
    order = feature_columns(detectors, n_segments, classifier=CLASSIFIER_COLUMN in names, scored=scored)
    wanted = set(features)
    ordered = [c for c in order if c in wanted] + [c for c in features if c not in set(order)]
    return [c for c in names if not is_feature_column(c)] + ordered
