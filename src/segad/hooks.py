"""Project hooks.

`RunConfigHooks`: the run configuration (`segad.config.RunConfig`) is checked once per session,
before any pipeline is built, and gives the pipeline registry its detector list; nodes that read
the whole ``parameters`` tree get it as plain values.
`UpstreamCheckHooks`: a stage pipeline run alone stops early, in one line, when upstream output is
missing.
`StopHooks`: SIGINT and SIGTERM stop a run within seconds in every stage (`segad.stopping`).
"""

from __future__ import annotations

from typing import Any

import click
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline
from kedro.validation import ParameterValidationError

from segad.config import ParameterError, RunConfig
from segad.versions import jsonable

# Pipelines that are sums of stages: never named as the producer of a dataset.
COMPOSITE = ("__default__", "segad")


class RunConfigError(click.ClickException, ParameterValidationError):
    """The session's parameters are not a valid `RunConfig`.

    A ClickException, so that `kedro run` prints it as one `Error: ...` line and exits with
    status 1 before any pipeline is built; from Python it is Kedro's ParameterValidationError.
    """


class RunConfigHooks:
    """One run configuration per session, from the session's own config loader.

    `after_context_created` runs in `KedroSession.load_context()`, which `KedroSession.run` calls
    before it first reads the registered pipelines; it reads ``context.config_loader["parameters"]``
    (base, the run environment and ``--params``), not ``context.params``: that property runs
    Kedro's typed-parameter validation, which builds every registered pipeline first.
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Check the run keys of the parameters and hand `detectors` to the pipeline registry."""
        from segad.pipeline_registry import use_detectors

        try:
            run = RunConfig.from_parameters(context.config_loader["parameters"])
        except ParameterError as error:
            where = f" (environment {context.env})" if context.env else ""
            raise RunConfigError(f"Parameter validation failed{where}: {error}") from error
        use_detectors(run.detectors)

    @hook_impl
    def after_catalog_created(self, catalog: Any, parameters: dict[str, Any]) -> None:
        """Give nodes that read the whole ``parameters`` tree (the report, the bundle manifest) plain
        values: Kedro puts its typed parameter blocks (segad.config) into that tree too."""
        if "parameters" in parameters:
            catalog.save("parameters", jsonable(parameters["parameters"]))

    @hook_impl
    def after_pipeline_run(self) -> None:
        """The run is over: pipelines built later in this process (no session) follow conf/ again."""
        from segad.pipeline_registry import use_detectors

        use_detectors(None)

    @hook_impl
    def on_pipeline_error(self) -> None:
        """As `after_pipeline_run`."""
        self.after_pipeline_run()


class MissingUpstreamError(click.ClickException, RuntimeError):
    """A pipeline's input that another pipeline writes does not exist yet.

    A ClickException, so that `kedro run` prints it as one `Error: ...` line and exits with
    status 1 instead of a traceback; from Python it is an ordinary RuntimeError.
    """

    def __init__(self, pipeline_name: str, missing: list[str], producers: list[str]) -> None:
        self.pipeline_name = pipeline_name
        self.missing = missing
        self.producers = producers
        rest = ", ".join(producers[1:])
        first = f"run `kedro run --pipelines {producers[0]}`" + (f" (then {rest})" if rest else "")
        super().__init__(
            f"pipeline '{pipeline_name}' needs {', '.join(missing)}, which no run has written yet: "
            f"{first} first, or `kedro run --pipelines segad` for the whole flow"
        )


def _producers(pipelines: dict[str, Pipeline]) -> dict[str, str]:
    """Dataset name -> the smallest non-composite registered pipeline that writes it."""
    stages = sorted(
        ((name, p) for name, p in pipelines.items() if name not in COMPOSITE), key=lambda item: len(item[1].nodes)
    )
    producer: dict[str, str] = {}
    for name, stage in stages:
        for dataset in stage.all_outputs():
            producer.setdefault(dataset, name)
    return producer


def _exists(catalog: Any, name: str) -> bool | None:
    """Whether `name` is written; None when it is in memory only or its dataset cannot tell."""
    dataset = catalog.get(name)
    if dataset is None or isinstance(dataset, MemoryDataset):
        return None
    try:
        return bool(dataset.exists())
    except Exception:  # noqa: BLE001 - a dataset that cannot tell must not block the run
        return None


def _missing(pipeline: Pipeline, catalog: Any, producer: dict[str, str]) -> list[str]:
    """Free inputs of `pipeline` that a registered pipeline writes and that do not exist."""
    return sorted(
        name
        for name in pipeline.inputs()
        if name != "parameters"
        and not name.startswith("params:")
        and name in producer
        and _exists(catalog, name) is False
    )


def missing_upstream(
    pipeline: Pipeline, catalog: Any, pipelines: dict[str, Pipeline], pipeline_name: str
) -> MissingUpstreamError | None:
    """The error for `pipeline`'s missing upstream inputs, or None when all exist.

    Inputs no registered pipeline writes (stores the nodes fill through a handle, raw data) and
    parameters are not checked. The error names the stages that make the missing inputs, and those
    that make their own missing inputs, in the registry's order: `STAGES` is in data-flow order, so
    running them one after the other in that order works.
    """
    producer = _producers(pipelines)
    missing = _missing(pipeline, catalog, producer)
    if not missing:
        return None
    order = [name for name in pipelines if name not in COMPOSITE]
    needs = {producer[name] for name in missing}
    todo = list(needs)
    while todo:  # add the producers of the producers' own missing inputs
        extra = {producer[d] for d in _missing(pipelines[todo.pop()], catalog, producer)} - needs
        needs |= extra
        todo += extra
    return MissingUpstreamError(pipeline_name, missing, sorted(needs, key=order.index))


class UpstreamCheckHooks:
    """Check before a run that every upstream output the pipeline reads has been written."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        """Raise MissingUpstreamError when an upstream output of `pipeline` is missing."""
        from segad.pipeline_registry import register_pipelines

        names = run_params.get("pipeline_names") or ["__default__"]
        error = missing_upstream(pipeline, catalog, register_pipelines(), "+".join(names))
        if error is not None:
            raise error


class StopHooks:
    """SIGINT and SIGTERM stop a run promptly, in any stage; a second one kills it at once.

    The handlers (`segad.stopping`) are set when the pipeline starts, in the main thread, and the
    previous ones are put back when it ends, so a notebook's own Ctrl-C handling is back after a
    run. A stopped run raises `segad.stopping.RunStopped` (a KeyboardInterrupt) where it is, so
    every ``finally`` runs: temporary files go, locks are released, finished outputs stay.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] | None = None

    @hook_impl
    def before_pipeline_run(self) -> None:
        import threading

        from segad.stopping import StopHandler, install

        if threading.current_thread() is not threading.main_thread():
            return
        self.after_pipeline_run()  # a run stopped by a signal ends without a hook: put those back first
        self._previous = install(StopHandler())

    @hook_impl
    def after_pipeline_run(self) -> None:
        from segad.stopping import restore

        if self._previous is not None:
            restore(self._previous)
            self._previous = None

    @hook_impl
    def on_pipeline_error(self) -> None:
        """As `after_pipeline_run`."""
        self.after_pipeline_run()
