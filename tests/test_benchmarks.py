"""benchmarks/: every script's imports resolve against src/ (a renamed or moved name breaks a
benchmark only when someone runs it, which is too late)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOAD_ALL = """
import importlib.util, sys
from pathlib import Path
failed = []
for path in sorted(Path(sys.argv[1]).glob("*.py")):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{path.stem}", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # as `python <script>` would
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # report every script that fails, not the first
        failed.append(f"{path.name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_benchmark_script_imports():
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) >= 10, scripts
    done = subprocess.run(
        [sys.executable, "-c", LOAD_ALL, str(ROOT / "benchmarks")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
