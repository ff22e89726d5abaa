"""Nothing unverified reaches production, and a run stops promptly: real `kedro run` processes.

Real `python -m kedro run` subprocesses on a tiny demo (tests/conftest.py: a copy of the session's
finished `segad_run`, or a fresh tiny project): a truncated cached detector is refitted and the new
bundle scores images; a run whose evaluation fails leaves LATEST where it was; a run sent SIGTERM
during a detector fit exits within 10 s, leaves no temporary file, and its rerun completes.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from segad.production.bundle import LATEST, list_bundles
from tests.conftest import TINY_DEMO, plain_logging
from tests.conftest import interruptible_env as _env
from tests.conftest import interruptible_project as _project
from tests.conftest import kedro_command as _command
from tests.conftest import temporary_files as _temporary_files

pytestmark = pytest.mark.e2e


def _tiny(root: Path) -> Path:
    """The interruption tests' project with the tiny demo at 32 px (a run takes seconds)."""
    project = _project(root)
    overrides_file = project / "conf" / "local" / "parameters_test.yml"
    overrides = yaml.safe_load(overrides_file.read_text())
    overrides["demo"] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY_DEMO).items()}
    overrides["image_size"] = 32
    overrides["anomaly_maps"]["patchcore"]["batch_size"] = 16
    overrides_file.write_text(yaml.safe_dump(overrides))
    return project


def _kedro(project: Path, pipeline: str = "segad", params: str | None = None) -> subprocess.CompletedProcess:
    command = _command(project, params)
    command[command.index("segad")] = pipeline
    return subprocess.run(command, cwd=project, env=_env(project), capture_output=True, text=True, timeout=600)


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _bundles(project: Path) -> Path:
    return project / "data" / "06_models" / "segad_bundle"


def _finished(segad_run, root: Path) -> Path:
    """A copy of the session's finished tiny `segad` run (tests/conftest.py) with plain log lines."""
    project = segad_run.copy(root)
    plain_logging(project)
    return project


def test_a_truncated_cached_detector_is_refitted_and_the_new_bundle_scores_images(segad_run, tiny_demo, tmp_path):
    project = _finished(segad_run, tmp_path / "project")
    models = project / "data" / "06_models" / "patchcore"
    (state,) = [p for p in models.glob("*/state_dict.pt") if not p.parent.name.startswith("_")]
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # truncated

    log = _ok(_kedro(project))
    # the plain console wraps lines over 200 characters (segad.logs.PlainFormatter), on spaces
    assert f"refitting damaged detector: {state}: checksum mismatch" in " ".join(log.split())
    assert "patchcore: 1 models fitted" in log  # every map came from the cache, the model did not
    latest = (_bundles(project) / LATEST).read_text().strip()
    assert len(list_bundles(_bundles(project))) == 2

    scored = _ok(_kedro(project, "score", f"score.input={tiny_demo / 'test' / 'bad'}"))
    assert "checksum mismatch" not in scored
    table = pd.read_parquet(project / "data" / "07_model_output" / "inspection")  # this score run's partition
    assert len(table) == TINY_DEMO.n_test_bad and (table["status"] == "ok").all()
    assert set(table["bundle_id"]) == {latest}


def test_a_run_whose_evaluation_fails_leaves_latest_unchanged(segad_run, tmp_path):
    project = _finished(segad_run, tmp_path / "project")
    parent = _bundles(project)
    before = (parent / LATEST).read_bytes(), list_bundles(parent)
    # the metrics table's path is a folder now: the evaluation fails after maps, features and BRF
    # (report.md is written by the report stage, after the bundle, so it cannot be the one to fail)
    metrics = project / "data" / "08_reporting" / "metrics.csv"
    metrics.unlink()
    (metrics / "in_the_way").mkdir(parents=True)

    done = _kedro(project)
    assert done.returncode != 0
    assert "compute_metrics" in done.stdout + done.stderr
    assert ((parent / LATEST).read_bytes(), list_bundles(parent)) == before  # no new bundle, LATEST kept
    assert _temporary_files(project) == []


def test_sigterm_during_a_detector_fit_stops_the_run_within_10_s_and_the_rerun_completes(tmp_path):
    project = _tiny(tmp_path / "project")
    process = subprocess.Popen(
        _command(project), cwd=project, env=_env(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )  # the plain console log is on stdout (segad.logs.configure_console), errors on stderr: one stream
    lines = []
    try:
        assert process.stdout is not None
        # segad logs "fit started" from inside `Trainer.fit` (segad.detection.fit), after Lightning
        # has set its own SIGTERM handler (which used to swallow the signal): the fit is under way
        for line in process.stdout:
            lines.append(line)
            if "patchcore: fit started on" in line:
                break
        assert process.poll() is None, "".join(lines[-30:])
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=60)[0]
        waited = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert waited < 10, f"the run took {waited:.1f} s to stop"
    assert process.returncode != 0
    assert "SIGTERM received: the run stops" in rest, rest[-3000:]
    assert "coreset:" not in rest  # stopped inside the fit, before PatchCore's coreset
    assert _temporary_files(project) == []
    assert not (_bundles(project) / LATEST).exists()

    log = _ok(_kedro(project))
    assert "patchcore: 1 models fitted" in log
    assert (_bundles(project) / LATEST).is_file()
