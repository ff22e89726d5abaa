"""The tables of production scoring (docs/schemas.md): `inspection`, one row per scored image,
and `score_runs`, the index of score runs."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from segad.columns import CONTRIBUTION_PATTERN, MAX_PATTERN
from segad.runs import RUN_ID
from segad.schemas.fields import doc
from segad.vocabulary import DECISIONS, STATUSES


class Inspection(pa.DataFrameModel):
    """`inspection` — one row per image scored by the production bundle (score)."""

    run: Series[str] = pa.Field(
        str_matches=RUN_ID.pattern,
        description="the score run that wrote the row (`<UTC time>Z-<8 hex>`; its partition)",
    )
    image: Series[str] = pa.Field(description="the image's path relative to the input folder (unique within a run)")
    path: Series[str] = pa.Field(description="absolute path of the image file")
    status: Series[str] = pa.Field(
        isin=list(STATUSES), description="`ok`, or `error` (unreadable image, wrong input, non-finite map)"
    )
    decision: Series[str] = pa.Field(
        isin=list(DECISIONS), description="`accept`, `reject` (score >= threshold) or `error`"
    )
    score: Series[pa.Float64] = pa.Field(nullable=True, description="BRF raw margin; NaN on error rows")
    threshold: Series[pa.Float64] = pa.Field(description="the bundle's operating threshold")
    error: Series[str] = pa.Field(nullable=True, description="what went wrong, on error rows")
    top_segment: Series[pa.Int64] = pa.Field(
        ge=-1, description="segment contributing most to the score; -1 when not explained"
    )
    top_segment_name: Series[str] = pa.Field(nullable=True, description="its name")
    contribution: Series[pa.Float64] = pa.Field(
        alias=CONTRIBUTION_PATTERN.pattern,
        regex=True,
        nullable=True,
        metadata=doc(
            "contrib_seg<l>, contrib_global, contrib_bias, contrib_det_<detector>",
            "SHAP contributions to the score per segment, of the global features, of the bias, per detector; NaN "
            "where not explained",
        ),
    )
    detector_max: Series[pa.Float64] = pa.Field(
        alias=MAX_PATTERN.pattern,
        regex=True,
        nullable=True,
        metadata=doc("<detector>__max", "global max of the detector's map; NaN on error rows"),
    )
    classifier_score: Series[pa.Float64] | None = pa.Field(
        alias="classifier__score",
        nullable=True,
        description="the classifier g(I)'s score (logit, or mean logit of its K models), when the bundle has it",
    )
    overlay: Series[str] = pa.Field(nullable=True, description="name of the overlay picture (rejected parts)")
    bundle_id: Series[str] = pa.Field(description="the bundle version used")

    class Config:
        strict = True
        unique = ["run", "image"]


class ScoreRuns(pa.DataFrameModel):
    """`score_runs` — the index of score runs: one row per `score` run, one small file each (score)."""

    run: Series[str] = pa.Field(unique=True, str_matches=RUN_ID.pattern, description="the run id, as in `inspection`")
    started: Series[str] = pa.Field(description="UTC start time (ISO 8601)")
    finished: Series[str] = pa.Field(description="UTC end time (ISO 8601)")
    seconds: Series[pa.Float64] = pa.Field(ge=0, description="wall time of the run's scoring node")
    bundle_id: Series[str] = pa.Field(description="the bundle version used")
    threshold: Series[pa.Float64] = pa.Field(description="the bundle's operating threshold")
    input: Series[str] = pa.Field(description="the scored folder (`score.input`)")
    images: Series[pa.Int64] = pa.Field(ge=0, description="image files found")
    accepted: Series[pa.Int64] = pa.Field(ge=0, description="rows with decision `accept`")
    rejected: Series[pa.Int64] = pa.Field(ge=0, description="rows with decision `reject`")
    errors: Series[pa.Int64] = pa.Field(ge=0, description="rows with decision `error`")
    host: Series[str] = pa.Field(description="machine that ran it")
    pid: Series[pa.Int64] = pa.Field(description="its process id")

    class Config:
        strict = True
