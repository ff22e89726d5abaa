"""The tables between the stages, each declared once as a pandera model (docs/schemas.md).

`validate(model, table, name)` checks a table lazily and raises `SchemaError` with a short
summary (dataset, column, problem, a few failing values) instead of pandera's full report; the
Kedro hook `segad.schema_hooks.SchemaHooks` calls it whenever a node loads or saves one of these
tables. The column tables of docs/schemas.md are generated from the models (`markdown_tables`);
``python -m segad.schemas [docs/schemas.md]`` rewrites them.

Example::

    >>> import pandas as pd
    >>> from segad.schemas import Splits, validate
    >>> table = pd.DataFrame({"image_id": ["a.png"], "split_seed": [0], "role": ["train"], "in_benchmark": [True]})
    >>> validate(Splits, table, "splits")
    Traceback (most recent call last):
    ...
    segad.schemas.SchemaError: splits does not match segad.schemas.Splits (docs/schemas.md):
      column 'role': isin(['detector_train', 'brf_train', 'test', 'unused']) fails for 1 row(s), e.g. 'train'
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from segad.ingestion.defects import KINDS
from segad.ingestion.layouts import LAYOUTS
from segad.ingestion.splits import BENCHMARKS, ROLES
from segad.production.explain import CONTRIBUTION_PATTERN
from segad.segments.columns import MAX_PATTERN, SCORE_PATTERN, SEGMENT_PATTERN, STATS, is_feature_column, max_column
from segad.segments.features import FEATURE_ROLES

LABELS = (0, 1)
_OWN_SCORE = "classifier g(I), when enabled; a detector's own image score (supersimplenet_supervised pred_score)"
SUBSETS = ("all", "seen", "unseen")
STATUSES = ("ok", "error")  # segad.production.scoring OK, ERROR
DECISIONS = ("accept", "reject", "error")  # segad.production.scoring ACCEPT, REJECT, ERROR
#: Shown in the error: at most this many problems, each with at most `EXAMPLES` failing values.
MAX_PROBLEMS, EXAMPLES = 8, 3


class SchemaError(ValueError):
    """A table does not match its model; the message names the dataset, the columns and the problems."""


def _doc(name: str, meaning: str) -> dict:
    """Field metadata: the column name shown in the doc (regex columns) and its meaning."""
    return {"doc_name": name, "meaning": meaning}


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
    dataset: Series[str] = pa.Field(isin=list(LAYOUTS), description="layout name")
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
    """`synthetic_index` — synthetic defective images made from `brf_train` good images; empty for
    regimes other than one_class (defects)."""

    image_id: Series[str] = pa.Field(unique=True, description="`synthetic/<split_seed>/<source stem>__<k>.png`")
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="seed the source row belongs to")
    source_image_id: Series[str] = pa.Field(description="the good image it was made from")
    category: Series[str] = pa.Field(description="as the source")
    defect_type: Series[str] = pa.Field(isin=sorted(KINDS.values()), description="the kind of synthetic defect")
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
    height: Series[pa.Int32] = pa.Field(gt=0, description="map height (= `image_size`)")
    width: Series[pa.Int32] = pa.Field(gt=0, description="map width (= `image_size`)")
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


class Features(pa.DataFrameModel):
    """`features` — brf_train, test and synthetic rows with their feature columns (features).

    Feature columns follow `segad.segments.columns`. Feature values may be NaN: a category lacks the
    segments it does not have, and the folder keeps tables of other detector sets and regimes."""

    dataset: Series[str] = pa.Field(isin=list(LAYOUTS), description="`dataset.layout` (partition folder)")
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
        metadata=_doc(
            "seg<l>__<detector>__<stat>",
            f"stat ∈ {', '.join(STATS)} of the raw map over segment l; NaN skew/kurtosis for constant or "
            "1-pixel segments (XGBoost reads NaN as missing), all 0.0 for an empty segment",
        ),
    )
    detector_max: Series[pa.Float64] = pa.Field(
        alias=MAX_PATTERN.pattern, regex=True, nullable=True, metadata=_doc("<detector>__max", "global max of the map")
    )
    own_score: Series[pa.Float64] = pa.Field(
        alias=SCORE_PATTERN.pattern,
        regex=True,
        required=False,
        nullable=True,
        metadata=_doc("classifier__score, <detector>__score", _OWN_SCORE),
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

    dataset: Series[str] = pa.Field(isin=list(LAYOUTS), description="`dataset.layout` of the run (partition folder)")
    benchmark: Series[str] = pa.Field(isin=list(BENCHMARKS), description="the run's regime (partition folder)")
    image_id: Series[str] = pa.Field(description="key into `image_index`")
    split_seed: Series[pa.Int64] = pa.Field(ge=0, description="the split seed")
    method: Series[str] = pa.Field(
        str_length={"min_value": 1},
        description=(
            "a detector alone (`patchcore`: its map max), the supervised classifier alone (`classifier`: its logit, "
            "when enabled) or a SegAD combination (`patchcore+segad`, `padim+patchcore+segad`, "
            "`classifier+padim+patchcore+segad`)"
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

    dataset: Series[str] = pa.Field(isin=list(LAYOUTS), description="`dataset.layout` of the run")
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

    dataset: Series[str] = pa.Field(isin=list(LAYOUTS), description="`dataset.layout` of the run")
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

    class Config:
        strict = True
        unique = ["dataset", "category", "benchmark", "method", "split_seed", "subset"]

    @pa.check("split_seed", error="a seed, mean or std")
    @classmethod
    def seed_or_aggregate(cls, series: pd.Series) -> pd.Series:
        return _split_seed_or_aggregate(series)


class Inspection(pa.DataFrameModel):
    """`inspection` — one row per image scored by the production bundle (score)."""

    image: Series[str] = pa.Field(unique=True, description="the image's path relative to the input folder")
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
        metadata=_doc(
            "contrib_seg<l>, contrib_global, contrib_bias, contrib_det_<detector>",
            "SHAP contributions to the score per segment, of the global features, of the bias, per detector; NaN "
            "where not explained",
        ),
    )
    detector_max: Series[pa.Float64] = pa.Field(
        alias=MAX_PATTERN.pattern,
        regex=True,
        nullable=True,
        metadata=_doc("<detector>__max", "global max of the detector's map; NaN on error rows"),
    )
    overlay: Series[str] = pa.Field(nullable=True, description="name of the overlay picture (rejected parts)")
    bundle_id: Series[str] = pa.Field(description="the bundle version used")

    class Config:
        strict = True


#: Every model, by the catalog name of its table (map_index: the per-detector `<detector>.map_index`).
MODELS: dict[str, type[pa.DataFrameModel]] = {
    "image_index": ImageIndex,
    "splits": Splits,
    "synthetic_index": SyntheticIndex,
    "map_index": MapIndex,
    "features": Features,
    "scores": Scores,
    "test_scores": TestScores,
    "metrics": Metrics,
    "inspection": Inspection,
}


def validate(model: type[pa.DataFrameModel], table: pd.DataFrame, name: str) -> None:
    """Check `table` against `model` (all problems at once); `SchemaError` summarising them if any."""
    try:
        model.validate(table, lazy=True)
    except pa.errors.SchemaErrors as errors:
        raise SchemaError(summary(errors.failure_cases, model, name)) from None


def summary(failures: pd.DataFrame, model: type[pa.DataFrameModel], name: str) -> str:
    """A few lines from pandera's failure cases: per column and check, the count and some failing values."""
    shown = {n: (c.metadata or {}).get("doc_name", n) for n, c in model.to_schema().columns.items()}
    problems = [_problem(check, rows, shown) for check, rows in _groups(failures)]
    lines = [f"{name} does not match segad.schemas.{model.__name__} (docs/schemas.md):"]
    lines += [f"  {p}" for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_PROBLEMS} more problems")
    return "\n".join(lines)


def _groups(failures: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(check, failure rows) per problem: missing / extra columns first, then per column, then table checks."""
    failures = failures.assign(column=failures["column"].astype(str), check=failures["check"].astype(str))
    about_columns = failures["check"].str.startswith("column_in_")
    table_level = (failures["schema_context"] == "DataFrameSchema") & ~about_columns
    failures = failures.assign(
        _rank=about_columns.map({True: 0, False: 1}) + table_level, _column=failures["column"].where(~table_level, "")
    )
    failures = failures.sort_values("_rank", kind="stable")
    return [
        (str(rows["check"].iloc[0]), rows) for _, rows in failures.groupby(["_rank", "_column", "check"], sort=False)
    ]


def _problem(check: str, rows: pd.DataFrame, shown_names: dict[str, str]) -> str:
    columns = list(dict.fromkeys(rows["column"]))
    if check in ("column_in_schema", "column_in_dataframe"):
        names = rows["failure_case"].astype(str).tolist()
        listed = ", ".join(map(repr, names[:10])) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        return f"{'unexpected' if check == 'column_in_schema' else 'missing'} column(s) {listed}"
    if check.startswith("no_regex_column_match"):
        return f"missing column(s): none matches {shown_names.get(columns[0], columns[0])}"
    if rows["schema_context"].iloc[0] == "DataFrameSchema":  # a check over several columns
        if rows["index"].isna().all():
            return f"table: {check} could not run ({rows['failure_case'].iloc[0]})"
        if check.endswith("uniqueness"):
            keys = rows.groupby("index", sort=False)["failure_case"].agg(tuple)
            shown = ", ".join(map(str, dict.fromkeys(keys.head(EXAMPLES * 2)).keys()))
            return f"key ({', '.join(columns)}): {len(keys)} row(s) share a key, e.g. {shown}"
        index = list(dict.fromkeys(rows["index"]))
        return f"table: {check} in {len(index)} row(s), e.g. at index {', '.join(map(str, index[:EXAMPLES]))}"
    where = f"column {columns[0]!r}"
    values = rows["failure_case"].tolist()
    shown = ", ".join(repr(v) for v in list(dict.fromkeys(values))[:EXAMPLES])
    if check.startswith("dtype("):
        return f"{where}: dtype {values[0]}, expected {check[len('dtype(') : -1].strip(chr(39))}"
    if check == "not_nullable":
        return f"{where}: {len(rows)} null value(s)"
    if check == "field_uniqueness":
        return f"{where}: {len(rows)} row(s) with a duplicated value, e.g. {shown}"
    return f"{where}: {check} fails for {len(rows)} row(s), e.g. {shown}"


# --------------------------------------------------------------------------------------------
# docs/schemas.md: the column tables between `<!-- schema:<name> -->` and `<!-- /schema -->`

DOC = Path(__file__).resolve().parents[2] / "docs" / "schemas.md"
_TYPES = {"str": "string"}
_BLOCK = re.compile(r"(<!-- schema:(?P<name>\w+) -->\n).*?(<!-- /schema -->)", re.S)


def _rule(check: pa.Check) -> str:
    stats = check.statistics or {}
    if check.name == "isin":
        return "one of " + ", ".join(f"`{v}`" for v in stats["allowed_values"])
    if check.name == "greater_than_or_equal_to":
        return f">= {stats['min_value']}"
    if check.name == "greater_than":
        return f"> {stats['min_value']}"
    if check.name == "in_range":
        return f"in [{stats['min_value']}, {stats['max_value']}]"
    if check.name == "str_length":
        return "non-empty"
    return str(check.error)


def markdown_table(model: type[pa.DataFrameModel]) -> str:
    """The column table of one model, with its unique key and table checks below it."""
    schema = model.to_schema()
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    for name, column in schema.columns.items():
        meaning = (column.metadata or {}).get("meaning", column.description or "")
        shown = (column.metadata or {}).get("doc_name", name)
        shown = ", ".join(f"`{n}`" for n in shown.split(", ")) if column.metadata else shown
        kind = [_TYPES.get(str(column.dtype), str(column.dtype))]
        kind += ["nullable"] * column.nullable + ["unique"] * column.unique + ["optional"] * (not column.required)
        kind += [_rule(c) for c in column.checks]
        lines.append(f"| {shown} | {', '.join(kind)} | {meaning} |")
    if schema.unique:
        lines.append(f"\nUnique key: ({', '.join(schema.unique)}).")
    lines += [f"\nChecked: {check.error}." for check in schema.checks]
    if schema.strict:
        lines.append("\nNo other columns.")
    return "\n".join(lines) + "\n"


def markdown_tables() -> dict[str, str]:
    """Model name (as in `MODELS`) -> its generated markdown table."""
    return {name: markdown_table(model) for name, model in MODELS.items()}


def render_doc(text: str) -> str:
    """`text` with every ``<!-- schema:<name> -->`` block replaced by the table of `MODELS[name]`."""
    tables = markdown_tables()

    def table(match: re.Match) -> str:
        if match["name"] not in tables:
            raise KeyError(f"docs/schemas.md names schema {match['name']!r}; known: {sorted(tables)}")
        return f"{match[1]}{tables[match['name']]}{match[3]}"

    return _BLOCK.sub(table, text)


def documented(text: str) -> set[str]:
    """Names of the schema blocks in a docs/schemas.md text."""
    return {m["name"] for m in _BLOCK.finditer(text)}


def main(argv: list[str]) -> int:
    """``python -m segad.schemas [path]``: regenerate the tables of docs/schemas.md in place."""
    path = Path(argv[0]) if argv else DOC
    text = path.read_text(encoding="utf-8")
    new = render_doc(text)
    path.write_text(new, encoding="utf-8")
    print(f"{path}: {'updated' if new != text else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
