"""The tables of a training run (docs/schemas.md): ingestion (`image_index`, `splits`,
`synthetic_index`), anomaly maps (`<detector>.map_index`), the classifier (`classifier_scores`),
features and the choice of their segments (`segmentation_selection`), BRF scores and the
selection's evidence (`brf_selection`), evaluation (`test_scores`, `metrics`)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from segad.columns import MAX_PATTERN, SCORE_PATTERN, SEGMENT_PATTERN, STATS, is_feature_column, max_column
from segad.schemas.fields import doc
from segad.storage.identity import DATASET_DESCRIPTION, DATASET_ID_PATTERN
from segad.vocabulary import BENCHMARKS, DEFECT_KINDS, FEATURE_ROLES, LABELS, ROLES, SEGMENTATION_CANDIDATES, SUBSETS

_OWN_SCORE = "classifier g(I), when enabled; a detector's own image score (supersimplenet_supervised pred_score)"


def _detector_names(series: pd.Series) -> pd.Series:
    """Each value is ``<detector>[+<detector>...]`` of valid detector names (the feature-column grammar)."""
    return series.map(lambda v: isinstance(v, str) and all(is_feature_column(max_column(d)) for d in v.split("+")))


def _split_seed_or_aggregate(series: pd.Series) -> pd.Series:
    return series.astype(str).str.fullmatch(r"\d+|mean|std")


class ImageIndex(pa.DataFrameModel):
    """`image_index` — one row per image of the dataset (ingestion)."""

    image_id: Series[str] = pa.Field(
        unique=True,
        description=(
            "stable id: the image's path relative to `dataset.root`, POSIX separators (`train/good/000.png`); "
            "for ELPV `images/cell0001.png`"
        ),
    )
    dataset: Series[str] = pa.Field(str_matches=DATASET_ID_PATTERN, description=DATASET_DESCRIPTION)
    category: Series[str] = pa.Field(
        description="product category (`vad` for VAD, `demo` for the demo, `capsule`, `candle`, ...)"
    )
    split: Series[str] = pa.Field(
        isin=["train", "test"],
        description=("as the dataset defines it (`train` for every image where the dataset has no split: SensumSODF)"),
    )
    label: Series[pa.Int8] = pa.Field(isin=list(LABELS), description="0 good, 1 bad")
    defect_type: Series[str] = pa.Field(
        description=(
            "`good` for good images, else the defect folder / type (`bad`, `bad_unseen_defects`, `crack`, ...)"
        )
    )
    unseen: Series[bool] = pa.Field(
        description=(
            "true for defect types that never appear in training (VAD `bad_unseen_defects`, demo unseen types)"
        )
    )
    path: Series[str] = pa.Field(description="absolute path of the image file")
    mask_path: Series[str] = pa.Field(
        nullable=True, description="absolute path of the pixel mask, where the dataset has one"
    )
    width: Series[pa.Int32] = pa.Field(gt=0, description="image width in pixels as stored on disk")
    height: Series[pa.Int32] = pa.Field(gt=0, description="image height in pixels as stored on disk")

    class Config:
        strict = True


class Splits(pa.DataFrameModel):
    """`splits` — one row per (image, split_seed): every image of the index appears once per seed (split)."""

    image_id: Series[str] = pa.Field(description="key into `image_index`")
    split_seed: Series[pa.Int64] = pa.Field(
        ge=0, description="the seed (or fold number for `kfold`) that drew this split"
    )
    role: Series[str] = pa.Field(
        isin=list(ROLES),
        description=(
            "`detector_train` (good images the detectors are fitted on), `brf_train` (rows the BRF is fitted on: "
            "good images the detectors never saw, plus the regime's bad training images), `test`, `unused` (left "
            "out by the regime)"
        ),
    )
    in_benchmark: Series[bool] = pa.Field(description="true where the row takes part in this regime (`role != unused`)")

    class Config:
        strict = True
        unique = ["image_id", "split_seed"]

    @pa.dataframe_check(error="in_benchmark must equal role != 'unused'")
    @classmethod
    def in_benchmark_is_used(cls, df: pd.DataFrame) -> pd.Series:
        return df["in_benchmark"] == (df["role"] != "unused")


class SyntheticIndex(pa.DataFrameModel):
    """`synthetic_index` — synthetic defective images made from `brf_train` good images (defects): the
    bad class in one_class, an opt-in top-up beside the real bad images elsewhere; empty without
    synthetic defects."""

    image_id: Series[str] = pa.Field(unique=True, description="`synthetic/<split_seed>/<source stem>__<k>.png`")
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="seed the source row belongs to")
    source_image_id: Series[str] = pa.Field(description="the good image it was made from")
    category: Series[str] = pa.Field(description="as the source")
    defect_type: Series[str] = pa.Field(isin=sorted(DEFECT_KINDS.values()), description="the kind of synthetic defect")
    label: Series[pa.Int8] = pa.Field(isin=[1], description="always 1")
    role: Series[str] = pa.Field(isin=["brf_train"], description="always `brf_train`")
    path: Series[str] = pa.Field(description="absolute path of the written image")

    class Config:
        strict = True


class MapIndex(pa.DataFrameModel):
    """`<detector>.map_index` — one row per map in the map store that the run needs (brf_train and
    test images, synthetic images) (anomaly_maps)."""

    image_id: Series[str] = pa.Field(description="key into `image_index` or `synthetic_index`")
    detector: Series[str] = pa.Field(
        description=(
            "anomalib's model name, lower snake case (`patchcore`, `padim`, `fastflow`, `reverse_distillation`, "
            "`efficient_ad`, `supersimplenet`, `stfpm`), or the name of an external detector"
        )
    )
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="the split seed")
    model_key: Series[str] = pa.Field(
        description=(
            "hash of the detector configuration, segad's format version, the anomalib/torch/torchvision/timm "
            "versions and the detector_train image set"
        )
    )
    map_key: Series[str] = pa.Field(description="location of the map in the store")
    max_score: Series[pa.Float64] = pa.Field(description="max of the raw map (the detector's own image score)")
    height: Series[pa.Int32] = pa.Field(gt=0, description="map height (the height of `image_size`)")
    width: Series[pa.Int32] = pa.Field(gt=0, description="map width (the width of `image_size`)")
    source_height: Series[pa.Int32] | None = pa.Field(
        gt=0,
        description=(
            "external detectors only (`kind: external`, docs/anomaly_maps.md): map file height before resizing"
        ),
    )
    source_width: Series[pa.Int32] | None = pa.Field(
        gt=0, description=("external detectors only: map file width before resizing")
    )
    pred_score: Series[pa.Float64] | None = pa.Field(description="supersimplenet_supervised only: its own image score")

    class Config:
        strict = True
        unique = ["image_id", "split_seed"]

    @pa.check("detector", error="a lower-case anomalib name")
    @classmethod
    def detector_name(cls, series: pd.Series) -> pd.Series:
        return _detector_names(series)


class ClassifierScores(pa.DataFrameModel):
    """`classifier_scores` — the classifier g(I)'s score of each brf_train, synthetic and test row, per
    split seed; no rows when the classifier is disabled (classifier)."""

    image_id: Series[str] = pa.Field(description="key into `image_index` or `synthetic_index`")
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="the split seed")
    score: Series[pa.Float64] = pa.Field(
        description="raw logit, higher = more anomalous (cross-fitted: out of fold; test rows: mean of the K models)"
    )
    model_key: Series[str] = pa.Field(description="`classifier/seed_<s>/<digest>`: key of the seed's scores and models")

    class Config:
        strict = True
        unique = ["image_id", "split_seed"]


class _Evidence(pa.DataFrameModel):
    """The key columns of an out-of-fold evidence table: one partition per dataset id and regime,
    rows per category."""

    dataset: Series[str] = pa.Field(str_matches=DATASET_ID_PATTERN, description="the dataset id (partition folder)")
    benchmark: Series[str] = pa.Field(isin=list(BENCHMARKS), description="the regime (partition folder)")
    category: Series[str] = pa.Field(description="product category")


class SegmentationSelection(_Evidence):
    """`segmentation_selection` — the out-of-fold choice of an `auto_select` category's segments: one
    row per category and candidate; a category without a choice has one row with an empty
    `segmentation` (features)."""

    segmentation: Series[str] = pa.Field(
        isin=["", *SEGMENTATION_CANDIDATES], description="the candidate; empty: no choice made (its segments as given)"
    )
    n_segments: Series[pa.Int64] = pa.Field(ge=1, description="segments of the candidate (of the category when none)")
    n_pairs: Series[pa.Int64] = pa.Field(ge=0, description="(split seed, fold) pairs that scored every candidate")
    auroc: Series[pa.Float64] = pa.Field(nullable=True, description="mean out-of-fold AUROC of the probe, in [0, 1]")
    pg: Series[pa.Float64] = pa.Field(nullable=True, description="mean out-of-fold PG at the selection's miss rate")
    utility: Series[pa.Float64] = pa.Field(nullable=True, description="(1 - w) AUROC + w PG, mean over the pairs")
    shortfall: Series[pa.Float64] = pa.Field(nullable=True, description="mean utility below the best candidate's")
    shortfall_se: Series[pa.Float64] = pa.Field(nullable=True, description="standard error of that paired difference")
    one_bad_margin: Series[pa.Float64] = pa.Field(
        nullable=True, description="largest change of the shortfall that dropping one bad image causes"
    )
    chosen: Series[bool] = pa.Field(description="the candidate the features, the BRFs and the bundle use")

    class Config:
        strict = True
        unique = ["dataset", "benchmark", "category", "segmentation"]


class BRFSelection(_Evidence):
    """`brf_selection` — the do-no-harm selection's evidence: one row per category and candidate
    method, out of fold on the brf_train rows; with the selection off, one row per category with an
    empty `method` (brf)."""

    method: Series[str] = pa.Field(
        description="the candidate (a single input or a SegAD combination); empty: no selection"
    )
    members: Series[str] = pa.Field(description="the inputs it reads, joined by `+`")
    n_pairs: Series[pa.Int64] = pa.Field(ge=0, description="(split seed, fold) pairs that scored every single input")
    auroc: Series[pa.Float64] = pa.Field(nullable=True, description="mean out-of-fold AUROC, in [0, 1]")
    auroc_se: Series[pa.Float64] = pa.Field(nullable=True, description="its standard error over the pairs")
    pg: Series[pa.Float64] = pa.Field(nullable=True, description="mean out-of-fold PG at the selection's miss rate")
    pg_se: Series[pa.Float64] = pa.Field(nullable=True, description="its standard error over the pairs")
    utility: Series[pa.Float64] = pa.Field(nullable=True, description="(1 - w) AUROC + w PG, mean over the pairs")
    gain: Series[pa.Float64] = pa.Field(nullable=True, description="mean paired utility gain over the baseline")
    gain_se: Series[pa.Float64] = pa.Field(nullable=True, description="its standard error")
    one_bad_margin: Series[pa.Float64] = pa.Field(
        nullable=True, description="largest change of the mean gain that dropping one bad image causes"
    )
    baseline: Series[bool] = pa.Field(description="the single input with the best mean utility")
    wins: Series[bool] = pa.Field(description="a richer candidate whose gain passes the rule")
    blend_with: Series[str] = pa.Field(description="the member a chosen combination is blended with; empty: none")
    chosen: Series[bool] = pa.Field(description="the method that ships")

    class Config:
        strict = True
        unique = ["dataset", "benchmark", "category", "method"]


class Features(pa.DataFrameModel):
    """`features` — brf_train, test and synthetic rows with their feature columns (features).

    Feature columns follow `segad.columns`. Feature values may be NaN: a category lacks the
    segments it does not have, and the folder keeps tables of other detector sets and regimes."""

    dataset: Series[str] = pa.Field(str_matches=DATASET_ID_PATTERN, description="the dataset id (partition folder)")
    benchmark: Series[str] = pa.Field(isin=list(BENCHMARKS), description="the regime (partition folder)")
    image_id: Series[str] = pa.Field(description="key into `image_index` or `synthetic_index`")
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="partition folder")
    role: Series[str] = pa.Field(isin=list(FEATURE_ROLES), description="from splits (synthetic rows: `brf_train`)")
    label: Series[pa.Int8] = pa.Field(isin=list(LABELS), description="from the index (synthetic rows: 1)")
    defect_type: Series[str] = pa.Field(description="from the index or synthetic_index")
    unseen: Series[bool] = pa.Field(description="from the index (synthetic rows: false)")
    category: Series[str] = pa.Field(description="partition folder")
    source_image_id: Series[str] = pa.Field(
        description=("the image whose segment map applies (itself, or the good image a synthetic defect was made from)")
    )
    segment_stat: Series[pa.Float64] = pa.Field(
        alias=SEGMENT_PATTERN.pattern,
        regex=True,
        nullable=True,
        metadata=doc(
            "seg<l>__<detector>__<stat>",
            f"stat ∈ {', '.join(STATS)} of the raw map over segment l; NaN skew/kurtosis for constant or "
            "1-pixel segments (XGBoost reads NaN as missing), all 0.0 for an empty segment",
        ),
    )
    detector_max: Series[pa.Float64] = pa.Field(
        alias=MAX_PATTERN.pattern, regex=True, nullable=True, metadata=doc("<detector>__max", "global max of the map")
    )
    own_score: Series[pa.Float64] = pa.Field(
        alias=SCORE_PATTERN.pattern,
        regex=True,
        required=False,
        nullable=True,
        metadata=doc("classifier__score, <detector>__score", _OWN_SCORE),
    )
    detectors: Series[str] = pa.Field(description="the run's detectors, sorted, joined by `+` (partition folder)")

    class Config:
        strict = True
        unique = ["dataset", "benchmark", "detectors", "split_seed", "image_id"]

    @pa.check("detectors", error="detector names joined by +")
    @classmethod
    def detector_set(cls, series: pd.Series) -> pd.Series:
        return _detector_names(series)


class Scores(pa.DataFrameModel):
    """`scores` — test-set scores of every method, partitioned by dataset and benchmark (brf)."""

    dataset: Series[str] = pa.Field(
        str_matches=DATASET_ID_PATTERN, description="the run's dataset id (partition folder)"
    )
    benchmark: Series[str] = pa.Field(isin=list(BENCHMARKS), description="the run's regime (partition folder)")
    image_id: Series[str] = pa.Field(description="key into `image_index`")
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="the split seed")
    method: Series[str] = pa.Field(
        str_length={"min_value": 1},
        description=(
            "a detector alone (`patchcore`: its map max), the supervised classifier alone (`classifier`: its logit, "
            "when enabled) or a SegAD combination (`patchcore+segad`, `padim+patchcore+segad`, "
            "`classifier+padim+patchcore+segad`), or `selected`: per category, the scores of the method the "
            "out-of-fold selection chose (`brf.selection`)"
        ),
    )
    score: Series[pa.Float64] = pa.Field(
        description=(
            "higher = more anomalous. For SegAD, the raw margin of `binary:logitraw`: a score, not a probability"
        )
    )

    class Config:
        strict = True
        unique = ["dataset", "benchmark", "image_id", "split_seed", "method"]


class TestScores(pa.DataFrameModel):
    """`evaluation.test_scores` — `scores` of the run's test images with their labels (evaluation)."""

    __test__ = False  # not a pytest class

    dataset: Series[str] = pa.Field(str_matches=DATASET_ID_PATTERN, description="the run's dataset id")
    category: Series[str] = pa.Field(description="from the index")
    method: Series[str] = pa.Field(str_length={"min_value": 1}, description="as in `scores`")
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="the split seed")
    image_id: Series[str] = pa.Field(description="a `test` image of that seed")
    label: Series[pa.Int8] = pa.Field(isin=list(LABELS), description="0 good, 1 bad")
    defect_type: Series[str] = pa.Field(description="from the index")
    unseen: Series[bool] = pa.Field(description="from the index")
    score: Series[pa.Float64] = pa.Field(description="as in `scores`")

    class Config:
        strict = True
        unique = ["method", "split_seed", "image_id"]


class Metrics(pa.DataFrameModel):
    """`metrics` — per dataset, category, benchmark, method, split seed and subset, then the `mean`
    and `std` rows over seeds (evaluation)."""

    dataset: Series[str] = pa.Field(str_matches=DATASET_ID_PATTERN, description="the run's dataset id")
    category: Series[str] = pa.Field(description="a category, or `mean` over categories (counts summed)")
    benchmark: Series[str] = pa.Field(isin=list(BENCHMARKS), description="the run's regime")
    method: Series[str] = pa.Field(str_length={"min_value": 1}, description="as in `scores`")
    split_seed: Series[str] = pa.Field(description="the seed, or `mean` / `std` over seeds")
    subset: Series[str] = pa.Field(
        isin=list(SUBSETS),
        description=("`all`; `seen` / `unseen`: all good images and the bad images of seen / unseen defect types"),
    )
    auroc: Series[pa.Float64] = pa.Field(
        in_range={"min_value": 0, "max_value": 1}, nullable=True, description="image AUROC"
    )
    fpr95tpr: Series[pa.Float64] = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        nullable=True,
        description="false-positive rate at 95% true-positive rate",
    )
    pg2: Series[pa.Float64] = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        nullable=True,
        description="share of good images passed at 2% missed bad ones",
    )
    pb2: Series[pa.Float64] = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        nullable=True,
        description="share of bad images caught at 2% rejected good ones",
    )
    f1max: Series[pa.Float64] = pa.Field(
        in_range={"min_value": 0, "max_value": 1}, nullable=True, description="best F1 over thresholds"
    )
    ap: Series[pa.Float64] = pa.Field(
        in_range={"min_value": 0, "max_value": 1}, nullable=True, description="average precision"
    )
    n_good: Series[pa.Float64] = pa.Field(ge=0, nullable=True, description="good images scored")
    n_bad: Series[pa.Float64] = pa.Field(ge=0, nullable=True, description="bad images scored")
    auroc_lo: Series[pa.Float64] = pa.Field(
        ge=0, le=1, nullable=True, description="`mean` rows of a category: 2.5 % bootstrap bound of the mean AUROC"
    )
    auroc_hi: Series[pa.Float64] = pa.Field(ge=0, le=1, nullable=True, description="97.5 % bound, as `auroc_lo`")
    pg2_lo: Series[pa.Float64] = pa.Field(ge=0, le=1, nullable=True, description="as `auroc_lo`, of PG2")
    pg2_hi: Series[pa.Float64] = pa.Field(ge=0, le=1, nullable=True, description="as `auroc_hi`, of PG2")
    pb2_lo: Series[pa.Float64] = pa.Field(ge=0, le=1, nullable=True, description="as `auroc_lo`, of PB2")
    pb2_hi: Series[pa.Float64] = pa.Field(ge=0, le=1, nullable=True, description="as `auroc_hi`, of PB2")

    class Config:
        strict = True
        unique = ["dataset", "category", "benchmark", "method", "split_seed", "subset"]

    @pa.check("split_seed", error="a seed, mean or std")
    @classmethod
    def seed_or_aggregate(cls, series: pd.Series) -> pd.Series:
        return _split_seed_or_aggregate(series)
