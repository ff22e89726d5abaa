"""Kedro adapter of `segad.storage.run_lock`: every pipeline run holds its data folder's lock.

`RunLockHooks` (registered in settings.py) reads the data root (``globals.data_root``, relative to
the working directory as the catalog's paths are) and the ``lock`` parameters when the context is
created, takes the lock before any other hook or node of a run touches the data folder, and
releases it on every way out: the run's end, a failed node, a failing hook of another plugin
(the lock hooks are pluggy wrappers around the others), and interpreter exit (``atexit``; on
SIGKILL the operating system frees the lock itself). Commands that run no pipeline (``kedro
viz``, ``kedro registry list``, DuckDB over the tables) never take it.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

import click
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from pydantic import ValidationError

from segad.config import LockOptions, describe
from segad.hooks import RunConfigError
from segad.storage.run_lock import DataFolderBusy, DataFolderLock

log = logging.getLogger(__name__)


class DataFolderBusyError(click.ClickException, RuntimeError):
    """`DataFolderBusy` as one ``Error: ...`` line of `kedro run` (exit status 1); ``holder`` and
    ``folder`` as there."""

    def __init__(self, busy: DataFolderBusy) -> None:
        super().__init__(str(busy))
        self.folder, self.holder = busy.folder, busy.holder


class RunLockHooks:
    """Hold ``<data root>/.segad.lock`` from before the first hook of a run to after the last."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.options = LockOptions()
        self.lock: DataFolderLock | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Read the data root and the ``lock`` parameters of this session."""
        try:
            data_root = context.config_loader["globals"].get("data_root", "data")
        except MissingConfigException:
            data_root = "data"
        self.folder = Path(str(data_root))
        block = context.config_loader["parameters"].get("lock") or {}
        try:
            self.options = LockOptions(**block)
        except (ValidationError, TypeError) as error:
            detail = describe(error, "lock") if isinstance(error, ValidationError) else f"lock: {error}"
            raise RunConfigError(f"Parameter validation failed: {detail}") from error

    def _acquire(self) -> None:
        if self.lock is not None and self.lock.held:  # an earlier run of this process was interrupted
            log.warning("releasing the data folder lock an interrupted earlier run of this process still held")
            self._release()
        lock = DataFolderLock(self.folder or Path("data"), mode=self.options.mode, timeout_s=self.options.timeout_s)
        try:
            lock.acquire()
        except DataFolderBusy as busy:
            raise DataFolderBusyError(busy) from None
        self.lock = lock
        atexit.register(self._release)
        log.info("data folder %s locked for this run (%s)", lock.folder, lock.lock_path.name)

    def _release(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            atexit.unregister(self._release)
            lock.release()

    @hook_impl(wrapper=True)
    def before_pipeline_run(self) -> Generator[None, Any, Any]:
        """Take the lock before every other ``before_pipeline_run``; release it if one of them fails."""
        self._acquire()
        try:
            return (yield)
        except BaseException:
            self._release()
            raise

    @hook_impl(wrapper=True)
    def after_pipeline_run(self) -> Generator[None, Any, Any]:
        """Release the lock after every other ``after_pipeline_run`` (the tracking hooks write too)."""
        try:
            return (yield)
        finally:
            self._release()

    @hook_impl(wrapper=True)
    def on_pipeline_error(self) -> Generator[None, Any, Any]:
        """As `after_pipeline_run`, for a run that failed."""
        try:
            return (yield)
        finally:
            self._release()
