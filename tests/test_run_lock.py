"""segad.storage.run_lock and segad.lock_hooks: one writer per data folder, a holder record, dead holders.

The lock is an OS lock, so the holders here are real other processes (a Python child that takes
the lock and waits) or a second lock object of this process (two ``open`` calls of the lock file
are two holders for ``flock``). The end-to-end case, two real ``kedro run`` processes in one data
folder, is tests/test_concurrent_datasets.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager

from segad.lock_hooks import DataFolderBusyError, RunLockHooks
from segad.storage.files import HOST
from segad.storage.run_lock import LOCK_NAME, RECORD_NAME, DataFolderBusy, DataFolderLock, read_holder

HOLD = """
import sys, time
from segad.storage.run_lock import DataFolderLock
lock = DataFolderLock(sys.argv[1], mode="fail", command="holder for the test").acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def _holder(folder: Path, seconds: float = 60.0) -> subprocess.Popen:
    """A child process that holds `folder`'s lock for `seconds` (returns once it holds it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_fail_mode_names_the_live_holder(tmp_path):
    child = _holder(tmp_path)
    try:
        with pytest.raises(DataFolderBusy) as caught:
            DataFolderLock(tmp_path, mode="fail").acquire()
        message = str(caught.value)
        assert f"data folder {tmp_path} is in use by another run" in message
        assert f"held by pid {child.pid} on host {HOST}, started 20" in message
        assert "command: holder for the test" in message
        assert caught.value.holder is not None and caught.value.holder.pid == child.pid
    finally:
        child.kill()
        child.wait()


def test_wait_mode_waits_for_the_holder_then_takes_the_lock(tmp_path, caplog):
    child = _holder(tmp_path, seconds=1.5)
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="segad.storage.run_lock"):
        with DataFolderLock(tmp_path, mode="wait", poll_s=0.05) as lock:
            waited = time.monotonic() - start
            assert read_holder(lock.record_path).pid == os.getpid()
    child.wait()
    assert 0.5 < waited < 30
    assert f"held by pid {child.pid}" in caplog.text and "waiting for it to end" in caplog.text
    assert lock.replaced is None  # the holder released cleanly and removed its record
    assert not (tmp_path / RECORD_NAME).exists() and (tmp_path / LOCK_NAME).exists()


def test_wait_mode_gives_up_after_timeout_s(tmp_path):
    child = _holder(tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(DataFolderBusy, match=r"waited 0 s, lock.timeout_s.*held by pid"):
            DataFolderLock(tmp_path, mode="wait", timeout_s=0.3, poll_s=0.05).acquire()
        assert time.monotonic() - start < 10
    finally:
        child.kill()
        child.wait()


def test_a_killed_holder_frees_the_folder_and_its_record_is_replaced(tmp_path, caplog):
    child = _holder(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    stale = read_holder(tmp_path / RECORD_NAME)
    assert stale is not None and stale.pid == child.pid and stale.alive() is False  # left by the kill
    with caplog.at_level(logging.WARNING, logger="segad.storage.run_lock"):
        with DataFolderLock(tmp_path, mode="fail") as lock:
            assert lock.replaced == stale
            assert read_holder(lock.record_path).pid == os.getpid()
    assert f"the previous run (pid {child.pid}" in caplog.text and "ended without releasing" in caplog.text


@pytest.mark.slow
def test_a_dead_record_under_a_live_lock_is_not_named_as_the_holder(tmp_path):
    """A new holder took the lock but has not written its record yet: the old record's process is
    reported as no longer running, not as the holder."""
    dead = _dead_pid()
    (tmp_path / RECORD_NAME).write_text(json.dumps({"pid": dead, "host": HOST, "command": "old", "started": "x"}))
    raw = FileLock(tmp_path / LOCK_NAME, thread_local=False, preserve_lock_file=True)
    raw.acquire()
    try:
        with pytest.raises(DataFolderBusy) as caught:
            DataFolderLock(tmp_path, mode="fail").acquire()
    finally:
        raw.release()
    message = str(caught.value)
    assert "has not recorded itself yet" in message and f"pid {dead}" in message and "no longer runs" in message
    assert "held by pid" not in message


def test_settings_are_checked():
    with pytest.raises(ValueError, match="lock.mode"):
        DataFolderLock("x", mode="queue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        DataFolderLock("x", timeout_s=-1)


# ------------------------------------------------------------------------------------------------
# the Kedro hooks: taken before every other hook, released on every way out


class _Context:
    def __init__(self, folder: Path, lock: dict) -> None:
        self.config_loader = {"globals": {"data_root": str(folder)}, "parameters": {"lock": lock}}


class _Failing:
    @hook_impl
    def before_pipeline_run(self) -> None:
        assert (Path(self.folder) / RECORD_NAME).exists(), "the lock is taken before other hooks run"
        raise RuntimeError("another plugin failed")


def _manager(folder: Path, lock: dict, *plugins) -> tuple:
    hooks = RunLockHooks()
    manager = _create_hook_manager()
    manager.register(hooks)
    for plugin in plugins:
        manager.register(plugin)
    manager.hook.after_context_created(context=_Context(folder, lock))
    return manager, hooks


def test_hooks_hold_the_lock_for_the_run_and_release_it_after(tmp_path):
    manager, hooks = _manager(tmp_path, {"mode": "fail"})
    run = {"run_params": {}, "pipeline": None, "catalog": None}
    manager.hook.before_pipeline_run(**run)
    assert read_holder(tmp_path / RECORD_NAME).pid == os.getpid()
    with pytest.raises(DataFolderBusy):
        DataFolderLock(tmp_path, mode="fail").acquire()
    manager.hook.after_pipeline_run(run_result={}, **run)
    assert hooks.lock is None and not (tmp_path / RECORD_NAME).exists()
    manager.hook.before_pipeline_run(**run)
    manager.hook.on_pipeline_error(error=RuntimeError("node failed"), **run)
    DataFolderLock(tmp_path, mode="fail").acquire().release()  # free again


def test_hooks_release_the_lock_when_another_hook_fails_before_the_run(tmp_path):
    failing = _Failing()
    failing.folder = tmp_path
    manager, hooks = _manager(tmp_path, {}, failing)
    with pytest.raises(RuntimeError, match="another plugin failed"):
        manager.hook.before_pipeline_run(run_params={}, pipeline=None, catalog=None)
    assert hooks.lock is None
    DataFolderLock(tmp_path, mode="fail").acquire().release()


def test_hooks_fail_mode_is_one_click_error_line(tmp_path):
    manager, _ = _manager(tmp_path, {"mode": "fail"})
    with DataFolderLock(tmp_path, mode="fail", command="kedro run --pipelines segad"):
        with pytest.raises(DataFolderBusyError, match="command: kedro run --pipelines segad") as caught:
            manager.hook.before_pipeline_run(run_params={}, pipeline=None, catalog=None)
    assert caught.value.exit_code == 1 and caught.value.holder.pid == os.getpid()


def test_hooks_reject_a_bad_lock_block(tmp_path):
    from segad.hooks import RunConfigError

    with pytest.raises(RunConfigError, match="lock.mode"):
        _manager(tmp_path, {"mode": "queue"})
    with pytest.raises(RunConfigError, match="lock"):
        _manager(tmp_path, {"wait_s": 3})


def test_hooks_wait_mode_lets_a_thread_holder_finish(tmp_path):
    """wait (the default): the run starts once the other holder releases."""
    other = DataFolderLock(tmp_path, mode="fail").acquire()
    threading.Timer(0.5, other.release).start()
    manager, hooks = _manager(tmp_path, {"mode": "wait"})
    manager.hook.before_pipeline_run(run_params={}, pipeline=None, catalog=None)
    assert hooks.lock is not None and hooks.lock.held
    manager.hook.after_pipeline_run(run_params={}, run_result={}, pipeline=None, catalog=None)
