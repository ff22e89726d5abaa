"""A folder of user files survives every pipeline pointed at it, the demo included.

Real `python -m kedro run` subprocesses in a copy of the project's configuration
(tests.conftest.make_project): the user's folder is a VAD-layout folder of their own images (no
manifest of ours), read by the whole `segad` run (every stage, the bundle's included) and the
`score` pipeline, and given to the demo's `ingestion` by mistake (the data-loss bug: layout left at
`demo`).
"""

from __future__ import annotations

import shutil

import pytest

from segad.ingestion.demo import write_demo
from tests.conftest import TINY_DEMO, kedro_run, make_project, plain_logging, project_env

pytestmark = pytest.mark.e2e


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _kedro(project, pipeline, params):
    return kedro_run(project, "--pipelines", pipeline, "--params", params, env=project_env(**plain_logging(project)))


def test_user_folder_is_untouched_by_every_pipeline(tmp_path):
    user = tmp_path / "my_parts"
    shutil.copytree(write_demo(tmp_path / "made", TINY_DEMO), user)
    (user / "manifest.json").unlink()  # the user's own folder: nothing of ours in it
    (user / "notes.txt").write_text("line 3 camera moved on 2026-11-30")
    before = _snapshot(user)
    project = make_project(tmp_path / "project", tmp_path / "project" / "raw_demo")
    on_user = f"dataset.layout=vad,dataset.root={user},segmentation.path={user / 'segmentation.png'}"

    done = _kedro(project, "segad", on_user)  # every stage, the bundle included
    assert done.returncode == 0, done.stderr[-3000:]
    done = _kedro(project, "score", f"{on_user},score.input={user}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((project / "data" / "07_model_output" / "inspection").glob("run=*/part-0.parquet"))

    done = _kedro(project, "ingestion", f"dataset.layout=demo,dataset.root={user}")  # layout forgotten
    assert done.returncode != 0
    assert f"{user}: not empty and not written by the demo generator" in done.stdout + done.stderr

    assert _snapshot(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made", "my_parts", "project"]
