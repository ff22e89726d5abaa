"""Lineage: `kedro viz build` renders the whole `segad` pipeline with readable namespaces.

Also checks that the ELPV configuration environment (conf/elpv) resolves to a valid run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from tests.conftest import CONF_DATASET_ID, copy_project, project_env

ROOT = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).with_name("kedro")


def _segad_pipeline(monkeypatch, env: str = "local"):
    from segad.pipeline_registry import register_pipelines

    monkeypatch.chdir(ROOT)  # the registry reads the detector list from ./conf
    monkeypatch.setenv("KEDRO_ENV", env)
    return register_pipelines()["segad"]


@pytest.mark.e2e
def test_kedro_viz_build_shows_the_segad_pipeline(tmp_path, monkeypatch):
    # Build in a copy of the project's configuration so that build/ and .viz/ land in tmp_path;
    # the segad package comes from PYTHONPATH (src/ there is empty on purpose).
    tmp_path = copy_project(tmp_path / "project")
    result = subprocess.run(
        [str(KEDRO), "viz", "build"], cwd=tmp_path, env=project_env(), capture_output=True, text=True, timeout=300
    )
    log = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, log
    # kedro viz build reports some failures only in its output, with exit status 0
    assert "Failed to build" not in log, log
    build = tmp_path / "build"
    assert (build / "index.html").is_file(), log
    response = json.loads((build / "api" / "pipelines" / "segad").read_text())

    assert_viz_shows(response, _segad_pipeline(monkeypatch), _detectors())


def assert_viz_shows(response: dict, expected, detectors: list[str]) -> None:
    """Every node of `expected` (a Kedro Pipeline) is a task of the viz response, in its namespace."""

    def key(name: str, namespace: str | None) -> tuple[str, str]:
        return namespace or "", name.split(".")[-1]

    shown = sorted(
        key(n["name"], (n.get("modular_pipelines") or [None])[-1]) for n in response["nodes"] if n["type"] == "task"
    )
    wanted = sorted(key(n.name, n.namespace) for n in expected.nodes)
    assert shown == wanted, (
        f"viz tasks differ: missing {sorted(set(wanted) - set(shown))}, extra {sorted(set(shown) - set(wanted))}"
    )
    namespaces = set(response["modular_pipelines"])
    from segad.pipeline_registry import STAGES

    stages = set(STAGES)
    assert stages <= namespaces, sorted(stages - namespaces)
    per_detector = {f"anomaly_maps.{d}" for d in detectors}
    assert per_detector <= namespaces, sorted(per_detector - namespaces)
    datasets = {n["name"] for n in response["nodes"] if n["type"] == "data"}
    assert {"scores", "metrics", "report", "evaluation.test_scores"} <= datasets
    assert {f"{d}.map_index" for d in detectors} <= datasets


def _detectors(env: str = "local") -> list[str]:
    from segad.pipeline_registry import configured_detectors

    return configured_detectors(ROOT / "conf", env)


def test_elpv_environment_is_a_valid_run(monkeypatch):
    from segad.segments.segment_maps import SegmentMapConfig
    from segad.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    # the project's loader: environments merge key by key over conf/base (segad.settings)
    loader = CONFIG_LOADER_CLASS(str(ROOT / "conf"), env="elpv", **CONFIG_LOADER_ARGS)
    params = loader["parameters"]
    assert params["dataset"]["layout"] == "elpv"
    assert set(params["dataset"]) >= {"layout", "root", "category", "on_bad_image"}
    assert params["benchmark"] == "high_shot"
    assert params["detectors"] == ["patchcore", "padim"]
    for detector in params["detectors"]:
        assert params["anomaly_maps"][detector]["weights"] == "packaged:efficientnet_lite0"
    assert SegmentMapConfig(**params["segmentation"]).method == "elpv"
    assert params["evaluation"]["report"]["plot_dirs"]  # base stage parameters still apply
    pipeline = _segad_pipeline(monkeypatch, env="elpv")
    assert any(n.name == "evaluation.compute_metrics" for n in pipeline.nodes)
    assert {"patchcore.map_index", "padim.map_index"} <= pipeline.all_outputs()


@pytest.mark.parametrize("env", ["local", "elpv"])
def test_synthetic_images_folder_is_one_setting_under_the_data_root(env):
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env=env)
    data_root = loader["globals"]["data_root"]
    folder = loader["catalog"]["synthetic_images"]["path"]
    # the defects node writes into <defects.output_dir>/dataset=<dataset id>, the catalog's folder
    assert folder == f"{loader['parameters']['defects']['output_dir']}/dataset={CONF_DATASET_ID}"
    assert folder.startswith(f"{data_root}/")
    assert loader["catalog"]["synthetic_index"]["filepath"].startswith(f"{data_root}/")
