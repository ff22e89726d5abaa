"""Two datasets of one layout in one data folder: run at the same time, then one after the other.

Real `python -m kedro run --pipelines segad` processes (tests.test_runner.make_project: tiny demo,
32 px, one detector, one seed) on two demo folders of different demo seeds, A and B. Each is first
run alone in its own project (the reference). Then, in one shared data folder, A and B are started
at the same time: the second waits for the first's lock (``lock.mode: wait``, the default) and both
succeed. In a third data folder they run one after the other, and in between B is started with
``lock.mode=fail`` while A runs: it stops at once naming A's process. In both shared folders every
feature partition, BRF model, score partition, selection partition, by-regime metrics.csv and
report.md (its run's bundle id masked), map index and bundle of a dataset is byte-identical to
(bundles: holds the same files as) its solo run's, and named by its dataset id: nothing of A's is B's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segad.storage.run_lock import RECORD_NAME, read_holder
from tests.conftest import demo_id, make_project, plain_logging, project_env

pytestmark = pytest.mark.e2e

SEEDS = {"a": 3, "b": 7}  # demo seeds: two different demo folders of one layout


def _project(root: Path, demo: Path) -> Path:
    project = make_project(root, demo)
    plain_logging(project)  # plain lines, no rich wrapping
    return project


def _command(params: str) -> list[str]:
    return [sys.executable, "-m", "kedro", "run", "--pipelines", "segad", "--params", params]


def _env(project: Path) -> dict[str, str]:
    return project_env(KEDRO_LOGGING_CONFIG=str(project / "logging.yml"), OMP_NUM_THREADS="1", TQDM_DISABLE="1")


def _params(roots: dict[str, Path], name: str, extra: str = "") -> str:
    root = roots[name]
    return f"dataset.root={root},demo.seed={SEEDS[name]},segmentation.path={root / 'segmentation.png'}" + extra


def _start(project: Path, params: str) -> subprocess.Popen:
    return subprocess.Popen(
        _command(params),
        cwd=project,
        env=_env(project),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, what: str) -> str:
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, f"{what} failed:\n{out[-4000:]}"
    return out


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but the per-run copies (``runs/<run id>/``, named by each run's own id)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "runs" not in p.relative_to(folder).parts
    }


# A bundle id (`<UTC time>Z-<8 hex>`) is each run's own, like a run id: report.md names the bundle
# its run built, so the per-regime report.md is compared with that id masked (the bundle's files are
# compared in _bundles).
_BUNDLE_ID = re.compile(rb"\d{8}T\d{6}Z-[0-9a-f]{8}")


def _by_regime(folder: Path) -> dict[str, bytes]:
    """`_files` of the per-regime folder, report.md with its run's bundle id masked."""
    return {
        name: _BUNDLE_ID.sub(b"<bundle id>", content) if name.endswith("report.md") else content
        for name, content in _files(folder).items()
    }


def _bundles(project: Path) -> dict[str, dict]:
    """dataset id -> the files (name: SHA-256) of the newest bundle of that dataset."""
    found: dict[str, tuple[str, dict]] = {}
    for manifest in (project / "data" / "06_models" / "segad_bundle").glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        ident = data["config"]["dataset"]
        if ident not in found or data["bundle_id"] > found[ident][0]:
            found[ident] = (data["bundle_id"], data["files"])
    return {ident: files for ident, (_, files) in found.items()}


def _of_dataset(project: Path, ident: str) -> dict[str, dict[str, bytes]]:
    """Everything a run keeps of one dataset, by kind."""
    data = project / "data"
    return {
        "features": _files(data / "04_feature" / "features" / f"dataset={ident}"),
        "scores": _files(data / "07_model_output" / "scores" / f"dataset={ident}"),
        "brf": _files(data / "06_models" / "brf" / ident),
        "by_regime": _by_regime(data / "08_reporting" / "by_regime" / ident),
        "selection": _files(data / "07_model_output" / "selection" / f"dataset={ident}"),
        "map_index": _files(data / "03_primary" / "patchcore" / f"dataset={ident}"),
        "image_index": _files(data / "02_intermediate" / f"dataset={ident}"),
    }


def _check_against_solo(project: Path, solo: dict[str, Path], ids: dict[str, str]) -> None:
    bundles = _bundles(project)
    assert set(bundles) == set(ids.values())
    for name, ident in ids.items():
        mine, reference = _of_dataset(project, ident), _of_dataset(solo[name], ident)
        for kind in mine:
            assert mine[kind], f"{kind} of dataset {name} ({ident}) is missing"
            assert mine[kind] == reference[kind], f"{kind} of dataset {name} ({ident}) differs from its solo run"
        assert bundles[ident] == _bundles(solo[name])[ident], f"the bundle of dataset {name} holds other files"
        metrics = (project / "data" / "08_reporting" / "by_regime" / ident / "high_shot" / "metrics.csv").read_text()
        assert metrics.count(f"\n{ident},") >= 2 and all(other not in metrics for other in set(ids.values()) - {ident})
    assert not (project / "data" / RECORD_NAME).exists(), "the lock record outlived the runs"


def test_two_datasets_of_one_layout_in_one_data_folder(tmp_path):
    roots = {name: tmp_path / f"demo_{name}" for name in SEEDS}
    ids = {name: demo_id(root) for name, root in roots.items()}
    assert ids["a"] != ids["b"]

    # the references: each dataset alone in its own data folder (two folders run at the same time)
    solo = {name: _project(tmp_path / f"solo_{name}", roots[name]) for name in SEEDS}
    running = {name: _start(solo[name], _params(roots, name)) for name in SEEDS}
    for name, process in running.items():
        _finish(process, f"solo run {name}")
    model_keys = {name: _of_dataset(solo[name], ids[name])["map_index"] for name in SEEDS}
    assert model_keys["a"] != model_keys["b"]

    # at the same time in one data folder: the second waits for the first, then runs
    shared = _project(tmp_path / "shared", roots["a"])
    first = _start(shared, _params(roots, "a"))
    second = _start(shared, _params(roots, "b"))
    logs = {"a": _finish(first, "concurrent run a"), "b": _finish(second, "concurrent run b")}
    waited = [name for name, log in logs.items() if "is in use by another run" in log]
    assert len(waited) == 1, "exactly one of two concurrent runs waits for the other"
    other = first if waited == ["b"] else second
    assert f"held by pid {other.pid} on host" in logs[waited[0]] and "waiting for it to end" in logs[waited[0]]
    _check_against_solo(shared, solo, ids)

    # one after the other in a third data folder; B started with lock.mode=fail while A runs stops at once
    sequential = _project(tmp_path / "sequential", roots["a"])
    running_a = _start(sequential, _params(roots, "a"))
    record = sequential / "data" / RECORD_NAME
    deadline = time.monotonic() + 120
    while read_holder(record) is None and running_a.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    start = time.monotonic()
    refused = subprocess.run(
        _command(_params(roots, "b", ",lock.mode=fail")),
        cwd=sequential,
        env=_env(sequential),
        capture_output=True,
        text=True,
        timeout=300,
    )
    refused_after = time.monotonic() - start
    still_running = running_a.poll() is None
    _finish(running_a, "sequential run a")
    assert still_running, "run a ended before run b could meet its lock (make the run longer)"
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert f"is in use by another run: held by pid {running_a.pid} on host" in refused.stderr
    assert "command: " in refused.stderr and "--pipelines segad" in refused.stderr
    assert refused_after < 60  # the time to start Python and Kedro; nothing of the pipeline ran
    assert not (sequential / "data" / "04_feature" / "features" / f"dataset={ids['b']}").exists()
    _finish(_start(sequential, _params(roots, "b")), "sequential run b")
    _check_against_solo(sequential, solo, ids)
    latest = (sequential / "data" / "08_reporting" / "metrics.csv").read_text()
    assert f"\n{ids['b']}," in latest and ids["a"] not in latest  # the top-level copy shows the latest run
