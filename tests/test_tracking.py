"""Experiment tracking (segad.tracking_hooks): a tiny real `kedro run --pipelines segad` is one
MLflow run in the project's own SQLite store, with the parameters, the mean metrics of metrics.csv,
the bundle it wrote, and the report, the metrics file and the plots; with SEGAD_TRACKING=off nothing
is written; a run left RUNNING by a killed process is marked KILLED by the next run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from segad.evaluation.metrics import METRIC_COLUMNS
from segad.evaluation.tracking import flat_params, run_metrics, tracking_name
from segad.tracking_hooks import DEFAULTS, SWITCH, bundle_record, close_stale_runs, tracking_enabled, tracking_uri
from tests.conftest import demo_id, run_project


def _client(project):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(DEFAULTS["tracking_uri"], project))


@pytest.fixture(scope="module")
def tracked(segad_run, tmp_path_factory):
    """A copy of the session's tracked tiny `segad` run (tests/conftest.py `segad_run`): a test
    here reruns a stage in it."""
    return segad_run.copy(tmp_path_factory.mktemp("tracked") / "project")


@pytest.mark.e2e
def test_a_segad_run_is_one_mlflow_run_with_params_metrics_and_artifacts(tracked, tiny_demo):
    client = _client(tracked)
    experiment = client.get_experiment_by_name(f"segad/{demo_id(tiny_demo)}/high_shot")  # the dataset id
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["dataset.layout"] == "demo"
    assert params["benchmark"] == "high_shot"
    assert params["seeds"] == "[0]"
    assert params["detectors"] == '["patchcore"]'
    assert params["image_size"] == "32"
    assert params["classifier.enabled"] == "false"  # the tiny test projects turn it off (make_project)
    assert any(key.startswith("segmentation.") for key in params)
    assert run.data.tags["kedro.pipelines"] == "segad"
    assert run.info.run_name == run.data.tags["kedro.session_id"] != "segad"

    table = pd.read_csv(tracked / "data" / "08_reporting" / "metrics.csv")
    mean = table[(table["split_seed"].astype(str) == "mean") & (table["subset"] == "all")]
    expected = mean.set_index("method")["auroc"].to_dict()
    assert {"patchcore", "patchcore+segad"} <= set(expected)
    for method, auroc in expected.items():
        assert run.data.metrics[f"{tracking_name(method)}.auroc"] == pytest.approx(auroc, rel=1e-12)
    methods = {k: v for k, v in run.data.metrics.items() if not k.startswith("bundle.")}
    assert methods == pytest.approx(run_metrics(table, METRIC_COLUMNS), rel=1e-12)

    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.csv", "report.md", "plots"} <= top
    plots = {
        a.path
        for folder in client.list_artifacts(run.info.run_id, "plots")
        for a in client.list_artifacts(run.info.run_id, folder.path)
    }
    assert "plots/roc/roc.png" in plots and any(p.endswith(".png") for p in plots - {"plots/roc/roc.png"})
    assert (tracked / "data/09_tracking/mlflow.db").is_file()
    assert not (tracked / "mlruns").exists()  # the files sit beside the database
    assert any((tracked / "data/09_tracking/artifacts").rglob("report.md"))
    op = json.loads((tracked / "data/08_reporting/operating_point.json").read_text())
    assert run.data.tags["segad.bundle_id"] == op["bundle_id"]
    assert run.data.metrics["bundle.threshold"] == pytest.approx(op["threshold"])


@pytest.mark.slow
def test_a_run_left_running_by_a_killed_process_is_marked_killed(tmp_path):
    import socket

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri("sqlite:///store/mlflow.db", tmp_path))
    assert (tmp_path / "store/mlflow.db").is_file()
    experiment = client.create_experiment("segad/demo/high_shot")
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs
    killed = client.create_run(experiment, tags={"segad.host": host, "segad.pid": str(dead.pid)})
    alive = client.create_run(experiment, tags={"segad.host": host, "segad.pid": str(os.getpid())})
    elsewhere = client.create_run(experiment, tags={"segad.host": host + "-other", "segad.pid": str(dead.pid)})
    assert close_stale_runs(client, experiment) == [killed.info.run_id]
    status = {r.info.run_id: r.info.status for r in client.search_runs([experiment])}
    assert status[killed.info.run_id] == "KILLED"
    assert status[alive.info.run_id] == status[elsewhere.info.run_id] == "RUNNING"


def test_the_bundle_record_names_the_bundle_and_its_threshold():
    tags, metrics = bundle_record(
        {
            "bundle_id": "20261206T023807Z-44e419db",
            "method": "a+segad",
            "split_seed": 0,
            "threshold": 1.5,
            "target_miss_rate": 0.02,
            "expected_pass_rate": 0.9,
            "expected_miss_rate": 0.01,
        }
    )
    assert tags == {
        "segad.bundle_id": "20261206T023807Z-44e419db",
        "segad.bundle_method": "a+segad",
        "segad.bundle_split_seed": "0",
    }
    assert metrics == {
        "bundle.threshold": 1.5,
        "bundle.target_miss_rate": 0.02,
        "bundle.expected_pass_rate": 0.9,
        "bundle.expected_miss_rate": 0.01,
    }
    assert bundle_record({"built": False, "reason": "bundle.build is false"}) == ({}, {})


@pytest.mark.e2e
def test_tracking_off_writes_no_store(tracked, tmp_path, monkeypatch):
    """The evaluation stage rerun with SEGAD_TRACKING=off and another store: nothing is created."""
    store = tmp_path / "store"
    (tracked / "conf" / "local" / "mlflow.yml").write_text(f"tracking_uri: {store}\n")
    monkeypatch.chdir(tracked)
    monkeypatch.setenv(SWITCH, "off")
    try:
        run_project(tracked, ["evaluation"], SequentialRunner())
    finally:
        (tracked / "conf" / "local" / "mlflow.yml").unlink()
    assert not store.exists()
    assert not (tracked / "mlruns").exists()


def test_the_switch_overrides_the_configuration(monkeypatch):
    monkeypatch.setenv(SWITCH, "off")
    assert tracking_enabled(True) is False
    monkeypatch.setenv(SWITCH, "on")
    assert tracking_enabled(False) is True
    monkeypatch.delenv(SWITCH)
    assert tracking_enabled(False) is False
    monkeypatch.setenv(SWITCH, "maybe")
    with pytest.raises(ValueError, match="SEGAD_TRACKING"):
        tracking_enabled(True)


def test_params_are_flat_and_metrics_come_from_the_mean_rows():
    assert flat_params({"a": {"b": {"c": 1}}, "e": {}, "s": "x" * 7000})["a.b.c"] == "1"
    assert flat_params({"e": {}})["e"] == "{}"
    assert len(flat_params({"s": "x" * 7000})["s"]) == 6000
    table = pd.DataFrame(
        {
            "method": ["m+segad"] * 4,
            "category": ["a", "b", "mean", "mean"],
            "split_seed": ["mean", "mean", "mean", "0"],
            "subset": ["all", "all", "unseen", "all"],
            "auroc": [0.1, 0.2, 0.3, 0.4],
            "pg2": [float("nan")] * 4,
        }
    )
    assert run_metrics(table, ["auroc", "pg2"]) == {"m_segad.unseen.auroc": 0.3}
