"""A real tiny `segad` run as a user starts it, stdout and stderr redirected to a file (issue 28):

- the log has no line over 200 characters, none of the named harmless warnings, and ends with the
  summary block (report, bundle, MLflow run, best method against the best detector, time per stage);
- report.md's first screen holds the bundle, its threshold, the miss and false-reject rates and
  the verdict;
- `mlflow server` from the project's own installation serves that run over its REST API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import PROJECT_ROOT, make_project

pytestmark = pytest.mark.e2e

#: Messages that must not appear in the log (each one named in segad.logs).
NOISE = ("litlogger", "litmodels", "Unexpected keys", "register_new_resolver", "configure_optimizers")


@pytest.fixture(scope="module")
def logged_run(segad_run):
    """The session's tiny `python -m segad --pipelines segad` run (tests/conftest.py `segad_run`):
    tracked, with the project's conf/logging.yml, stdout and stderr to run.log."""
    return segad_run.project, segad_run.log


def test_the_log_file_is_readable_and_ends_with_the_summary(logged_run):
    project, text = logged_run
    lines = text.splitlines()
    too_long = [line[:120] for line in lines if len(line) > 200]
    assert not too_long, too_long
    found = [word for word in NOISE if word in text]
    assert not found, found
    assert "\x1b[" not in text and "\r" not in text  # no colours, no in-place bars in a file
    assert "segad run summary" in text
    summary = text[text.rindex("segad run summary") :]
    op = json.loads((project / "data/08_reporting/operating_point.json").read_text())
    assert "report:     data/08_reporting/report.md" in summary
    assert f"bundle:     data/06_models/segad_bundle/{op['bundle_id']} ({op['method']}, threshold" in summary
    assert "MLflow:     run " in summary and "mlflow.db" in summary
    # the method the bundle ships (the out-of-fold selection) against the one detector
    assert "best:       selected AUROC" in summary and " vs patchcore AUROC" in summary
    stages = summary.split("time/stage: ")[1].splitlines()[0]
    for stage in ("ingestion", "anomaly_maps", "features", "brf", "evaluation", "bundle", "report"):
        assert f"{stage} " in stages, stages


def test_report_opens_with_the_decision(logged_run):
    project, _ = logged_run
    report = (project / "data/08_reporting/report.md").read_text()
    first_screen = "\n".join(report.splitlines()[:25])
    op = json.loads((project / "data/08_reporting/operating_point.json").read_text())
    assert f"`{op['bundle_id']}`" in first_screen
    assert f"reject when score ≥ **{float(op['threshold']):.4g}**" in first_screen
    assert "expected miss rate (bad parts accepted), test images | **" in first_screen
    assert "expected false-reject rate (good parts rejected), test images | **" in first_screen
    assert "95 % interval" in first_screen
    assert "**Verdict:** " in first_screen
    appendix = report.split("## Appendix: configuration of what ran")[1]
    assert "padim" not in appendix.split("anomaly_maps:")[1].split("\nb")[0]  # only the detector that ran


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_mlflow_server_serves_the_run(logged_run):
    pytest.importorskip("flask", reason="the `ui` extra is not installed (pip install -e '.[ui]'; `make test` does)")
    project, _ = logged_run
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable))
    assert mlflow, "mlflow's command is not installed beside this Python"
    port = _free_port()
    store = f"sqlite:///{project / 'data/09_tracking/mlflow.db'}"
    server = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,  # its own process group: the server and its workers stop together
    )
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 240
        while True:
            try:
                experiments = json.load(urllib.request.urlopen(request, timeout=10))["experiments"]
                break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                assert time.monotonic() < deadline, "mlflow server did not answer within 240 s"
                time.sleep(2)
        ids = [
            e["experiment_id"] for e in experiments if re.fullmatch(r"segad/demo-[0-9a-f]{8}/high_shot", e["name"])
        ]  # the dataset id
        assert ids, experiments
        search = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": ids}).encode(),
            headers={"Content-Type": "application/json"},
        )
        (run,) = json.load(urllib.request.urlopen(search, timeout=30))["runs"]
        op = json.loads((project / "data/08_reporting/operating_point.json").read_text())
        assert run["info"]["status"] == "FINISHED"
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["segad.bundle_id"] == op["bundle_id"]
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["bundle.threshold"] == pytest.approx(op["threshold"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def test_a_failing_run_prints_the_cause_first_and_keeps_the_full_traceback(tiny_demo, tmp_path):
    """A node error: a short block with the cause on stderr, the full traceback in a file, and the
    summary saying the run failed."""
    project = make_project(tmp_path / "project", tiny_demo)
    shutil.copy(PROJECT_ROOT / "conf" / "logging.yml", project / "conf" / "logging.yml")
    missing = tmp_path / "no_such_dataset"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segad",
            "--pipelines",
            "ingestion",
            "--params",
            f"dataset.layout=vad,dataset.root={missing}",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "SEGAD_TRACKING": "off"},
        timeout=900,
    )
    assert result.returncode != 0
    assert all(len(line) <= 200 for line in (result.stdout + result.stderr).splitlines())
    error = result.stderr[result.stderr.index("Error: ") :].splitlines()
    assert error[0].startswith("Error: LayoutError: ") and str(missing) in error[0]
    assert error[-1] == f"  full traceback: {project / 'data/09_tracking/last_error.log'}"
    assert len(error) <= 8  # the cause, at most three frames, the file
    full = (project / "data/09_tracking/last_error.log").read_text()
    assert full.startswith("Traceback (most recent call last):") and "LayoutError" in full.splitlines()[-1]
    node_error = result.stdout[result.stdout.index("failed.\nError: ") :].splitlines()[1]
    assert node_error.startswith("Error: LayoutError: ")
    assert "pipelines ingestion: FAILED (LayoutError)" in result.stdout
