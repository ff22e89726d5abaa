"""The whole `segad` pipeline end to end in a real `kedro run`, uninterrupted and SIGKILLed.

A real `python -m kedro run --pipelines segad` runs in a subprocess on a small demo, in a copy of
this project's configuration (tests.conftest.make_project), so every output lands under the
test's own folder. One run is killed with SIGKILL while it writes anomaly maps, then rerun. The
rerun must reuse the saved detector and the finished maps, compute only the missing ones, read no
damaged file, and give a metrics.csv byte-identical to the uninterrupted run's. The same run is
then killed again just after the feature table is written (BRF, scores, reports still to come),
and its rerun gives the same metrics.csv again.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from segad.storage.files import HOST
from tests.conftest import demo_id, kedro_run
from tests.conftest import interruptible_env as _env
from tests.conftest import interruptible_project as _project
from tests.conftest import kedro_command as _command
from tests.conftest import temporary_files as _temporary_files

pytestmark = pytest.mark.e2e

STATS = re.compile(r"patchcore: (\d+) models fitted .*?, (\d+) reused; (\d+) maps computed.*?, (\d+) from cache")


def _run(project: Path, params: str | None = None) -> str:
    done = kedro_run(project, *_command(project, params)[4:], env=_env(project))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _kill_when(project: Path, ready) -> int:
    """Start the run and SIGKILL it as soon as `ready()` is true; fail if it ended first. Returns its pid."""
    process = subprocess.Popen(
        _command(project), cwd=project, env=_env(project), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if ready():
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
    return process.pid


def _detector_states(project: Path) -> dict[str, bytes]:
    """{model_key: state_dict.pt bytes} of the run's saved detectors (the other dataset's excluded)."""
    store = (
        project / "data" / "03_primary" / "patchcore" / f"dataset={demo_id(project / 'raw_demo')}" / "map_index.parquet"
    )
    keys = set(pd.read_parquet(store)["model_key"])
    return {key: (project / "data" / "06_models" / "patchcore" / key / "state_dict.pt").read_bytes() for key in keys}


def _metrics(project: Path) -> bytes:
    """metrics.csv with the project's dataset id (its demo folder's, so each project's own) as <dataset>."""
    ident = demo_id(project / "raw_demo").encode()
    return (project / "data" / "08_reporting" / "metrics.csv").read_bytes().replace(ident, b"<dataset>")


def _feature_files(project: Path) -> dict[str, bytes]:
    folder = project / "data" / "04_feature" / "features" / f"dataset={demo_id(project / 'raw_demo')}"
    wanted = [p for p in folder.rglob("*.parquet")]
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in wanted}


def test_sigkill_during_map_writing_then_rerun_equals_an_uninterrupted_run(tmp_path):
    reference = _project(tmp_path / "uninterrupted")
    log = _run(reference)
    fitted, reused, computed, cached = map(int, STATS.search(log).groups())
    assert (fitted, reused, cached) == (1, 0, 0)
    total = computed
    metrics = _metrics(reference)
    assert b"patchcore+segad" in metrics

    # the second project first runs another dataset (another demo) in the same data folder, so
    # its caches (backbone, other detectors and tables) exist before the run that is compared
    interrupted = _project(tmp_path / "interrupted")
    other = tmp_path / "other_demo"
    _run(interrupted, f"dataset.root={other},demo.seed=5,segmentation.path={other / 'segmentation.png'}")
    maps = interrupted / "data" / "03_primary" / "patchcore" / "maps"
    before = len(list(maps.rglob("*.npz")))  # the other dataset's maps
    other_folders = {p.parent for p in maps.rglob("*.npz")}
    killed = _kill_when(interrupted, lambda: len(list(maps.rglob("*.npz"))) >= before + 5)
    present = len(list(maps.rglob("*.npz"))) - before
    assert 5 <= present < total
    # the kill lands inside a map's write only now and then; so that the rerun's clean-up is
    # exercised every time, leave the half-written map such a kill leaves when there is none
    if not _temporary_files(interrupted):
        (folder,) = {p.parent for p in maps.rglob("*.npz")} - other_folders  # this run's model's maps
        (folder / f".half.npz.{HOST}-{killed}.{uuid.uuid4().hex}.tmp").write_bytes(b"PK\x03\x04 half a map")
    assert len(_temporary_files(interrupted)) == 1
    log = _run(interrupted)
    fitted, reused, computed, cached = map(int, STATS.search(log).groups())
    # only the missing work is redone: the saved detector and every finished map are reused
    assert (fitted, reused) == (0, 1)
    assert cached >= present - 1 and computed + cached == total  # at most the map being written is lost
    assert "damaged" not in log.lower()
    assert "removed 1 temporary file(s) left by interrupted runs" in log
    assert _metrics(interrupted) == metrics
    assert _temporary_files(interrupted) == []
    assert _feature_files(interrupted) == _feature_files(reference)
    assert _detector_states(interrupted) == _detector_states(reference)

    # killed again once the feature table is written (BRF, scores and reports still to come)
    for written in ("08_reporting", "07_model_output", "06_models/brf", "04_feature"):
        subprocess.run(["rm", "-rf", str(interrupted / "data" / written)], check=True)
    features = interrupted / "data" / "04_feature" / "features"
    _kill_when(interrupted, lambda: any(features.rglob("*.parquet")) if features.is_dir() else False)
    log = _run(interrupted)
    assert tuple(map(int, STATS.search(log).groups())) == (0, 1, 0, total)  # every map from cache
    assert _metrics(interrupted) == metrics
    assert _temporary_files(interrupted) == []
    assert _feature_files(interrupted) == _feature_files(reference)
