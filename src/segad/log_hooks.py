"""Readable run logs (segad.logs) and the closing summary block of every `kedro run`.

`LogHooks`:
- at session start: the known-harmless warnings are silenced at their source, the console is
  plain one-line records off a terminal and rich on one, and an uncaught error prints its cause
  first with a short traceback (the full one goes to ``data/09_tracking/last_error.log``);
- per node: the wall time, summed per stage (the first part of the node's namespace);
- a failing node: one ERROR record, the cause first (`segad.logs.short_traceback`), the full
  traceback at DEBUG;
- after the run (or its failure): the summary block: what ran, where report.md, the bundle and the
  MLflow run are, the best method against the best single detector, and the time per stage.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from segad.logs import configure_console, install_excepthook, short_traceback, silence_known_warnings

log = logging.getLogger("segad.run")

#: Where an uncaught error's full traceback is written (relative to the project).
ERROR_FILE = Path("data/09_tracking/last_error.log")


def _stage(node: Any) -> str:
    namespace = getattr(node, "namespace", None)
    return namespace.split(".")[0] if namespace else str(getattr(node, "name", node))


def _dataset_path(catalog: Any, name: str) -> Path | None:
    try:
        dataset = catalog.get(name)
    except Exception:  # noqa: BLE001 - a missing dataset only shortens the summary
        return None
    for attribute in ("_filepath", "_path", "path"):
        value = getattr(dataset, attribute, None)
        if value is not None:
            return Path(str(value))
    return None


def _relative(path: Path, project: Path) -> str:
    try:
        return str(path.resolve().relative_to(project.resolve()))
    except ValueError:
        return str(path)


def summary_lines(
    *,
    pipelines: str,
    status: str,
    seconds: float,
    stage_seconds: Mapping[str, float],
    report: str | None,
    bundle: str | None,
    tracking: Mapping[str, str] | None,
    comparison: str | None,
) -> list[str]:
    """The summary block's lines (each well under `segad.logs.MAX_LINE` characters)."""
    from segad.pipeline_registry import EXTRA, STAGES

    order = [*STAGES, *EXTRA]
    ranked = sorted(stage_seconds.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))
    stages = ", ".join(f"{name} {value:.1f} s" for name, value in ranked) or "none"
    mlflow = (
        f"run {tracking['run_id']} (experiment {tracking['experiment']}) in {tracking['uri']}; open it: make ui"
        if tracking
        else "not tracked (SEGAD_TRACKING=off, or a stage run)"
    )
    return [
        "==================== segad run summary ====================",
        f"ran:        pipelines {pipelines}: {status} in {seconds:.1f} s",
        f"report:     {report or 'not written by this run'}",
        f"bundle:     {bundle or 'not written by this run'}",
        f"MLflow:     {mlflow}",
        f"best:       {comparison or 'no SegAD method and single detector to compare'}",
        f"time/stage: {stages}",
        "============================================================",
    ]


class LogHooks:
    """See the module docstring. `tracking` is the session's `TrackingHooks` (for its run id)."""

    def __init__(self, tracking: Any = None) -> None:
        self._tracking = tracking
        self._project = Path.cwd()
        self._start = 0.0
        self._node_start: dict[str, float] = {}
        self._stage_seconds: dict[str, float] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        silence_known_warnings()
        configure_console()
        self._project = Path(context.project_path)
        install_excepthook(self._project / ERROR_FILE)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        silence_known_warnings()  # again: a library imported since may have reset its logger
        self._start = time.monotonic()
        self._node_start.clear()
        self._stage_seconds = {}

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_start[node.name] = time.monotonic()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        started = self._node_start.pop(node.name, None)
        if started is not None:
            stage = _stage(node)
            self._stage_seconds[stage] = self._stage_seconds.get(stage, 0.0) + time.monotonic() - started

    @hook_impl
    def on_node_error(self, error: Exception, node: Any) -> None:
        self.after_node_run(node)
        log.error("node %s (stage %s) failed.\n%s", node.name, _stage(node), short_traceback(error))
        log.debug("full traceback of node %s:\n%s", node.name, "".join(traceback.format_exception(error)))

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._summary(run_params, pipeline, catalog, "finished")

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._summary(run_params, pipeline, catalog, f"FAILED ({type(error).__name__})")

    def _summary(self, run_params: dict[str, Any], pipeline: Any, catalog: Any, status: str) -> None:
        try:
            lines = self._lines(run_params, pipeline, catalog, status)
        except Exception as problem:  # noqa: BLE001 - the summary must never hide the run's own outcome
            lines = [f"(no run summary: {type(problem).__name__}: {problem})"]
        log.info("\n".join(lines))

    def _lines(self, run_params: dict[str, Any], pipeline: Any, catalog: Any, status: str) -> list[str]:
        written = pipeline.all_outputs()
        report = _dataset_path(catalog, "report") if "report" in written else None
        bundle_text = None
        if "operating_point" in written and catalog.exists("operating_point"):
            op = catalog.load("operating_point")
            parent = _dataset_path(catalog, "segad_bundle")
            if op.get("bundle_id") and parent is not None:
                bundle_text = (
                    f"{_relative(parent / str(op['bundle_id']), self._project)} "
                    f"({op.get('method')}, threshold {float(op['threshold']):.4g})"
                )
            elif op.get("built") is False:
                bundle_text = f"none ({op.get('reason', 'not built')})"
        comparison = None
        if "metrics" in written and catalog.exists("metrics"):
            comparison = _comparison(catalog.load("metrics"))
        tracking = getattr(self._tracking, "last_run", None) if self._tracking is not None else None
        return summary_lines(
            pipelines="+".join(run_params.get("pipeline_names") or ["__default__"]),
            status=status,
            seconds=time.monotonic() - self._start,
            stage_seconds=self._stage_seconds,
            report=_relative(report, self._project) if report is not None and report.exists() else None,
            bundle=bundle_text,
            tracking=tracking,
            comparison=comparison,
        )


def _comparison(metrics: Any) -> str | None:
    from segad.evaluation.decision import compare_best

    categories = list(dict.fromkeys(metrics["category"]))
    category = "mean" if "mean" in categories else categories[0]
    best = compare_best(metrics, category)
    if best is None:
        return None
    sides = [
        f"{name} AUROC {best.cell(name, 'auroc')}, PG2 {best.cell(name, 'pg2')}"
        for name in (best.method, best.detector)
    ]
    return f"{sides[0]} vs {sides[1]}: {best.verdict_word}"
