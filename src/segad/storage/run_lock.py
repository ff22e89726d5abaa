"""One writer per data folder: an exclusive lock on the data root, with a record of its holder.

A run that writes under the data root holds `DataFolderLock` for its whole length. The lock is
an OS file lock (``flock`` through the `filelock` library) on ``<data root>/.segad.lock``: the
operating system releases it when the holding process ends, however it ends (SIGKILL included),
so a lock is never left behind. Beside it, ``.segad.lock.json`` records the holder (pid, host,
command, start time) so that a run that finds the folder busy can say who holds it; the holder
removes the record before it releases the lock. A record left by a process that was killed is
recognised: either the lock is free (whoever takes it replaces the record, and says so), or the
lock is held by a newer run that has not written its record yet, whose message then says that
the recorded process no longer runs instead of naming it as the holder.

Two ways to meet a busy folder (``lock.mode`` in conf/base/parameters.yml): ``wait`` until the
holder ends (at most ``timeout_s`` seconds, None: no limit), logging the holder when the wait
starts and every `REPORT_EVERY_S` seconds; or ``fail`` at once with `DataFolderBusy`.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with DataFolderLock(folder, mode="fail", command="example") as lock:
    ...     holder = read_holder(lock.record_path)
    ...     holder.command, holder.alive()
    ...     try:
    ...         DataFolderLock(folder, mode="fail").acquire()
    ...     except DataFolderBusy as busy:
    ...         print(str(busy).split(":")[0])
    ('example', True)
    data folder ... is in use by another run
    >>> read_holder(lock.record_path) is None   # released: the record is gone
    True
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout

from segad.storage.files import HOST, atomic_path, running

log = logging.getLogger(__name__)

#: Lock file and holder record, both directly in the data root.
LOCK_NAME = ".segad.lock"
RECORD_NAME = ".segad.lock.json"
#: While waiting, the holder is logged again after this many seconds.
REPORT_EVERY_S = 60.0
#: How long a run that finds the folder busy waits for the holder's record to appear (a new holder
#: writes it right after taking the lock) before it reports what it knows.
RECORD_GRACE_S = 2.0

LockMode = Literal["wait", "fail"]


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a data folder's lock."""

    pid: int
    host: str
    command: str
    started: str  # ISO 8601, UTC

    @classmethod
    def this_process(cls, command: str | None = None) -> Holder:
        return cls(
            pid=os.getpid(),
            host=HOST,
            command=command if command is not None else " ".join(sys.argv),
            started=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def alive(self) -> bool | None:
        """Whether the process still runs: None when it ran on another machine (cannot tell)."""
        return running(self.pid) if self.host == HOST else None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}, command: {self.command}"


class DataFolderBusy(RuntimeError):
    """Another run holds the data folder's lock (``lock.mode: fail``, or the wait timed out)."""

    def __init__(self, folder: Path, holder: Holder | None, waited_s: float | None = None) -> None:
        self.folder, self.holder = folder, holder
        waited = f" (waited {waited_s:.0f} s, lock.timeout_s)" if waited_s is not None else ""
        super().__init__(
            f"data folder {folder} is in use by another run{waited}: {describe_holder(holder)}. "
            "One run writes into a data folder at a time: wait for it to end (--params lock.mode=wait), "
            "or give this run its own data folder (globals data_root, e.g. another --env)"
        )


def read_holder(record: Path) -> Holder | None:
    """The holder record at `record`, or None when there is none (or it cannot be read)."""
    try:
        data = json.loads(record.read_text())
        return Holder(
            pid=int(data["pid"]), host=str(data["host"]), command=str(data["command"]), started=str(data["started"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def describe_holder(holder: Holder | None) -> str:
    """What a waiting or failing run says about the holder it cannot see past."""
    if holder is None:
        return "its holder has not recorded itself yet"
    if holder.alive() is False:  # the record of a killed run; the live holder has not written its own yet
        return f"its holder has not recorded itself yet (the record names {holder.describe()}, which no longer runs)"
    where = "" if holder.alive() else " (on another machine: cannot check it still runs)"
    return f"held by {holder.describe()}{where}"


class DataFolderLock:
    """Exclusive lock of one data folder for one run (a context manager; `acquire` / `release`).

    Args:
        folder: the data root (created when missing).
        mode: ``wait`` for the holder to end, or ``fail`` at once with `DataFolderBusy`.
        timeout_s: with ``wait``, the longest wait in seconds (None: no limit).
        command: the command line recorded for other runs to see (default: this process's argv).
        sleep: how a wait sleeps (tests); the lock is retried every `poll_s` seconds.
    """

    def __init__(
        self,
        folder: str | Path,
        mode: LockMode = "wait",
        timeout_s: float | None = None,
        command: str | None = None,
        poll_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if mode not in ("wait", "fail"):
            raise ValueError(f"lock.mode must be 'wait' or 'fail', got {mode!r}")
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"lock.timeout_s must be >= 0 or null, got {timeout_s}")
        self.folder = Path(folder)
        self.mode, self.timeout_s, self.command = mode, timeout_s, command
        self.poll_s, self._sleep = poll_s, sleep
        self.lock_path = self.folder / LOCK_NAME
        self.record_path = self.folder / RECORD_NAME
        self._lock: FileLock | None = None
        self.replaced: Holder | None = None  # a dead run's record found on taking the lock

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def _try(self, lock: FileLock) -> bool:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def _busy_holder(self) -> Holder | None:
        """The live holder's record, waiting up to `RECORD_GRACE_S` for a new holder to write it."""
        deadline = time.monotonic() + RECORD_GRACE_S
        while True:
            holder = read_holder(self.record_path)
            if (holder is not None and holder.alive() is not False) or time.monotonic() >= deadline:
                return holder
            time.sleep(0.05)

    def acquire(self) -> DataFolderLock:
        """Take the lock (waiting or failing as `mode` says) and record this process as its holder."""
        if self.held:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        # fallback_to_soft=False: a marker-file lock would survive a killed holder; only an OS lock
        # is released by the OS, so a filesystem without flock fails here instead
        lock = FileLock(self.lock_path, thread_local=False, fallback_to_soft=False, preserve_lock_file=True)
        start = time.monotonic()
        if not self._try(lock):
            holder = self._busy_holder()
            if self.mode == "fail":
                raise DataFolderBusy(self.folder, holder)
            log.warning(
                "data folder %s is in use by another run, %s: waiting for it to end",
                self.folder,
                describe_holder(holder),
            )
            reported = time.monotonic()
            while not self._try(lock):
                waited = time.monotonic() - start
                if self.timeout_s is not None and waited >= self.timeout_s:
                    raise DataFolderBusy(self.folder, read_holder(self.record_path), waited)
                if time.monotonic() - reported >= REPORT_EVERY_S:
                    log.warning(
                        "still waiting for data folder %s (%.0f s): %s",
                        self.folder,
                        waited,
                        describe_holder(read_holder(self.record_path)),
                    )
                    reported = time.monotonic()
                self._sleep(self.poll_s)
            log.info("data folder %s is free after %.1f s of waiting", self.folder, time.monotonic() - start)
        self._lock = lock
        try:
            previous = read_holder(self.record_path)
            if previous is not None:  # we hold the lock, so its writer ended without releasing
                self.replaced = previous
                log.warning(
                    "data folder %s: the previous run (%s) ended without releasing its lock (killed?); "
                    "the operating system freed the lock and this run's record replaces its",
                    self.folder,
                    previous.describe(),
                )
            me = Holder.this_process(self.command)
            try:
                with atomic_path(self.record_path) as tmp:
                    tmp.write_text(json.dumps(asdict(me), indent=1) + "\n")
            except OSError as error:  # e.g. a full disk: the lock is held, only its description is missing
                log.warning(
                    "data folder %s: lock held, its record %s not written (%s)", self.folder, self.record_path, error
                )
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Remove this run's record, then free the lock (a no-op when not held)."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            holder = read_holder(self.record_path)
            if holder is not None and holder.pid == os.getpid() and holder.host == HOST:
                self.record_path.unlink(missing_ok=True)
        finally:
            lock.release(force=True)

    def __enter__(self) -> DataFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
