"""Score results are history: real `kedro run --pipelines score` runs, one after the other and two
at the same time, each keep all their rows, overlays and index entries (segad.production.history).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from segad.production.writer import write_bundle
from segad.runs import RUN_ID
from tests.conftest import interruptible_env as _env
from tests.conftest import interruptible_project as _project
from tests.conftest import kedro_command as _command
from tests.production.conftest import train_tiny_bundle

pytestmark = pytest.mark.e2e


def _score(project: Path, images: Path, bundle: Path) -> list[str]:
    command = _command(project, f"score.input={images},score.bundle={bundle},score.progress=false")
    command[command.index("segad")] = "score"
    return command


def test_score_twice_and_twice_at_once_keeps_every_row_of_every_run(tiny_demo, tmp_path):
    (tmp_path / "train").mkdir()
    trained = train_tiny_bundle(tiny_demo, tmp_path / "train")
    bundle = write_bundle(tmp_path / "bundle", **{k: v for k, v in trained.items() if not k.startswith("_")})
    project = _project(tmp_path / "project")
    images = tiny_demo / "test"
    n_images = len(list(images.rglob("*.png")))
    output = project / "data" / "07_model_output"

    done = subprocess.run(
        _score(project, images, bundle), cwd=project, env=_env(project), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = {p: p.read_bytes() for p in sorted(output.rglob("*.parquet"))}
    concurrent = [
        subprocess.Popen(
            _score(project, images, bundle),
            cwd=project,
            env=_env(project),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    logs = []
    for process in concurrent:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr.decode()[-3000:]
        logs.append(stdout.decode() + stderr.decode())

    assert {p: p.read_bytes() for p in first} == first  # the first run's table and index entry unchanged
    index = pd.read_parquet(output / "score_runs")  # one file per run, read as one table
    table = pd.read_parquet(output / "inspection")
    assert len(index) == 3 and index["run"].astype(str).map(RUN_ID.match).all()
    assert (index["images"] == n_images).all()
    assert table.groupby(table["run"].astype(str)).size().to_dict() == dict.fromkeys(index["run"].astype(str), n_images)
    # started together, the two runs met: one held the data folder's lock (segad.storage.run_lock)
    # while the other waited for it, then wrote its own run beside it
    assert sum("of waiting" in log for log in logs) == 1, [log[-2000:] for log in logs]
    left = [p for p in (project / "data").rglob(".*") if p.is_file() and not p.name.startswith(".segad.lock")]
    assert not left, "temporary files left"  # the lock file and its holder record stay by design
