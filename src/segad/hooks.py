"""Project hooks: a stage pipeline run alone stops early, in one line, when upstream output is missing."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

# Pipelines that are sums of stages: never named as the producer of a dataset.
COMPOSITE = ("__default__", "segad")


class MissingUpstreamError(RuntimeError):
    """A pipeline's input that another pipeline writes does not exist yet."""

    def __init__(self, pipeline_name: str, missing: list[str], producers: list[str]) -> None:
        self.pipeline_name = pipeline_name
        self.missing = missing
        self.producers = producers
        needed = ", ".join(missing)
        first, rest = producers[0], ", ".join(producers[1:])
        then = f" (then {rest})" if rest else ""
        super().__init__(
            f"pipeline '{pipeline_name}' needs {needed}, which no run has written yet: "
            f"run `kedro run --pipelines {first}`{then} first, "
            f"`kedro run --pipelines segad --to-outputs {','.join(missing)}` to make just these, "
            f"or `kedro run --pipelines segad` for the whole flow"
        )


def _producers(pipelines: dict[str, Pipeline]) -> dict[str, str]:
    """Dataset name -> the smallest non-composite registered pipeline that writes it."""
    stages = sorted(((name, p) for name, p in pipelines.items() if name not in COMPOSITE),
                    key=lambda item: len(item[1].nodes))
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


def missing_upstream(pipeline: Pipeline, catalog: Any, pipelines: dict[str, Pipeline],
                     pipeline_name: str) -> MissingUpstreamError | None:
    """The error for `pipeline`'s free inputs that a registered pipeline writes and that do not exist.

    Inputs no registered pipeline writes (stores the nodes fill through a handle, raw data) are not
    checked; neither are parameters. Producers are listed in the registry's order.
    """
    producer = _producers(pipelines)
    missing = sorted(
        name for name in pipeline.inputs()
        if name != "parameters" and not name.startswith("params:")
        and name in producer and _exists(catalog, name) is False
    )
    if not missing:
        return None
    order = [name for name in pipelines if name not in COMPOSITE]
    producers = sorted({producer[name] for name in missing}, key=order.index)
    return MissingUpstreamError(pipeline_name, missing, producers)


class UpstreamCheckHooks:
    """Check before a run that every upstream output the pipeline reads has been written."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        """Log one ERROR line and raise MissingUpstreamError when an upstream output is missing."""
        from segad.pipeline_registry import register_pipelines

        names = run_params.get("pipeline_names") or ["__default__"]
        error = missing_upstream(pipeline, catalog, register_pipelines(), "+".join(names))
        if error is not None:
            logger.error(str(error))
            raise error
