"""Pipelines of the project.

Every stage lives in `segad.pipelines.<stage>` and exposes `create_pipeline(detectors)`.
The detector list is structural (it decides which namespaced nodes exist), so it is read from
`conf/` here; change it in `conf/<env>/parameters.yml`, not with `--params`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.pipeline import Pipeline, pipeline

# In data-flow order; `segad` is their sum.
STAGES = ("ingestion", "split", "defects", "anomaly_maps", "features", "brf", "evaluation", "bundle")
# Pipelines outside the training run.
EXTRA = ("score",)


def configured_detectors(conf_source: str | Path | None = None, env: str | None = None) -> list[str]:
    """Detector names from the `detectors` parameter of the active configuration environment."""
    conf_source = Path(conf_source or Path.cwd() / "conf")
    env = env or os.environ.get("KEDRO_ENV") or "local"
    loader = OmegaConfigLoader(str(conf_source), base_env="base", default_run_env="local", env=env)
    detectors = loader["parameters"].get("detectors", [])
    if isinstance(detectors, dict):
        detectors = list(detectors)
    return [str(name) for name in detectors]


def _stage(name: str, detectors: list[str]) -> Pipeline | None:
    try:
        module = importlib.import_module(f"segad.pipelines.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"segad.pipelines.{name}":
            return None
        raise
    return _grouped(name, module.create_pipeline(detectors=detectors))


def _grouped(name: str, stage: Pipeline) -> Pipeline:
    """Put a stage's nodes under the namespace `name` (kedro-viz draws it as one group) while
    every dataset and parameter keeps its catalog name. Stages already namespaced as a whole
    (evaluation) are left as they are."""
    if all(node.namespace and node.namespace.split(".")[0] == name for node in stage.nodes):
        return stage
    free = stage.inputs()
    parameters = {d for d in free if d.startswith("params:") or d == "parameters"}
    return pipeline(stage, namespace=name, inputs=free - parameters,
                    outputs=stage.all_outputs(), parameters=parameters)


def register_pipelines() -> dict[str, Pipeline]:
    """Register every stage, `segad` (all training stages in order) and `__default__`."""
    detectors = configured_detectors()
    pipelines: dict[str, Pipeline] = {}
    for name in STAGES + EXTRA:
        stage = _stage(name, detectors)
        if stage is not None:
            pipelines[name] = stage
    pipelines["segad"] = sum((pipelines[name] for name in STAGES if name in pipelines), Pipeline([]))
    pipelines["__default__"] = pipelines["segad"]
    return pipelines
