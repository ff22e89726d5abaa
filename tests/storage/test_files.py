"""Data safety: the demo generator and folder swaps never touch files the project did not write, and\nthe temporary files of a killed writer are removed by the next writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import segad
from segad.ingestion.demo import DemoConfig, demo_files, write_demo
from segad.storage.files import (
    HOST,
    NotOwnedError,
    atomic_path,
    check_owned,
    remove_orphans,
    replace_folder,
    staging_folder,
)

SRC = str(Path(segad.__file__).parents[1])
SMALL = DemoConfig(n_train_good=2, n_train_bad=1, n_test_good=1, n_test_bad=1, n_test_unseen=1, image_size=32)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_demo_refuses_a_folder_of_user_files(tmp_path):
    user = tmp_path / "mine"
    (user / "train" / "good").mkdir(parents=True)
    (user / "train" / "good" / "part.png").write_bytes(b"my image")
    (user / "notes.txt").write_text("do not delete")
    before = _snapshot(user)
    with pytest.raises(NotOwnedError, match=r"mine: not empty and not written by the demo generator"):
        write_demo(user, SMALL)
    assert _snapshot(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging left behind


def test_demo_refuses_its_own_folder_once_a_user_file_is_added(tmp_path):
    root = write_demo(tmp_path / "demo", SMALL)
    (root / "train" / "good" / "mine.png").write_bytes(b"user")
    with pytest.raises(NotOwnedError, match=r"holds 1 files that the demo generator did not write"):
        write_demo(root, DemoConfig(**{**SMALL.__dict__, "seed": 1}))
    assert (root / "train" / "good" / "mine.png").read_bytes() == b"user"


def test_demo_rewrites_its_own_folder_and_writes_into_empty_ones(tmp_path):
    (tmp_path / "empty").mkdir()
    root = write_demo(tmp_path / "empty", SMALL)
    assert sorted(json.loads((root / "manifest.json").read_text())["files"]) == demo_files(SMALL)
    first = _snapshot(root)
    other = DemoConfig(**{**SMALL.__dict__, "seed": 1})
    write_demo(root, other)
    assert set(_snapshot(root)) == set(demo_files(other))
    assert _snapshot(root) != first
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_format_1_manifest_is_still_recognised_as_ours(tmp_path):
    root = write_demo(tmp_path / "demo", SMALL)
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["files"]
    manifest["format_version"] = 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    write_demo(root, DemoConfig(**{**SMALL.__dict__, "seed": 3}))  # owned: rebuilt from its config
    assert json.loads((root / "manifest.json").read_text())["config"]["seed"] == 3


def test_a_foreign_manifest_does_not_make_a_folder_ours(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "manifest.json").write_text(json.dumps({"name": "my project"}))
    with pytest.raises(NotOwnedError):
        write_demo(user, SMALL)
    assert json.loads((user / "manifest.json").read_text()) == {"name": "my project"}


def test_check_owned_refuses_a_file_in_place_of_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotOwnedError, match="is not a folder"):
        check_owned(tmp_path / "f", None, "test")


def test_replace_folder_swaps_a_complete_folder(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_folder(staging, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def _killed_mid_write(target):
    """Run a process that starts writing `target` atomically and is SIGKILLed before the rename."""
    script = (
        "import os, signal, pathlib\n"
        "from segad.storage.files import atomic_path\n"
        f"with atomic_path(pathlib.Path({str(target)!r})) as temp:\n"
        "    temp.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": SRC}, timeout=120)
    assert done.returncode == -signal.SIGKILL
    return [p for p in target.parent.iterdir() if p.name != target.name]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("old complete version")
    orphans = _killed_mid_write(target)
    assert len(orphans) == 1 and orphans[0].name.startswith(".table.parquet.") and orphans[0].suffix == ".tmp"
    assert target.read_text() == "old complete version"  # the kill left the old file whole
    with atomic_path(tmp_path / "other.txt") as temp:  # any later write into the folder
        temp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "table.parquet"]


def test_remove_orphans_keeps_live_writers_other_machines_and_user_files(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hex32 = uuid.uuid4().hex
        kept = [
            f".a.npz.{HOST}-{live.pid}.{hex32}.tmp",  # a writer that still runs
            f".a.npz.{HOST}-{os.getpid()}.{hex32}.tmp",  # this process's own
            f".a.npz.another-host-{_dead_pid()}.{hex32}.tmp",  # another machine's (shared disk)
            f".b.{HOST}-{_dead_pid()}.{hex32}.old",  # moved aside, and its target b is missing
            ".a.npz.tmp",  # not our pattern: a user's
            "notes.tmp",
        ]
        for name in kept:
            (tmp_path / name).write_text("x")
        dead = tmp_path / f".c.{HOST}-{_dead_pid()}.{hex32}.tmp"
        dead.mkdir()  # a staging folder of a killed writer
        (dead / "state_dict.pt").write_text("x")
        assert remove_orphans(tmp_path) == [dead]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
        (tmp_path / "b").mkdir()  # once the target exists again, the moved-aside copy goes
        assert [p.name for p in remove_orphans(tmp_path)] == [kept[3]]
    finally:
        live.kill()
        live.wait()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_atomic_path_removes_its_file_on_error_and_keeps_the_target(tmp_path):
    target = tmp_path / "model.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, keep_suffix=True) as temp:
        assert temp.suffix == ".json" and temp.parent == tmp_path
        temp.write_text("half")
        raise RuntimeError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"] and target.read_text() == "old"


def test_staging_folder_is_a_new_hidden_sibling(tmp_path):
    staging = staging_folder(tmp_path / "out" / "detector")
    assert staging.is_dir() and not any(staging.iterdir())
    assert staging.parent == tmp_path / "out" and staging.name.startswith(".detector.")
