"""Shared test setup: offline, no telemetry, headless plots; tiny datasets built on the fly; and the one
harness for end-to-end tests that run a real Kedro project (`copy_project`, `make_project`,
`run_project`, `kedro_run`, `project_env`, and `segad_run`: one finished tiny run per session).

A test that runs a real Kedro project (`kedro run`, a KedroSession, a subprocess of kedro) is marked
`@pytest.mark.e2e`, a library test that takes seconds `@pytest.mark.slow`; `make test-fast` leaves
both out. The harness refuses to build a project for a test without the e2e mark, so a new
end-to-end test cannot slip into the fast lane.
"""

from __future__ import annotations

import os
import zlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# No MLflow run from tests unless a test asks for one (SEGAD_TRACKING=on, tests/test_tracking.py).
os.environ.setdefault("SEGAD_TRACKING", "off")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import dataclasses  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from segad.config import DatasetConfig  # noqa: E402
from segad.config_loader import use_dataset_id  # noqa: E402
from segad.ingestion.demo import DemoConfig, write_demo  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: The dataset id of conf/base's dataset block (the demo under data/01_raw/demo of this checkout):
#: what ``${dataset_id:}`` gives a catalog that tests build from conf/ without a Kedro session.
CONF_DATASET_ID = DatasetConfig(layout="demo", root=str(PROJECT_ROOT / "data" / "01_raw" / "demo")).id
import segad.settings  # noqa: E402, F401  - registers the ${dataset_id:} resolver, as a session does

use_dataset_id(CONF_DATASET_ID)


def demo_id(root: Path) -> str:
    """The dataset id of a demo folder given as `dataset.root` (segad.storage.identity)."""
    return DatasetConfig(layout="demo", root=str(root)).id


def only_map_index(project: Path, detector: str) -> Path:
    """The one dataset's map index of `detector` in a test project (``dataset=<id>`` folder)."""
    (found,) = (project / "data" / "03_primary" / detector).glob("dataset=*/map_index.parquet")
    return found


@pytest.fixture(autouse=True)
def _conf_dataset_id():
    """Each test starts and ends with conf/base's dataset id (a Kedro session run in a test sets its own)."""
    use_dataset_id(CONF_DATASET_ID)
    yield
    use_dataset_id(CONF_DATASET_ID)


TINY_DEMO = DemoConfig(n_train_good=12, n_train_bad=6, n_test_good=6, n_test_bad=5, n_test_unseen=4, image_size=64)


def write_png(path: Path, size: tuple[int, int] = (32, 32), value: int = 128, mode: str = "RGB") -> Path:
    """Write a small noisy image (width, height) at `path`, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))  # stable across processes
    channels = 3 if mode == "RGB" else 1
    pixels = np.clip(value + rng.normal(0, 10, (size[1], size[0], channels)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A small demo dataset (64 px, 33 images) in the VAD layout with its segmentation.png."""
    return write_demo(tmp_path_factory.mktemp("demo") / "demo", TINY_DEMO)


# ------------------------------------------------------------------ end-to-end harness

#: The test being set up or run (set by pytest_runtest_setup), for the e2e guard below.
_current: pytest.Item | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _current
    _current = item


def _require_e2e() -> None:
    """Fail a test that builds or runs a real Kedro project without `@pytest.mark.e2e`."""
    if _current is not None and _current.get_closest_marker("e2e") is None:
        pytest.fail(f"{_current.nodeid} runs a real Kedro project: mark it @pytest.mark.e2e (tests/conftest.py)")


def copy_project(root: Path, envs: Iterable[str] = ("base",), params: dict[str, dict] | None = None) -> Path:
    """A Kedro project at `root`: this project's pyproject.toml and conf/<env> for each of `envs`, an
    empty conf/local, an empty src/ (the segad package comes from PYTHONPATH, `project_env`), and
    for each `{env: parameters}` of `params` a conf/<env>/parameters.yml holding them.
    Catalog paths are relative to the project, so every output lands under `root/data`."""
    _require_e2e()
    (root / "src").mkdir(parents=True)  # bootstrap_project wants it
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    for env in envs:
        shutil.copytree(PROJECT_ROOT / "conf" / env, root / "conf" / env)
    (root / "conf" / "local").mkdir(exist_ok=True)
    for env, values in (params or {}).items():
        (root / "conf" / env).mkdir(exist_ok=True)
        (root / "conf" / env / "parameters.yml").write_text(yaml.safe_dump(values))
    return root


def one_detector(detector: str) -> dict:
    """Parameters of a cheap run of the tiny demo with `detector` alone (an environment for `copy_project`)."""
    demo = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY_DEMO).items()}
    return {"detectors": [detector], "seeds": [0], "image_size": 32, "device": "cpu", "demo": demo}


def project_env(**extra: str) -> dict[str, str]:
    """Environment of a subprocess in a copied project: offline, no telemetry, headless, this checkout's
    segad first on PYTHONPATH, plus `extra`."""
    _require_e2e()
    src = str(Path(sys.modules["segad"].__file__).resolve().parents[1])  # type: ignore[arg-type]
    return {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def kedro_run(project: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600):
    """`python -m kedro run <args>` in `project` (a subprocess); returns the CompletedProcess."""
    _require_e2e()
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env=env or project_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_project(root: Path, demo: Path) -> Path:
    """The tiny project: `copy_project` (base + dask) tuned to the tiny demo at `demo` (one seed, one
    cheap PatchCore at 32 px on the eager backend, a small BRF, classifier off). The same small
    overrides go to conf/local and conf/dask (`--env dask` replaces local); `set_parameters` changes
    them."""
    copy_project(root, ("base", "dask"))
    base = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters_segmentation.yml").read_text())
    brf = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters_brf.yml").read_text())["brf"]
    classifier = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters_classifier.yml").read_text())
    classifier = classifier["classifier"]
    score = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters_score.yml").read_text())["score"]
    overrides = {
        "dataset": {"layout": "demo", "root": str(demo), "category": None, "on_bad_image": "fail"},
        "demo": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY_DEMO).items()},
        "benchmark": "high_shot",
        "seeds": [0],
        "image_size": 32,
        "device": "cpu",
        "detectors": ["patchcore"],
        "anomaly_maps": {
            "patchcore": {
                "model": {
                    "backbone": "tf_efficientnet_lite0",
                    "layers": ["blocks.1", "blocks.2"],
                    "coreset_sampling_ratio": 0.05,
                    "num_neighbors": 3,
                },
                "weights": "packaged:efficientnet_lite0",
                "trainer": {"max_epochs": 1},
                "batch_size": 16,
                # eager: converting to OpenVINO costs 2-3 s of a ~17 s tiny run; the converted
                # backends run end to end in tests/test_bundle_per_image.py (padim, classifier,
                # score) and are compared with eager in tests/detection/test_backends.py
                "backend": "eager",
            }
        },
        "score": {**score, "backend": "eager"},
        "segmentation": {**base["segmentation"], "path": str(demo / "segmentation.png")},
        "brf": {**brf, "model": {**brf["model"], "n_estimators": 2, "num_parallel_tree": 10, "n_jobs": 1}},
        # off in these runs (each would convert the backbone weights again); the default-on path runs
        # through Kedro in tests/pipelines/test_features.py and test_brf.py
        "classifier": {**classifier, "enabled": False},
        "bundle": {
            "split_seed": None,
            "category": None,
            "detectors": None,
            "max_miss_rate": 0.02,
            "oof_folds": 3,
            "segment_names": None,
        },
    }
    for env in ("local", "dask"):
        (root / "conf" / env / "parameters_test.yml").write_text(yaml.safe_dump(overrides))
    return root


def set_parameters(root: Path, **values) -> None:
    """Override top-level parameters of `make_project`'s conf/local and conf/dask test file."""
    for env in ("local", "dask"):
        path = root / "conf" / env / "parameters_test.yml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **values}))


def run_project(root: Path, pipelines: list[str], runner, env: str = "local", params: dict | None = None) -> None:
    """`kedro run --pipelines <pipelines> --env <env>` of the project at `root`, in this process
    (the caller sets cwd = root)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    _require_e2e()
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env, runtime_params=params or {}) as session:
        session.run(pipeline_names=pipelines, runner=runner)


@dataclasses.dataclass(frozen=True)
class SegadRun:
    """A finished `segad` run of the tiny project (`segad_run`): its project folder and its log."""

    project: Path
    log: str

    def copy(self, destination: Path) -> Path:
        """A copy of the project, data folder included, at `destination`: a test that runs more
        stages or damages a file works on its own copy; the dataset (the tiny demo) stays shared."""
        _require_e2e()
        return Path(shutil.copytree(self.project, destination, symlinks=True))


@pytest.fixture(scope="session")
def segad_run(tiny_demo, tmp_path_factory) -> SegadRun:
    """`python -m segad --pipelines segad` (what the `segad` command runs) of the tiny project, once
    per session: tracked (SEGAD_TRACKING=on), with the project's own conf/logging.yml, stdout and
    stderr to run.log, the bundle shipping patchcore+segad (so out-of-fold BRFs are fitted).

    Read it as it is (the log, the report, the MLflow store) or take `.copy(tmp_path / ...)` to run
    on; never change the fixture's own folder."""
    _require_e2e()
    project = make_project(tmp_path_factory.mktemp("segad_run") / "project", tiny_demo)
    bundle = yaml.safe_load((project / "conf" / "local" / "parameters_test.yml").read_text())["bundle"]
    set_parameters(project, bundle={**bundle, "detectors": ["patchcore"]})
    shutil.copy(PROJECT_ROOT / "conf" / "logging.yml", project / "conf" / "logging.yml")
    env = project_env(SEGAD_TRACKING="on", PYTHONWARNINGS="default")
    env.pop("KEDRO_LOGGING_CONFIG", None)
    log_file = project / "run.log"
    with log_file.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "segad", "--pipelines", "segad"],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=1800,
            check=False,
        )
    text = log_file.read_text()
    assert done.returncode == 0, text[-3000:]
    return SegadRun(project, text)


#: A cheap PaDiM (16 features, batches of 4) for the tiny project's runs.
PADIM = {
    "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 16},
    "weights": "packaged:efficientnet_lite0",
    "trainer": {"max_epochs": 1},
    "batch_size": 4,
}


def plain_logging(project: Path) -> dict[str, str]:
    """Write a plain-lines logging config (no rich wrapping) into `project`; returns the environment
    variable that makes `kedro run` use it (merge it into `project_env`)."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"plain": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": ["plain"]},
    }
    (project / "logging.yml").write_text(yaml.safe_dump(config))
    return {"KEDRO_LOGGING_CONFIG": str(project / "logging.yml")}


#: More test images than the tiny demo: with one map per batch, map writing lasts long enough for a
#: run to be interrupted (`interruptible_project`).
INTERRUPTIBLE_DEMO = DemoConfig(
    n_train_good=12, n_train_bad=6, n_test_good=40, n_test_bad=30, n_test_unseen=10, image_size=64
)


def interruptible_project(root: Path) -> Path:
    """`make_project` with a larger demo (written under root/raw_demo) at 64 px, one map per batch
    and plain log lines: long enough to kill a run mid-write, parseable from its log."""
    project = make_project(root, root / "raw_demo")
    demo = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(INTERRUPTIBLE_DEMO).items()}
    overrides_file = project / "conf" / "local" / "parameters_test.yml"
    overrides = yaml.safe_load(overrides_file.read_text())
    overrides["demo"] = demo
    overrides["image_size"] = 64
    overrides["anomaly_maps"]["patchcore"]["batch_size"] = 1
    overrides_file.write_text(yaml.safe_dump(overrides))
    plain_logging(project)
    return project


def kedro_command(project: Path, params: str | None = None) -> list[str]:
    """`python -m kedro run --pipelines segad [--params <params>]` as an argument list (for Popen)."""
    return [sys.executable, "-m", "kedro", "run", "--pipelines", "segad"] + (["--params", params] if params else [])


def interruptible_env(project: Path) -> dict[str, str]:
    """`project_env` for an `interruptible_project`: its plain logging, one thread, no progress bars."""
    return project_env(KEDRO_LOGGING_CONFIG=str(project / "logging.yml"), OMP_NUM_THREADS="1", TQDM_DISABLE="1")


def temporary_files(project: Path) -> list[Path]:
    """Temporary files and folders of `segad.storage.files` (being written, or moved aside) under data/."""
    return [p for p in (project / "data").rglob("*") if {".tmp", ".old"} & set(p.suffixes)]
