"""benchmarks/gpu_check.py without CUDA: one line saying no GPU is available, exit status 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def test_gpu_check_without_cuda_prints_one_line_and_exits_0(monkeypatch, capsys):
    import torch

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [gpu_check.NO_GPU] and "no GPU is available" in out[0]


@pytest.mark.skipif(os.name != "posix", reason="hides GPUs with CUDA_VISIBLE_DEVICES")
@pytest.mark.slow
def test_gpu_check_script_runs_as_a_command_without_a_visible_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "gpu_check: no GPU is available (torch.cuda.is_available() is False); nothing was measured"
    ]
