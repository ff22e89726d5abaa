"""Experiment tracking: each tracked `kedro run` is one MLflow run (docs/operations.md).

`TrackingHooks` reads ``conf/<env>/mlflow.yml`` and, when tracking is on and the run's pipelines
are among ``pipelines``, starts an MLflow run before the first node: its parameters are the
session's whole parameter tree flattened (``dataset.layout``, ``seeds``, ``classifier.enabled``,
...), its tags the Kedro session. After the last node it logs the mean row of each method of the
``metrics`` table as metrics (``segad.evaluation.tracking.run_metrics``) and the files of the
datasets listed under ``artifacts`` that the run wrote (metrics.csv, report.md, plot folders).
The bundle the run wrote is logged with it (tags ``segad.bundle_id``, ``segad.bundle_method``,
metric ``bundle.threshold`` and its expected rates). A failed run is marked FAILED; a run left
RUNNING by a killed process (SIGKILL, power loss) is marked KILLED when the next tracked run
starts (`close_stale_runs`).

Everything happens in the driver process (the Dask runner's workers never talk to MLflow), with
the MLflow client pointed at ``tracking_uri`` explicitly: a SQLite file under the project by
default (MLflow's supported local store; ``make ui`` opens it), no server, MLflow's own
telemetry off. ``SEGAD_TRACKING=off`` (or ``on``) overrides
``enabled`` for one command.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path, PurePath
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from segad.evaluation.metrics import METRIC_COLUMNS
from segad.evaluation.tracking import flat_params, run_metrics, tracking_name
from segad.storage.files import running
from segad.storage.identity import dataset_id_of
from segad.versions import jsonable

log = logging.getLogger(__name__)

#: Environment variable that switches tracking off or on for one command, whatever mlflow.yml says.
SWITCH = "SEGAD_TRACKING"
_OFF, _ON = {"0", "off", "false", "no"}, {"1", "on", "true", "yes"}
#: mlflow.yml values when the file or a key is absent.
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "tracking_uri": "sqlite:///data/09_tracking/mlflow.db",
    "experiment": "segad/{dataset}/{benchmark}",
    "pipelines": ["__default__", "segad", "evaluation", "report"],
    "artifacts": {},
}
#: Parameters MLflow logs in one request at most.
_BATCH = 100


def tracking_enabled(configured: bool) -> bool:
    """`configured` (mlflow.yml ``enabled``) unless ``SEGAD_TRACKING`` says off or on."""
    switch = os.environ.get(SWITCH, "").strip().lower()
    if switch and switch not in _OFF | _ON:
        raise ValueError(f"{SWITCH}={switch!r}: use one of {sorted(_OFF | _ON)}")
    return switch in _ON if switch else bool(configured)


def tracking_uri(value: str, project_path: Path) -> str:
    """An MLflow URI: ``sqlite:///<relative path>`` made absolute under the project (its folder
    created), another URI (``file:``, ``sqlite:////abs``, ``http:``, ...) as is, a folder (relative
    to the project) as a ``file:`` URI of a local file store."""
    prefix = "sqlite:///"
    if value.startswith(prefix) and not value.startswith(prefix + "/"):
        database = project_path / value[len(prefix) :]
        database.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(database.resolve())
    if "://" in value or value.startswith(("file:", "sqlite:", "databricks")):
        return value
    folder = Path(value) if PurePath(value).is_absolute() else project_path / value
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve().as_uri()


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a SQLite store keeps its files: ``artifacts/`` beside the database
    (MLflow's default would be ``./mlruns`` in the working folder); None (MLflow's choice) otherwise."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix) :]).parent / "artifacts").resolve().as_uri()


def close_stale_runs(client: Any, experiment_id: str, pid_alive: Any = None) -> list[str]:
    """Mark KILLED the RUNNING runs of `experiment_id` whose process is gone; returns their ids.

    A run records its host and process id (tags ``segad.host``, ``segad.pid``); one of this host
    whose process no longer runs was killed before it could close its run. Runs of other hosts
    or without those tags are left alone.
    """
    import socket

    from mlflow.entities import RunStatus

    alive = pid_alive or running  # segad.storage.files: this process counts as running
    host = socket.gethostname()
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get("segad.host") != host or not str(tags.get("segad.pid", "")).isdigit():
            continue
        if not alive(int(tags["segad.pid"])):
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            closed.append(run.info.run_id)
    if closed:
        log.warning("MLflow runs %s were left RUNNING by a killed process: marked KILLED", ", ".join(closed))
    return closed


def bundle_record(operating_point: dict) -> tuple[dict[str, str], dict[str, float]]:
    """(tags, metrics) of the bundle a run wrote, from its ``operating_point`` report."""
    if not operating_point or operating_point.get("built") is False or "threshold" not in operating_point:
        return {}, {}
    tags = {
        "segad.bundle_id": str(operating_point.get("bundle_id", "")),
        "segad.bundle_method": str(operating_point.get("method", "")),
        "segad.bundle_split_seed": str(operating_point.get("split_seed", "")),
    }
    metrics = {
        f"bundle.{key}": float(operating_point[key])
        for key in ("threshold", "target_miss_rate", "expected_pass_rate", "expected_miss_rate")
        if operating_point.get(key) is not None
    }
    return {k: v for k, v in tags.items() if v}, metrics


def _local_path(dataset: Any) -> Path | None:
    """The local file or folder a catalog dataset writes (filepath datasets, folder datasets)."""
    for attribute in ("_filepath", "_path", "path"):
        value = getattr(dataset, attribute, None)
        if value is not None:
            return Path(str(value))
    return None


class TrackingHooks:
    """One MLflow run per tracked `kedro run` (see the module docstring)."""

    def __init__(self) -> None:
        self._config: dict[str, Any] = dict(DEFAULTS)
        self._project_path = Path.cwd()
        self._client: Any = None
        self._run_id: str | None = None
        #: The last run started in this process: {"run_id", "experiment", "uri"} (the run summary reads it).
        self.last_run: dict[str, str] | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Read mlflow.yml of the session's environment."""
        try:
            conf = context.config_loader["mlflow"]
        except (MissingConfigException, KeyError):
            conf = {}
        unknown = sorted(set(conf) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"mlflow.yml: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
        self._config = {**DEFAULTS, **conf}
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        """Start the MLflow run and log the parameters and the session's tags."""
        self._run_id = None
        names = run_params.get("pipeline_names") or ["__default__"]
        if not tracking_enabled(self._config["enabled"]):
            return
        if not set(names) & set(self._config["pipelines"]):
            return
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time
        import socket

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        parameters = jsonable(catalog.load("parameters")) if catalog.exists("parameters") else {}
        dataset = parameters.get("dataset") or {}
        ident = dataset_id_of(dataset) if "layout" in dataset else "unknown"
        experiment = str(self._config["experiment"]).format(
            dataset=ident, benchmark=parameters.get("benchmark", "unknown")
        )
        uri = tracking_uri(str(self._config["tracking_uri"]), self._project_path)
        if uri.startswith("file:"):  # a folder store: MLflow 3 asks for this opt-in (maintenance mode)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found is not None
            else client.create_experiment(experiment, artifact_location=artifact_location(uri))
        )
        close_stale_runs(client, experiment_id)
        tags = {
            "segad.host": socket.gethostname(),
            "segad.pid": os.getpid(),
            "kedro.session_id": run_params.get("run_id"),
            "kedro.env": run_params.get("env"),
            "kedro.pipelines": "+".join(names),
            "kedro.runner": str(run_params.get("runner") or "").split(" object at")[0].lstrip("<"),
            "kedro.extra_params": run_params.get("runtime_params") or run_params.get("extra_params"),
            "segad.detectors": "+".join(parameters.get("detectors") or []),
        }
        run = client.create_run(
            experiment_id,
            run_name=str(run_params.get("run_id") or "+".join(names)),
            tags={k: str(v) for k, v in tags.items() if v},
        )
        params = [Param(key, value) for key, value in flat_params(parameters).items()]
        for start in range(0, len(params), _BATCH):
            client.log_batch(run.info.run_id, params=params[start : start + _BATCH])
        self._client, self._run_id = client, run.info.run_id
        self.last_run = {"run_id": run.info.run_id, "experiment": experiment, "uri": uri}
        log.info("MLflow run %s (experiment %r) in %s", run.info.run_id, experiment, uri)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        """Log the metrics and the artifacts this run wrote, then close the MLflow run."""
        if self._run_id is None:
            return
        from mlflow.entities import Metric

        client, run_id = self._client, self._run_id
        self._run_id = None
        try:
            written = pipeline.all_outputs()
            if "operating_point" in written and catalog.exists("operating_point"):
                tags, values = bundle_record(catalog.load("operating_point"))
                for key, value in tags.items():
                    client.set_tag(run_id, key, value)
                for key, number in values.items():
                    client.log_metric(run_id, key, number)
            if "metrics" in written:
                values = run_metrics(catalog.load("metrics"), METRIC_COLUMNS)
                now = int(time.time() * 1000)  # MLflow timestamps are milliseconds
                metrics = [Metric(key, value, now, 0) for key, value in values.items()]
                for start in range(0, len(metrics), _BATCH):
                    client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
            for name, folder in (self._config["artifacts"] or {}).items():
                path = _local_path(catalog.get(name)) if name in written else None
                if path is None or not path.exists():
                    continue
                target = tracking_name(str(folder)) if folder else None
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), target)
                else:
                    client.log_artifact(run_id, str(path), target)
        except Exception:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")

    @hook_impl
    def on_pipeline_error(self) -> None:
        """Mark the MLflow run FAILED."""
        if self._run_id is not None:
            self._client.set_terminated(self._run_id, "FAILED")
            self._run_id = None
