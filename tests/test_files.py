"""Data safety: the demo generator and folder swaps never touch files the project did not write."""

from __future__ import annotations

import json

import pytest

from segad.files import NotOwnedError, check_owned, replace_folder
from segad.ingestion.demo import DemoConfig, demo_files, write_demo

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
