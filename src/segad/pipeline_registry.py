"""Pipelines of the project.

Every stage lives in `segad.pipelines.<stage>` and exposes `create_pipeline(detectors)`.

The detector list is structural (it decides which namespaced nodes exist). In a Kedro session it
is the session's own `detectors` parameter: `segad.hooks.RunConfigHooks.after_context_created`
reads it from the session's config loader (so `kedro run --env X` and `--params` reach it) and
hands it to `use_detectors` before Kedro first loads the pipelines (`KedroSession.run` loads them
after `load_context()`, which calls that hook). Outside a session (`kedro registry list`,
`from kedro.framework.project import pipelines` in a script) it is read from conf/base and
conf/$KEDRO_ENV (`configured_detectors`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import yaml
from kedro.pipeline import Pipeline, pipeline

# In data-flow order (a topological order: every stage reads only what earlier stages write, so
# running them one by one in this order works from an empty data folder); `segad` is their sum.
STAGES = (
    "ingestion",
    "split",
    "segmentation",
    "defects",
    "anomaly_maps",
    "classifier",
    "features",
    "brf",
    "evaluation",
    "bundle",
    "report",
)
# Pipelines outside the training run.
EXTRA = ("score",)


#: The detector list of the current Kedro session (set by `use_detectors`), and the list the
#: registered pipelines were last built with.
_session_detectors: list[str] | None = None
_built_with: list[str] | None = None


def use_detectors(detectors: list[str] | None) -> None:
    """Build the pipelines with `detectors` (the session's `detectors` parameter) from now on;
    None: with those of conf/ again (`configured_detectors`), e.g. once a session's run is over.

    When Kedro's lazily loaded pipelines were already built with another list (an earlier
    session of this process, or something that read them before this session's context was
    created), they are reset so that the next access builds them again.
    """
    global _session_detectors
    if detectors is None:
        _session_detectors = None
        return
    _session_detectors = [str(name) for name in detectors]
    if _built_with is not None and _built_with != _session_detectors:
        from kedro.framework.project import pipelines

        pipelines.configure(__name__)


def configured_detectors(conf_source: str | Path | None = None, env: str | None = None) -> list[str]:
    """Detector names from the `detectors` parameter of conf/base, overridden by the environment.

    The fallback outside a Kedro session: the environment is `KEDRO_ENV` (default `local`);
    `--params` cannot reach it. Read as plain YAML on purpose: building another
    OmegaConfigLoader here would re-register OmegaConf's process-wide `globals` resolver and
    hide the session's environment-specific globals (e.g. conf/elpv/globals.yml).
    """
    conf_source = Path(conf_source or Path.cwd() / "conf")
    env = env or os.environ.get("KEDRO_ENV") or "local"
    detectors: list[str] = []
    for folder in (conf_source / "base", conf_source / env):
        for path in sorted(folder.glob("**/parameters*.yml")) + sorted(folder.glob("**/parameters*.yaml")):
            values = yaml.safe_load(path.read_text()) or {}
            if isinstance(values, dict) and "detectors" in values:
                found = values["detectors"]
                detectors = list(found) if isinstance(found, (list, dict)) else [found]
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
    return pipeline(stage, namespace=name, inputs=free - parameters, outputs=stage.all_outputs(), parameters=parameters)


def register_pipelines() -> dict[str, Pipeline]:
    """Register every stage, `segad` (all training stages in order) and `__default__`.

    The detectors are the session's (`use_detectors`), else those of conf/ (`configured_detectors`).
    """
    global _built_with
    detectors = list(_session_detectors) if _session_detectors is not None else configured_detectors()
    _built_with = detectors
    pipelines: dict[str, Pipeline] = {}
    for name in STAGES + EXTRA:
        stage = _stage(name, detectors)
        if stage is not None:
            pipelines[name] = stage
    pipelines["segad"] = sum((pipelines[name] for name in STAGES if name in pipelines), Pipeline([]))
    pipelines["__default__"] = pipelines["segad"]
    return pipelines
