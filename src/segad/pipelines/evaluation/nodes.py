"""Thin nodes over segad.evaluation.metrics, segad.evaluation.plots and segad.evaluation.report."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from segad.config import DatasetConfig, PlotOptions
from segad.evaluation.bootstrap import HIGH, INTERVAL_COLUMNS, LOW, bootstrap_intervals
from segad.evaluation.metrics import COUNT_COLUMNS, METRIC_COLUMNS, aggregate_over_seeds, image_metrics
from segad.evaluation.plots import (
    feature_importance_figure,
    model_importances,
    overlay_figure,
    roc_figure,
    score_histogram_figure,
    worst_cases,
)
from segad.evaluation.report import method_order
from segad.meta.brf import parse_model_key
from segad.meta.segmentation_choice import chosen_segmentation
from segad.production.assemble import BundleOptions
from segad.runs import new_run_id
from segad.schemas import Metrics, TestScores, columns
from segad.segments.overlay import segmentation_figures
from segad.segments.segment_maps import SegmentMapConfig, SegmentMaps
from segad.storage.images import read_image

log = logging.getLogger(__name__)

#: Columns of the ``metrics`` and ``evaluation.test_scores`` tables (docs/schemas.md), in order.
METRICS_COLUMNS = list(columns(Metrics))
TEST_SCORE_COLUMNS = list(columns(TestScores))


def _require(table: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing} (see docs/schemas.md); it has {list(table.columns)}")


def label_test_scores(
    scores: pd.DataFrame,
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    dataset: DatasetConfig | None = None,
    benchmark: str | None = None,
) -> pd.DataFrame:
    """Test-set scores with their labels: ``scores`` joined with the test rows of ``splits`` and the index.

    ``scores`` (the brf stage's table, partitioned by dataset and benchmark) may hold other
    regimes' runs: with ``dataset`` (``params:dataset``) and ``benchmark`` given, only the rows of
    the dataset id (``dataset.id``) and ``benchmark`` are used.
    Every (method, split_seed) must score every test image of that seed: a metric over a
    partial test set would not be comparable, so missing images are an error.
    Scores of non-test rows (brf_train, synthetic images) are dropped.
    """
    if dataset is not None and benchmark is not None:
        _require(scores, ["dataset", "benchmark"], "scores")
        ident = dataset.id
        ours = (scores["dataset"] == ident) & (scores["benchmark"] == str(benchmark))
        if not ours.any():
            raise ValueError(
                f"scores has no rows for dataset={ident}, benchmark={benchmark}: run the brf "
                f"pipeline first (it has {sorted(set(zip(scores['dataset'], scores['benchmark'])))})"
            )
        scores = scores[ours].drop(columns=["dataset", "benchmark"])
    _require(scores, ["image_id", "split_seed", "method", "score"], "scores")
    _require(image_index, ["image_id", "dataset", "category", "label", "defect_type", "unseen"], "image_index")
    _require(splits, ["image_id", "split_seed", "role"], "splits")
    if scores.duplicated(["image_id", "split_seed", "method"]).any():
        first = scores[scores.duplicated(["image_id", "split_seed", "method"])].iloc[0]
        raise ValueError(f"scores has duplicated (image_id, split_seed, method) rows, e.g. {first.to_dict()}")
    test = splits.loc[splits["role"] == "test", ["image_id", "split_seed"]]
    test = test.astype({"split_seed": "int64"})
    scores = scores.astype({"split_seed": "int64"})
    joined = scores.merge(test, on=["image_id", "split_seed"], how="inner")
    for (method, seed), rows in joined.groupby(["method", "split_seed"], sort=False):
        expected = test.loc[test["split_seed"] == seed, "image_id"]
        missing = set(expected) - set(rows["image_id"])
        if missing:
            raise ValueError(
                f"scores: method {method!r} split_seed {seed} lacks {len(missing)} of "
                f"{len(expected)} test images, e.g. {sorted(missing)[:3]}"
            )
    if joined.empty:
        raise ValueError(
            f"scores has no row for a test image of splits (split_seeds {sorted(set(test['split_seed']))})"
        )
    all_seeds = set(test["split_seed"])
    for method, rows in joined.groupby("method", sort=False):
        seeds_without = sorted(all_seeds - set(rows["split_seed"]))
        if seeds_without:
            raise ValueError(f"scores: method {method!r} has no test scores for split_seed(s) {seeds_without}")
    index = image_index[["image_id", "dataset", "category", "label", "defect_type", "unseen"]]
    joined = joined.merge(index, on="image_id", how="left", validate="many_to_one")
    if joined["label"].isna().any():
        raise ValueError(
            f"scores: image_id(s) not in image_index, e.g. {joined.loc[joined.label.isna(), 'image_id'].iloc[0]}"
        )
    joined["unseen"] = joined["unseen"].fillna(False).astype(bool)
    joined["label"] = joined["label"].astype("int8")
    joined["score"] = joined["score"].astype("float64")
    order = {m: i for i, m in enumerate(method_order(list(joined["method"].unique())))}
    joined = joined.sort_values(["split_seed", "image_id"], ignore_index=True)
    joined = joined.sort_values("method", key=lambda s: s.map(order), kind="mergesort", ignore_index=True)
    return joined[TEST_SCORE_COLUMNS]


def _subsets(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """all; plus seen / unseen (all good + seen resp. unseen bad) where unseen defects exist."""
    subsets = {"all": rows}
    bad = rows["label"] == 1
    if (bad & rows["unseen"]).any():
        good = rows["label"] == 0
        if (bad & ~rows["unseen"]).any():
            subsets["seen"] = rows[good | (bad & ~rows["unseen"])]
        subsets["unseen"] = rows[good | (bad & rows["unseen"])]
    return subsets


def compute_metrics(test_scores: pd.DataFrame, benchmark: str) -> pd.DataFrame:
    """The ``metrics`` table: per dataset, category, method, split_seed and subset, then mean/std rows.

    With several categories, ``category = "mean"`` rows hold the mean over categories of each
    metric (counts summed) per method, seed and subset, as VisA results are reported.
    """
    rows = []
    for (dataset, category, method, seed), group in test_scores.groupby(
        ["dataset", "category", "method", "split_seed"], sort=True
    ):
        for subset, part in _subsets(group).items():
            name = f"dataset {dataset}, category {category}, method {method}, split_seed {seed}, subset {subset}"
            metrics = image_metrics(part["label"].to_numpy(), part["score"].to_numpy(), name=name)
            rows.append(
                {
                    "dataset": dataset,
                    "category": category,
                    "benchmark": benchmark,
                    "method": method,
                    "split_seed": int(seed),
                    "subset": subset,
                    **metrics.as_dict(),
                }
            )
    table = pd.DataFrame(rows, columns=METRICS_COLUMNS).drop(columns=list(INTERVAL_COLUMNS))
    if table["category"].nunique() > 1:
        keys = ["dataset", "benchmark", "method", "split_seed", "subset"]
        grouped = table.groupby(keys, sort=False)
        mean = grouped[list(METRIC_COLUMNS)].mean().join(grouped[list(COUNT_COLUMNS)].sum()).reset_index()
        mean["category"] = "mean"
        table = pd.concat([table, mean[table.columns]], ignore_index=True)
    order = {m: i for i, m in enumerate(method_order(list(table["method"])))}
    table = table.sort_values(["dataset", "category", "subset", "split_seed"], kind="mergesort")
    table = table.sort_values("method", key=lambda s: s.map(order), kind="mergesort")
    out = aggregate_over_seeds(table, keys=["dataset", "category", "benchmark", "method", "subset"])
    out = _with_intervals(out, test_scores)
    for _, row in out[(out.split_seed == "mean") & (out.subset == "all")].iterrows():
        log.info(
            "%-28s %-10s AUROC %.3f  FPR@95TPR %.3f  PG2 %.3f  PB2 %.3f",
            row.method,
            row.category,
            row.auroc,
            row.fpr95tpr,
            row.pg2,
            row.pb2,
        )
    return out[METRICS_COLUMNS]


def _with_intervals(table: pd.DataFrame, test_scores: pd.DataFrame) -> pd.DataFrame:
    """`table` with the 95 % bootstrap interval columns (`segad.evaluation.bootstrap`) on its ``mean``
    rows of single categories; NaN elsewhere (per-seed, ``std`` and ``category = mean`` rows)."""
    table = table.copy()
    for column in INTERVAL_COLUMNS:
        table[column] = np.nan
    means = table.index[(table["split_seed"] == "mean") & (table["category"] != "mean")]
    groups = {key: rows for key, rows in test_scores.groupby(["dataset", "category", "method"], sort=False)}
    for row in means:
        key = tuple(table.loc[row, ["dataset", "category", "method"]])
        if key not in groups:
            continue
        seeds = []
        for _, rows in groups[key].groupby("split_seed", sort=True):
            part = _subsets(rows).get(str(table.loc[row, "subset"]))
            if part is not None:
                seeds.append((part["label"].to_numpy(), part["score"].to_numpy()))
        if not seeds:
            continue
        for metric, (low, high) in bootstrap_intervals(seeds).items():
            table.loc[row, [f"{metric}{LOW}", f"{metric}{HIGH}"]] = [low, high]
    return table


def _per_category(test_scores: pd.DataFrame):
    categories = list(dict.fromkeys(test_scores["category"]))
    for category in categories:
        suffix = "" if len(categories) == 1 else f"_{category}"
        yield category, suffix, test_scores[test_scores["category"] == category]


def plot_roc_curves(test_scores: pd.DataFrame) -> tuple[dict, list[str]]:
    """ROC figures per category -> ({file name: figure}, file names)."""
    figures = {
        f"roc{suffix}.png": roc_figure(rows, title=str(category))
        for category, suffix, rows in _per_category(test_scores)
    }
    return figures, list(figures)


def plot_score_histograms(
    test_scores: pd.DataFrame, options: PlotOptions, bundle: BundleOptions | None = None
) -> tuple[dict, list[str]]:
    """Score histograms (good / seen bad / unseen bad) per category -> (figures, file names); the
    threshold line follows the bundle's rule (`bundle.max_miss_rate` quantile of the bad scores)."""
    miss = float(bundle.max_miss_rate) if bundle is not None else 0.02
    figures = {
        f"histogram{suffix}.png": score_histogram_figure(
            rows, split_seed=options.split_seed, bins=options.histogram_bins, title=str(category), max_miss_rate=miss
        )
        for category, suffix, rows in _per_category(test_scores)
    }
    return figures, list(figures)


def chosen_segments(
    segment_maps: SegmentMaps, segmentation_selection: pd.DataFrame, dataset: DatasetConfig, benchmark: str
) -> SegmentMaps:
    """The segments the features of this regime were computed with (`segad.meta.segmentation_choice`)."""
    return chosen_segmentation(segment_maps, segmentation_selection, dataset.id, str(benchmark))


def plot_segments(
    image_index: pd.DataFrame,
    segmentation: SegmentMaps,
    segmentation_params: SegmentMapConfig,
    dataset: DatasetConfig,
    bundle: BundleOptions | None = None,
) -> tuple[dict, list[str]]:
    """The segments the features were computed with (the out-of-fold choice where there was one),
    over ``segmentation.overlay_images`` images per category, parts named as the bundle names them
    -> (figures, file names) (`segad.segments.overlay.segmentation_figures`)."""
    names = _part_names(segmentation, dataset, bundle)
    figures = segmentation_figures(image_index, segmentation, segmentation_params.overlay_images, names)
    return figures, list(figures)


def plot_feature_importance(
    brf_models: Mapping,
    test_scores: pd.DataFrame,
    options: PlotOptions,
    dataset: DatasetConfig,
    benchmark: str,
    segment_maps=None,
    bundle: BundleOptions | None = None,
) -> tuple[dict, list[str]]:
    """Importance figures, one per SegAD combination of this run -> (figures, file names).

    ``brf_models`` is the brf stage's partitioned dataset ({``<dataset>/<benchmark>/<category>/
    <method>/split_seed_<s>``: loader}); only the partitions of this run's dataset
    (``dataset.id``), benchmark, methods, categories and seeds (those in ``test_scores``)
    are read, since the folder keeps models of other runs. Importance = the feature's share of
    each model's total ``importance_type``, averaged over categories and seeds.
    """
    importance_type = options.importance_type
    methods = {m for m in test_scores["method"].unique() if m.endswith("+segad")}
    categories = set(test_scores["category"].astype(str))
    seeds = set(int(s) for s in test_scores["split_seed"].unique())
    regime = (dataset.id, str(benchmark))
    chosen: dict[str, list] = {}
    legacy = []
    for key, load in sorted(brf_models.items()):
        try:
            ident, bench, category, method, seed = parse_model_key(key)
        except ValueError:
            legacy.append(key)  # e.g. <method>/<category>/split_seed_<s> of the regime-less layout
            continue
        if (ident, bench) == regime and method in methods and category in categories and seed in seeds:
            chosen.setdefault(method, []).append(load() if callable(load) else load)
    if legacy:
        log.warning(
            "brf_models: %d file(s) not named <dataset>/<benchmark>/<category>/<method>/"
            "split_seed_<s> were skipped (e.g. %s)",
            len(legacy),
            legacy[0],
        )
    missing = sorted(methods - set(chosen))
    if missing:
        raise ValueError(
            f"brf_models has no model of dataset={regime[0]}, benchmark={regime[1]} for "
            f"method(s) {missing} of this run's scores"
        )
    figures = {}
    for method in method_order(list(chosen)):
        values = model_importances(chosen[method], importance_type)
        title = f"{method} (share of {importance_type}, mean over {len(chosen[method])} model(s))"
        figures[f"importance_{method.replace('+', '_')}.png"] = feature_importance_figure(
            values,
            title=title,
            importance_type=f"share of {importance_type}",
            segment_names=_part_names(segment_maps, dataset, bundle),
        )
    return figures, list(figures)


def plot_overlays(
    test_scores: pd.DataFrame,
    image_index: pd.DataFrame,
    segmentation,
    options: PlotOptions,
    bundle: BundleOptions | None = None,
    dataset: DatasetConfig | None = None,
    **maps,
) -> tuple[dict, list[str]]:
    """Worst false negatives / positives of one method per category, with segments and raw maps.

    Each case says what the bundle's rule decides for it: accept or reject at the threshold that
    rule (`bundle.max_miss_rate` quantile of the bad scores) gives on that seed's test scores; the
    segment legend names parts as the bundle does.

    ``maps`` holds ``<detector>__map_index`` (DataFrame) and ``<detector>__map_store``
    (`segad.storage.map_store.MapStore`) for every detector. The method is ``options.overlay_method``
    or, when null, the largest SegAD combination; the seed is ``options.split_seed`` or the
    smallest; ``options.n_worst`` cases of each kind.
    """
    detectors = [k.removesuffix("__map_index") for k in maps if k.endswith("__map_index")]
    methods = method_order(list(test_scores["method"].unique()))
    method = options.overlay_method or methods[-1]
    if method not in methods:
        raise ValueError(f"evaluation.plots.overlay_method {method!r} is not among the scored methods {methods}")
    seeds = sorted(int(s) for s in test_scores["split_seed"].unique())
    seed = options.split_seed if options.split_seed is not None else seeds[0]
    n_worst = options.n_worst
    paths = image_index.set_index("image_id")["path"]
    keys = {d: maps[f"{d}__map_index"].set_index(["image_id", "split_seed"])["map_key"] for d in detectors}
    figures = {}
    miss = float(bundle.max_miss_rate) if bundle is not None else 0.02
    names = _part_names(segmentation, dataset, bundle) if dataset is not None else {}
    for category, suffix, rows in _per_category(test_scores):
        cases = []
        ours = rows[(rows["method"] == method) & (rows["split_seed"] == seed)]
        bad = ours.loc[ours["label"] == 1, "score"].to_numpy(float)
        threshold = float(np.quantile(bad, miss)) if bad.size else float("nan")
        for case in worst_cases(rows, method, seed, n=n_worst).itertuples():
            anomaly_maps = {}
            for detector in detectors:
                try:
                    map_key = keys[detector].loc[(case.image_id, seed)]
                except KeyError as error:
                    raise KeyError(
                        f"{detector}.map_index has no map for image {case.image_id!r}, split_seed {seed}"
                    ) from error
                anomaly_maps[detector] = maps[f"{detector}__map_store"].read(str(map_key))
            size = next(iter(anomaly_maps.values())).shape if anomaly_maps else None  # (H, W)
            labels = segmentation.labels_for(category, [case.image_id]) if segmentation is not None else None
            if labels is not None and labels.ndim == 3:
                labels = labels[0]
            kind = "FN" if case.case == "false_negative" else "FP"
            cases.append(
                {
                    "image": read_image(paths.loc[case.image_id], size=size),
                    "maps": anomaly_maps,
                    "segments": labels,
                    "caption": f"{kind} #{case.rank} score {case.score:.3g}: "
                    f"{'reject' if case.score >= threshold else 'accept'}\n{case.image_id}",
                }
            )
        title = (
            f"{method}, split_seed {seed}, {category}\nworst false negatives (FN), false positives (FP); "
            f"decision at threshold {threshold:.3g} ({miss:.0%} of these bad parts accepted)"
        )
        figures[f"overlays{suffix}.png"] = overlay_figure(cases, title=title, segment_names=names)
    return figures, list(figures)


def _part_names(segment_maps, dataset: DatasetConfig, bundle: BundleOptions | None) -> dict[int, str]:
    """{label: part name} as the bundle and inspection.parquet name segments (empty when unknown)."""
    if segment_maps is None:
        return {}
    from segad.production.assemble import segment_names

    return segment_names(segment_maps, dataset.layout, bundle.segment_names if bundle is not None else None)


def keep_metrics_by_regime(
    metrics: pd.DataFrame, dataset: DatasetConfig, benchmark: str, **plot_files: list[str]
) -> dict:
    """This run's metrics, kept beside other regimes' and other runs', once the evaluation is
    complete: `plot_files` (the plot nodes' file lists) only order this node after every plot, so
    the bundle node, which reads the kept metrics, runs after the whole evaluation.

    ``<dataset id>/<benchmark>/metrics`` is the regime's latest copy (as metrics.csv at the top
    is the latest run's); ``<dataset id>/<benchmark>/runs/<run id>/metrics`` keeps every run's
    copy (`segad.runs.new_run_id`: UTC time + 8 random hex digits), so no run replaces the figures
    of another regime or of an earlier run. The report stage puts report.md beside them
    (`segad.pipelines.report.nodes.keep_report_by_regime`).
    """
    key = f"{dataset.id}/{benchmark}"
    return {f"{key}/metrics": metrics, f"{key}/runs/{new_run_id()}/metrics": metrics}
