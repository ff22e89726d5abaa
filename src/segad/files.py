"""File-system primitives every writer uses: atomic folder swaps, ownership checks, hashing.

The project never deletes or overwrites a file it did not write. A folder the project writes as a
whole (the demo, a saved detector, a bundle) carries a manifest listing its files; a folder is
only replaced when it is missing, empty, or holds nothing beyond what its own manifest lists.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> staging = root / ".staging"; staging.mkdir(); _ = (staging / "a.txt").write_text("a")
    >>> replace_folder(staging, root / "out")
    >>> sorted(p.name for p in (root / "out").iterdir())
    ['a.txt']
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path


class NotOwnedError(RuntimeError):
    """A folder the project was asked to replace holds files the project did not write."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes, read in `chunk`-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def relative_files(folder: Path) -> list[str]:
    """Every file (and symlink) under `folder`, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def check_owned(folder: Path, owned: Iterable[str] | None, what: str) -> None:
    """Raise NotOwnedError unless `folder` is missing, empty, or holds only the `owned` files.

    `owned` is the file list of the folder's own manifest (relative POSIX paths), or None when
    the folder has no manifest of ours. `what` names the writer in the message.
    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise NotOwnedError(f"{folder}: exists and is not a folder; {what} writes only into a new or empty folder")
    present = relative_files(folder)
    if not present and not any(folder.iterdir()):
        return
    if owned is None:
        raise NotOwnedError(
            f"{folder}: not empty and not written by {what} (no manifest of ours; {len(present)} files, "
            f"e.g. {present[:3]}). Nothing was changed. Point it at a new or empty folder, "
            "or set the dataset layout if this folder is your data (dataset.layout=vad|visa|sensum|mvtec|elpv)."
        )
    foreign = sorted(set(present) - set(owned))
    if foreign:
        raise NotOwnedError(
            f"{folder}: holds {len(foreign)} files that {what} did not write (e.g. {foreign[:3]}). "
            "Nothing was changed. Move them out or use another folder."
        )


def replace_folder(staging: Path, target: Path) -> None:
    """Move the complete folder `staging` to `target` (same file system).

    An existing `target` is first moved aside, then deleted after the new folder is in place, so a
    crash at any point leaves either the old or the new folder complete at `target` (plus at most
    one hidden `.NAME.old-*` sibling). Callers check ownership of `target` before calling.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
