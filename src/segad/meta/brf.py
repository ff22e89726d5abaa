"""The boosted random forest (BRF) of SegAD: XGBoost on the per-segment feature vectors.

Settings of the paper and its reference code (`BRFConfig` defaults, all configurable in
conf/base/parameters_brf.yml): ``n_estimators=10, num_parallel_tree=200, max_depth=5,
learning_rate=0.3, objective="binary:logitraw", colsample_bynode=0.6, colsample_bytree=0.6,
subsample=0.6, reg_alpha=1.0``, ``scale_pos_weight = n_good / n_bad`` of the training rows and
``random_state = split_seed``.

With ``binary:logitraw`` the model output is a raw margin (any real number; higher = more
anomalous). It is a *score* for ranking metrics, never a probability; a probability would need an
explicit calibration step that this module does not do.

Method names: a detector alone is its own name (its score is its own image score
``<detector>__score`` where it has one, e.g. the supervised SuperSimpleNet's pred_score, else its
map max ``<detector>__max``); a SegAD combination is
the detector names sorted alphabetically, joined with ``+``, then ``+segad``
(``padim+patchcore+segad``); with the supervised classifier ``classifier`` joins the names.

Example:
    >>> import numpy as np
    >>> from segad.meta.brf import BRFConfig, fit_brf, brf_scores
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 5)), np.r_[np.zeros(30), np.ones(10)]
    >>> model = fit_brf(X, y, BRFConfig(n_estimators=2, num_parallel_tree=5), seed=0)
    >>> brf_scores(model, X).shape
    (40,)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict

import numpy as np

from segad.columns import (
    CLASSIFIER,
    CLASSIFIER_COLUMN,
    columns_of,
    is_feature_column,
    max_column,
    parse_column,
    score_column,
)
from segad.meta.brf_params import DEFAULT_BRF, BRFConfig

SEGAD_SUFFIX = "segad"


class BRFTrainingError(ValueError):
    """The BRF training rows cannot train a classifier (e.g. no bad or no good row)."""


def method_name(members: Iterable[str]) -> str:
    """SegAD method name of a combination: sorted member names + ``segad`` (``padim+patchcore+segad``)."""
    members = sorted(set(members))
    if not members:
        raise ValueError("a SegAD combination needs at least one detector")
    return "+".join([*members, SEGAD_SUFFIX])


def combination_members(method: str) -> list[str]:
    """Inverse of `method_name`: ``padim+patchcore+segad`` -> ['padim', 'patchcore']."""
    parts = method.split("+")
    if parts[-1] != SEGAD_SUFFIX or len(parts) < 2:
        raise ValueError(f"{method!r} is not a SegAD method name (expected '<a>+...+segad')")
    return parts[:-1]


def default_combinations(
    detectors: Sequence[str], classifier: bool = False, scored: Sequence[str] = ()
) -> list[list[str]]:
    """Each detector alone, then all detectors together (once if there is only one detector).

    With the classifier enabled, it is added to the all-detector combination. Detectors in
    `scored` (those with their own image score, e.g. the supervised SuperSimpleNet baseline) add
    one more: all the other detectors together, so SegAD without the baseline is reported on the
    same splits as the baseline.
    """
    combos = [[d] for d in detectors]
    everything = sorted(detectors)
    if len(detectors) > 1:
        combos.append(everything)
    others = sorted(d for d in detectors if d not in set(scored))
    if scored and len(others) > 1:
        combos.append(others)
    if classifier:
        combos.append(sorted([*detectors, "classifier"]))
    unique: dict[str, list[str]] = {}
    for combo in combos:
        unique.setdefault(method_name(combo), sorted(combo))
    return list(unique.values())


def category_columns(columns: Sequence[str], rows) -> list[str]:
    """The feature columns of one category's rows, in table order.

    Categories of one table may differ in segment count, so a table holds every segment's columns
    and a category's rows are NaN in the segments it lacks. A segment belongs to the category when
    any of its columns has a value in `rows` (q995 and mean always have one: 0.0 for an empty
    segment); then all its columns are kept, also a statistic that is NaN in every row (skew and
    kurtosis of a 1-pixel segment), as the reference does: dropping it would change which columns
    XGBoost's column sampling draws. Maxima and the classifier score are always kept.
    """
    segments = set()
    for column in columns:
        parsed = parse_column(column)
        if parsed.kind == "segment" and rows[column].notna().any():
            segments.add(parsed.segment)
    return [c for c in columns if parse_column(c).kind != "segment" or parse_column(c).segment in segments]


def scale_pos_weight(labels: np.ndarray, context: str = "") -> float:
    """n_good / n_bad of training labels (0 good, 1 bad); `BRFTrainingError` if either is 0."""
    labels = np.asarray(labels)
    n_bad = int((labels == 1).sum())
    n_good = int((labels == 0).sum())
    where = f" ({context})" if context else ""
    if n_bad == 0:
        raise BRFTrainingError(
            f"BRF training rows have no bad image{where}: {n_good} good, 0 bad. The regime needs bad "
            "training images, or synthetic defects (benchmark one_class runs the defects pipeline)."
        )
    if n_good == 0:
        raise BRFTrainingError(f"BRF training rows have no good image{where}: 0 good, {n_bad} bad.")
    return n_good / n_bad


def fit_brf(
    features: np.ndarray, labels: np.ndarray, config: BRFConfig = DEFAULT_BRF, seed: int = 0, context: str = ""
):
    """Fit the BRF on float (N, F) features (NaN = missing) and labels (N,) in {0, 1}.

    Returns an `xgboost.XGBClassifier`. `context` names the seed/category in errors.
    """
    if not hasattr(features, "columns"):  # a DataFrame keeps its column names inside the model file
        features = np.asarray(features, dtype=np.float64)
    else:
        features = features.astype(np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features {features.shape} and labels {labels.shape} do not match{context and ' (' + context + ')'}"
        )
    names = list(features.columns) if hasattr(features, "columns") else None
    model = make_brf(config, scale_pos_weight(labels, context), seed, names)
    model.fit(features, labels)
    return model


def _is_segment(column: str) -> bool:
    """True for a segment statistic column (``seg<l>__<detector>__<stat>``)."""
    return is_feature_column(column) and parse_column(column).kind == "segment"


def monotone_constraints(names: Sequence[str]) -> dict[str, int]:
    """+1 (score never lower when the value grows) on q995, mean, maxima and image scores; 0 elsewhere."""
    return {
        c: int(is_feature_column(c) and (parse_column(c).kind != "segment" or parse_column(c).stat in ("q995", "mean")))
        for c in names
    }


def make_brf(config: BRFConfig, pos_weight: float, seed: int, names: Sequence[str] | None = None):
    """The unfitted `xgboost.XGBClassifier` of the BRF with `scale_pos_weight` and `random_state`;
    `names` (the feature columns) give the monotone constraints and the column-sampling weights."""
    from xgboost import XGBClassifier

    params = {k: v for k, v in asdict(config).items() if v is not None}
    global_weight = params.pop("global_weight")
    if params.pop("monotone") and names is not None:
        params["monotone_constraints"] = monotone_constraints(names)
    if global_weight != 1.0 and names is not None:
        params["feature_weights"] = np.array([1.0 if _is_segment(c) else global_weight for c in names])
    return XGBClassifier(**params, scale_pos_weight=float(pos_weight), random_state=int(seed))


def brf_scores(model, features: np.ndarray) -> np.ndarray:
    """Raw margins float64 (N,) of the BRF: a score (higher = more anomalous), not a probability.

    A table is scored by column name (XGBoost checks its columns against the model's). An array
    (N, F) holds the model's F columns in the model's order and goes to the booster directly: a
    tree booster's `inplace_predict` (the call `predict` makes, without building a table: one row
    in about a tenth of the time), a linear one's (`single_input_model`) `predict` on a DMatrix."""
    if hasattr(features, "columns"):
        return np.asarray(model.predict(features.astype(np.float64), output_margin=True), dtype=np.float64)
    features, booster = np.asarray(features, np.float64), model.get_booster()
    if model.get_params()["booster"] == "gblinear":  # no in-place prediction for linear boosters
        from xgboost import DMatrix

        rows = DMatrix(features, missing=model.missing, feature_names=booster.feature_names, nthread=model.n_jobs)
        return np.asarray(booster.predict(rows, output_margin=True), dtype=np.float64)
    margins = booster.inplace_predict(features, predict_type="margin", missing=model.missing, validate_features=False)
    return np.asarray(margins, dtype=np.float64)


def single_input_model(column: str):
    """An XGBoost model whose raw margin is exactly the value of `column` (weight 1, bias 0).

    It lets a bundle ship a single input (a detector's own score or map max, the classifier's
    logit) in the place of a BRF: a ``gblinear`` booster over that one named column.
    """
    import json

    import pandas as pd
    from xgboost import XGBClassifier

    model = XGBClassifier(booster="gblinear", objective="binary:logitraw", n_estimators=1, base_score=0.0)
    model.fit(pd.DataFrame({column: [0.0, 1.0]}), np.array([0, 1]))
    raw = json.loads(model.get_booster().save_raw("json"))
    raw["learner"]["gradient_booster"]["model"]["weights"] = [1.0, 0.0]
    model.get_booster().load_model(bytearray(json.dumps(raw).encode()))
    return model


# --------------------------------------------------------------------------------------------
# a run: one model per category, split seed and combination


def plan_methods(
    features, detectors: Sequence[str], combinations: Sequence[Sequence[str]] | None = None
) -> tuple[dict[str, str], list[list[str]]]:
    """(single inputs {method: score column}, SegAD combinations) of a run's feature table.

    A detector alone reads its own score ``<d>__score`` where the table has one, else its map max;
    ``classifier`` alone reads ``classifier__score`` when the table has it. Combinations: the
    given lists of members, else `default_combinations`. ValueError for a member the table lacks.
    """
    has_classifier = CLASSIFIER_COLUMN in features.columns
    scored = [d for d in detectors if score_column(d) in features.columns]
    combos = (
        [sorted(c) for c in combinations] if combinations else default_combinations(detectors, has_classifier, scored)
    )
    for combo in combos:
        unknown = set(combo) - set(detectors) - ({CLASSIFIER} if has_classifier else set())
        if unknown:
            raise ValueError(f"combination {method_name(combo)} names {sorted(unknown)}, not in this run's features")
    alone = {d: score_column(d) if d in scored else max_column(d) for d in detectors}
    if has_classifier:
        alone[CLASSIFIER] = CLASSIFIER_COLUMN
    return alone, combos


def combination_columns(features, combos: Sequence[Sequence[str]]) -> dict[str, dict[str, list[str]]]:
    """category -> combination method -> its BRF feature columns (`category_columns`, `columns_of`)."""
    feature_cols = [c for c in features.columns if is_feature_column(c)]
    out = {}
    for category, rows in features.groupby("category"):
        present = category_columns(feature_cols, rows)
        out[str(category)] = {method_name(combo): columns_of(combo, present) for combo in combos}
    return out


def run_brf(
    features,
    detectors: Sequence[str],
    config: BRFConfig = DEFAULT_BRF,
    combinations: Sequence[Sequence[str]] | None = None,
    progress=None,
    fit=None,
):
    """Fit every BRF of a feature table and score its test rows.

    Args:
        features: the feature table of one run (rows of one dataset and detector set), with
            columns image_id, split_seed, category, role, label and the feature columns.
        detectors: the run's detectors.
        config: XGBoost settings.
        combinations: lists of members (detector names, ``classifier``); default
            `default_combinations` (classifier added when the table has ``classifier__score``; the
            detectors with a ``<d>__score`` column count as `scored`).
        progress: optional tqdm-like wrapper of the (category, seed) iterator.
        fit: the fitting function, `fit_brf` by default; `segad.meta.brf_store.BRFStore.fit`
            reuses the models of earlier runs fitted on the same rows.
    Returns:
        (models, scores): models ``{"<method>/<category>/split_seed_<s>": XGBClassifier}``;
        scores DataFrame (image_id, split_seed, method, score) over the test rows, with one
        method per detector alone (its own score ``<d>__score`` if the table has one, else its
        map max), ``classifier`` alone (its logit) when the table
        has ``classifier__score``, and one per combination (BRF raw margin).
    """
    import pandas as pd

    alone, combos = plan_methods(features, detectors, combinations)
    present = combination_columns(features, combos)
    fit = fit or fit_brf
    models, frames = {}, []
    groups = list(features.groupby(["category", "split_seed"], sort=True))
    for (category, seed), rows in progress(groups) if progress else groups:
        train = rows[rows["role"] == "brf_train"]
        test = rows[rows["role"] == "test"]
        for method, column in alone.items():
            frames.append(
                pd.DataFrame(
                    {
                        "image_id": test["image_id"].to_numpy(),
                        "split_seed": int(seed),
                        "method": method,
                        "score": test[column].to_numpy(np.float64),
                    }
                )
            )
        for combo in combos:
            method = method_name(combo)
            cols = present[str(category)][method]
            model = fit(
                train[cols],
                train["label"].to_numpy(),
                config,
                seed=int(seed),
                context=f"category {category!r}, split_seed {seed}, method {method}",
            )
            models[f"{method}/{category}/split_seed_{int(seed)}"] = model
            frames.append(
                pd.DataFrame(
                    {
                        "image_id": test["image_id"].to_numpy(),
                        "split_seed": int(seed),
                        "method": method,
                        "score": brf_scores(model, test[cols]),
                    }
                )
            )
    if not frames:
        raise ValueError("feature table has no rows for this run")
    scores = pd.concat(frames, ignore_index=True)
    return models, scores.astype({"split_seed": "int64", "score": "float64"})


# --------------------------------------------------------------------------------------------
# the BRFs of a Kedro run: partition names and the run's rows of the feature table

#: Partition name of one BRF in ``brf_models``: ``<dataset>/<benchmark>/<category>/<method>/split_seed_<s>``.
MODEL_KEY = "{dataset}/{benchmark}/{category}/{method}/split_seed_{seed}"


def model_key(dataset: str, benchmark: str, category: str, method: str, split_seed: int) -> str:
    """Partition name of one BRF (a file ``<key>.json`` under data/06_models/brf), e.g.
    ``visa/one_class/pcb1/padim+patchcore+segad/split_seed_0``."""
    return MODEL_KEY.format(
        dataset=dataset, benchmark=benchmark, category=category, method=method, seed=int(split_seed)
    )


def parse_model_key(key: str) -> tuple[str, str, str, str, int]:
    """Inverse of `model_key`: (dataset, benchmark, category, method, split_seed)."""
    parts = key.split("/")
    if len(parts) != 5 or not parts[4].startswith("split_seed_") or not parts[4].removeprefix("split_seed_").isdigit():
        raise ValueError(
            f"brf_models: unexpected partition name {key!r}; "
            "expected <dataset>/<benchmark>/<category>/<method>/split_seed_<s>"
        )
    return parts[0], parts[1], parts[2], parts[3], int(parts[4].removeprefix("split_seed_"))


def select_run(features, image_index, dataset: str, seeds: Sequence[int], detectors: Sequence[str], benchmark: str):
    """Rows of the feature table that belong to this run: its dataset id (`segad.config.DatasetConfig.id`),
    benchmark, detector set, image_index categories and seeds.

    `features` is the table (DataFrame) or a reader of its partitions (an object with
    ``read(**partition_values)``, e.g. the catalog's lazy ``features`` entry), which then reads
    only this run's partitions, however many earlier runs are cached beside them. Columns without
    any value in the run are dropped, except segment statistics: `category_columns` keeps a
    segment's all-NaN statistics, as the reference does. ValueError when the run has no rows, or
    lacks a seed.
    """
    key = "+".join(sorted(detectors))
    seeds = [int(s) for s in seeds]
    if hasattr(features, "read"):
        features = features.read(dataset=str(dataset), benchmark=str(benchmark), detectors=key, split_seed=seeds)
    chosen = features[
        (features["dataset"] == dataset)
        & (features["benchmark"] == benchmark)
        & (features["detectors"] == key)
        & (features["category"].isin(image_index["category"].unique()))
        & (features["split_seed"].isin(seeds))
    ]
    if chosen.empty:
        raise ValueError(
            f"no features for dataset={dataset}, benchmark={benchmark}, detectors={key}, "
            f"split_seed in {list(seeds)}: "
            "run the features pipeline first"
        )
    missing = sorted(set(seeds) - set(chosen["split_seed"].unique()))
    if missing:
        raise ValueError(
            f"features lack split_seed {missing} for dataset={dataset}, benchmark={benchmark}, detectors={key}"
        )
    empty = [
        c
        for c in chosen.columns
        if chosen[c].isna().all() and not (is_feature_column(c) and parse_column(c).kind == "segment")
    ]
    return chosen.drop(columns=empty).reset_index(drop=True)
