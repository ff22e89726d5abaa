"""Prompt stops: SIGINT and SIGTERM end a run within seconds, through normal Python exceptions.

Python's default SIGTERM handler kills the process outright, and inside a Lightning ``fit``
(PatchCore's and PaDiM's fit, the classifier's training) Lightning replaces it by one that only
records the signal, so a ``kill`` during a fit was ignored until the fit ended. `stop_on_signals`
installs one handler for both signals, in the main thread:

- the first signal raises `RunStopped` (a KeyboardInterrupt) where the main thread is, so every
  ``finally`` and ``except BaseException`` runs: temporary files and staging folders are removed
  (`segad.storage.files.atomic_path`, `staging_folder`), locks held in ``with`` blocks are released, and
  the complete outputs written so far stay for the rerun. Lightning composes its own SIGTERM
  handler with this one and turns the KeyboardInterrupt inside a fit into ``SystemExit(1)``;
- a second signal (of either kind) kills the process at once with the default action.

Leaving the block restores the previous handlers, so a notebook's own Ctrl-C handling is back
after a run.

Example (not run as a doctest: a real signal to the test process killed the whole pytest run
when it followed the in-process end-to-end tests; tests/test_stopping.py runs it in a subprocess)::

    import os, signal
    from segad.stopping import RunStopped, stop_on_signals
    try:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            import time; time.sleep(5)
    except RunStopped as stopped:
        print(stopped)  # SIGTERM received: the run stops (send it again to kill it at once)
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: The signals that stop a run.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM (a KeyboardInterrupt, so code that cleans up on Ctrl-C
    cleans up on SIGTERM too)."""


class StopHandler:
    """The handler of `stop_on_signals`: stop on the first signal, kill on the second."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        name = signal.Signals(signum).name
        if len(self.received) > 1:
            logger.error("%s received again: killing the run now", name)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        message = f"{name} received: the run stops (send it again to kill it at once)"
        logger.warning(message)
        raise RunStopped(message)


@contextmanager
def stop_on_signals() -> Iterator[StopHandler | None]:
    """Inside the block, SIGINT and SIGTERM stop the run (`RunStopped`); a second one kills it.

    Outside the main thread (where Python cannot set handlers) it changes nothing and yields None.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    handler = StopHandler()
    previous = install(handler)
    try:
        yield handler
    finally:
        restore(previous)


def install(handler: Any) -> dict[int, Any]:
    """Set `handler` for `SIGNALS`; returns the previous handlers (for `restore`)."""
    previous: dict[int, Any] = {int(signum): signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, handler)
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers `install` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
