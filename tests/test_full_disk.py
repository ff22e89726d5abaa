"""A real `kedro run` whose data folder is a full file system: the earlier outputs survive.

The tiny project's `data/` is a real 8 MB tmpfs (root only; skipped with the reason where
mounting is not permitted, as in unprivileged CI containers). `ingestion` and `split` run once;
then the file system is filled and `ingestion` runs again with another `on_bad_image` setting.
The run fails, the error names the file and the cause, and every previously complete output is
byte for byte and modification time unchanged; once space is freed the same run completes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import interruptible_env as _env
from tests.conftest import interruptible_project as _project
from tests.conftest import kedro_command as _command
from tests.test_atomic_datasets import fill

pytestmark = pytest.mark.e2e


def _kedro(project, pipelines: str, params: str | None = None) -> subprocess.CompletedProcess:
    command = _command(project, params)
    command[command.index("segad")] = pipelines
    return subprocess.run(command, cwd=project, env=_env(project), capture_output=True, text=True, timeout=600)


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_full_data_folder_keeps_every_complete_output_and_names_the_file():
    # A short root, whatever pytest's basetemp (xdist adds popen-gw<N>/): the error line that names the
    # file is cut at segad.logs.MAX_LINE (200) characters, and an absolute path under tmp_path came
    # within 5 characters of it serially (10 over under xdist), which cut off the cause.
    root = Path(tempfile.mkdtemp(prefix="segad-full-disk-"))
    project = _project(root / "project")
    data = project / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}): root is needed")
    try:
        done = _kedro(project, "ingestion,split")
        assert done.returncode == 0, done.stderr[-3000:]
        before = _snapshot(data)
        # the tables are under their dataset's folder (02_intermediate/dataset=<id>/, docs/reliability.md)
        (index,) = [name for name in before if name.endswith("/image_index.parquet")]
        assert index.startswith("02_intermediate/dataset=")
        assert index.replace("image_index", "splits") in before

        filler = fill(data)
        done = _kedro(project, "ingestion", "dataset.on_bad_image=skip")
        output = done.stdout + done.stderr
        assert done.returncode != 0
        # the plain console wraps lines over 200 characters (segad.logs.PlainFormatter), on spaces
        assert f"{index}: not written ([Errno 28] No space left on device)" in " ".join(output.split()), output[-4000:]
        filler.unlink()
        assert _snapshot(data) == before  # every previous output unchanged, no temporary file left

        done = _kedro(project, "ingestion", "dataset.on_bad_image=skip")
        assert done.returncode == 0, done.stderr[-3000:]
        assert (data / index).read_bytes() == before[index][1]
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
        shutil.rmtree(root, ignore_errors=True)
