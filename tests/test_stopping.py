"""segad.stopping: SIGTERM and SIGINT stop a run promptly, also inside a Lightning fit; twice kills.

Each case runs in its own Python process (signals are process-wide), which signals itself or is
signalled by the test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT_ROOT

# A Lightning fit whose epoch ends in a long, busy hook (like PatchCore's coreset selection, where
# Lightning only records a SIGTERM and goes on): the process signals itself 0.5 s into that hook.
LIGHTNING_FIT = """
import os, signal, sys, threading, time
import torch, lightning.pytorch as pl
from segad.stopping import RunStopped, stop_on_signals

class Slow(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
    def training_step(self, batch, _):
        return self.layer(batch[0]).sum()
    def configure_optimizers(self):
        return None
    def on_train_epoch_end(self):
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        end = time.monotonic() + 30
        while time.monotonic() < end:  # a long coreset, in Python steps
            sum(range(1000))

data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)), batch_size=2)
trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu")
start = time.monotonic()
try:
    with stop_on_signals():
        trainer.fit(Slow(), data)
except (RunStopped, SystemExit) as stopped:
    print(f"stopped after {time.monotonic() - start:.1f} s: {type(stopped).__name__}", flush=True)
    sys.exit(3)
print("fit ended normally", flush=True)
"""

# Cleanup that hangs after the first signal: the second one must kill the process at once.
STUCK = """
import sys, time
from segad.stopping import RunStopped, stop_on_signals
with stop_on_signals():
    try:
        print("ready", flush=True)
        time.sleep(60)
    except RunStopped:
        print("stopping", flush=True)
        time.sleep(60)  # a clean-up that does not end
print("not killed", flush=True)
"""


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_sigterm_inside_a_lightning_fit_stops_it_at_once():
    """Lightning composes its own SIGTERM handler (which only records the signal) with ours, so
    the stop reaches the busy hook: the process ends in seconds, not after the 30 s hook."""
    process = _python(LIGHTNING_FIT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 3, out + err[-3000:]
    seconds = float(out.split("stopped after ")[1].split(" s")[0])
    assert seconds < 5, out
    assert "SIGTERM received: the run stops" in err


def test_a_second_signal_kills_at_once():
    process = _python(STUCK)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().strip() == "stopping"
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)
    assert time.monotonic() - sent < 5
    assert process.returncode == -signal.SIGINT
    assert "not killed" not in process.stdout.read()


def test_the_previous_handlers_come_back_after_the_block():
    from segad.stopping import stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with stop_on_signals() as handler:
        assert signal.getsignal(signal.SIGTERM) is handler
    assert {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} == before


def test_the_stop_hooks_set_the_handlers_for_a_run_and_put_the_previous_ones_back():
    from segad.hooks import StopHooks
    from segad.settings import HOOKS
    from segad.stopping import StopHandler

    assert any(isinstance(hook, StopHooks) for hook in HOOKS)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    hooks = StopHooks()
    hooks.before_pipeline_run()
    assert isinstance(signal.getsignal(signal.SIGTERM), StopHandler)
    hooks.before_pipeline_run()  # a run that ended without hooks (stopped): replaced, not stacked
    hooks.on_pipeline_error()
    assert {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} == before
