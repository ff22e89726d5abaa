"""Thin nodes over segad.evaluation.report and segad.evaluation.decision: report.md and the
per-regime copies."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from segad.config import DatasetConfig, ReportOptions
from segad.evaluation.report import package_versions, render_report
from segad.versions import jsonable


def write_report(
    metrics: pd.DataFrame,
    parameters: Mapping,
    options: ReportOptions,
    operating_point: Mapping | None = None,
    test_scores: pd.DataFrame | None = None,
    **plot_files: list[str],
) -> str:
    """report.md text; ``plot_files`` maps a plot dataset key (as in ``options.plot_dirs``) to file names.

    It opens with the decision (`segad.evaluation.decision.decision_block`) from the bundle
    stage's `operating_point` and the `test_scores`. ``parameters`` (the whole tree) may hold typed
    parameter blocks; the appendix prints the blocks of what ran, as plain values.
    """
    plot_dirs = options.plot_dirs
    titles = options.plot_titles
    figures = {}
    for key, files in plot_files.items():
        if key not in plot_dirs:
            raise KeyError(f"evaluation.report.plot_dirs has no folder for plot set {key!r}")
        figures[titles.get(key, key)] = [f"{plot_dirs[key]}/{name}" for name in files]
    return render_report(
        metrics,
        parameters=jsonable(parameters),
        figures=figures,
        versions=package_versions(),
        title=options.title,
        operating_point=jsonable(operating_point) if operating_point is not None else None,
        test_scores=test_scores,
    )


def keep_report_by_regime(
    report: str, metrics: pd.DataFrame, metrics_by_regime: Mapping, dataset: DatasetConfig, benchmark: str
) -> dict:
    """report.md beside this run's kept metrics: ``<dataset id>/<benchmark>/report`` (the
    regime's latest) and ``<dataset id>/<benchmark>/runs/<run id>/report``, where the run is
    the newest ``runs/<run id>/metrics`` of this regime that holds this run's `metrics` (run ids
    sort by time; two runs of the same second are told apart by their tables), else the newest
    (`segad.pipelines.evaluation.nodes.keep_metrics_by_regime` writes them)."""
    key = f"{dataset.id}/{benchmark}"
    runs = sorted(
        name.removesuffix("/metrics")
        for name in metrics_by_regime
        if name.startswith(f"{key}/runs/") and name.endswith("/metrics")
    )
    kept = {f"{key}/report": report}
    if runs:
        ours = [run for run in runs if _same(metrics_by_regime[f"{run}/metrics"], metrics)]
        kept[f"{(ours or runs)[-1]}/report"] = report
    return kept


def _same(load, metrics: pd.DataFrame) -> bool:
    table = load() if callable(load) else load
    return table.shape == metrics.shape and table.astype(str).equals(metrics.astype(str))
