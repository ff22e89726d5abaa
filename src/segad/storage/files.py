"""File-system primitives every writer uses: atomic folder swaps, ownership checks, hashing.

The project never deletes or overwrites a file it did not write. A folder the project writes as a
whole (the demo, a saved detector, a bundle) carries a manifest listing its files; a folder is
only replaced when it is missing, empty, or holds nothing beyond what its own manifest lists.

Every file and folder is written under a temporary name beside its target and renamed into place
(`atomic_path`, `staging_folder`), so a crash leaves the old complete version or none. A temporary
name says which process made it (``.<name>.<host>-<pid>.<32 hex>.tmp``): a process killed with
SIGKILL cannot remove its own, so the next writer into that folder does (`remove_orphans`), and
only those of processes of this machine that no longer run.

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
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TEMPORARY = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[0-9a-f]{32}\.(?P<kind>tmp|old)(\.[A-Za-z0-9]+)?$"
)


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


def temporary_sibling(target: Path, kind: str = "tmp", keep_suffix: bool = False) -> Path:
    """An unused hidden path beside `target`: ``.<name>.<host>-<pid>.<32 hex>.<kind>``.

    `kind` is ``tmp`` (being written) or ``old`` (moved aside); `keep_suffix` appends the target's
    suffix (for writers that pick a format from it, such as xgboost)."""
    suffix = target.suffix if keep_suffix else ""
    return target.with_name(f".{target.name}.{HOST}-{os.getpid()}.{uuid.uuid4().hex}.{kind}{suffix}")


def running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the temporary files and folders (`temporary_sibling`) that dead processes left in `folder`.

    Only names of that pattern made on this machine by a process that no longer runs are removed
    (a live writer's, another machine's and any other file are left alone); a moved-aside ``old``
    folder only once its target exists again, since until then it is the only complete copy.
    Returns the removed paths."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or match["host"] != HOST:
            continue
        if running(int(match["pid"])):  # this process and live writers alike
            continue
        if match["kind"] == "old" and not (Path(folder) / match["target"]).exists():
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        logger.info("removed %d temporary file(s) left by interrupted runs in %s", len(removed), folder)
    return removed


@contextmanager
def atomic_path(target: Path, keep_suffix: bool = False, sweep: bool = True) -> Iterator[Path]:
    """A temporary path beside `target` to write; on success it replaces `target` (``os.replace``).

    On any error the temporary file is removed and `target` is untouched. With `sweep` the
    orphans of killed writers in the folder are removed first (`remove_orphans`). Files are
    created by plain ``open``, so the umask applies.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(target) as temp:
        ...     _ = temp.write_text("whole")
        >>> target.read_text(), [p.name for p in target.parent.iterdir()]
        ('whole', ['a.txt'])
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        remove_orphans(target.parent)
    temp = temporary_sibling(target, keep_suffix=keep_suffix)
    try:
        yield temp
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def staging_folder(target: Path) -> Path:
    """A new empty folder beside `target` to fill and then `replace_folder` into place.

    The orphans of killed writers beside `target` are removed first (`remove_orphans`); the caller
    removes the staging folder when it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target.parent)
    staging = temporary_sibling(target)
    staging.mkdir()
    return staging


def replace_folder(staging: Path, target: Path) -> None:
    """Move the complete folder `staging` to `target` (same file system).

    An existing `target` is first moved aside, then deleted after the new folder is in place, so a
    crash at any point leaves either the old or the new folder complete at `target` (plus at most
    hidden ``old`` sibling, which the next writer removes). Callers check ownership of `target`
    before calling.
    """
    old = None
    if target.exists():
        old = temporary_sibling(target, kind="old")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
