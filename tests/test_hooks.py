"""The upstream check: a stage run alone stops before running, in one line, naming what to run first."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from segad.hooks import MissingUpstreamError, UpstreamCheckHooks, missing_upstream
from segad.pipeline_registry import register_pipelines
from tests.conftest import PROJECT_ROOT, copy_project, kedro_run


@pytest.fixture
def pipelines(monkeypatch) -> dict:
    monkeypatch.chdir(PROJECT_ROOT)  # the registry reads the detector list from ./conf
    monkeypatch.setenv("KEDRO_ENV", "local")
    return register_pipelines()


@pytest.fixture
def catalog(tmp_path) -> DataCatalog:
    """The project's catalog with every file under tmp_path/data (nothing written yet)."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf" / "base", conf / "base")
    (conf / "local").mkdir()
    globals_yml = conf / "base" / "globals.yml"
    globals_yml.write_text(globals_yml.read_text().replace("data_root: data", f"data_root: {tmp_path / 'data'}"))
    loader = OmegaConfigLoader(str(conf), base_env="base", default_run_env="local")
    return DataCatalog.from_config(loader["catalog"])


def _run(pipelines: dict, catalog: DataCatalog, name: str) -> None:
    run_params = {"pipeline_names": [name]}
    UpstreamCheckHooks().before_pipeline_run(run_params=run_params, pipeline=pipelines[name], catalog=catalog)


def test_a_stage_without_its_upstream_output_names_the_datasets_and_what_to_run(pipelines, catalog):
    with pytest.raises(MissingUpstreamError) as raised:
        _run(pipelines, catalog, "anomaly_maps")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("pipeline 'anomaly_maps' needs image_index, splits, synthetic_index,")
    # defects needs segment_maps of segmentation: the stages to run, one by one, in STAGES order
    assert "run `kedro run --pipelines ingestion` (then split, segmentation, defects) first" in message
    assert raised.value.producers == ["ingestion", "split", "segmentation", "defects"]
    assert message.endswith("or `kedro run --pipelines segad` for the whole flow")
    assert isinstance(raised.value, RuntimeError)
    assert raised.value.missing == ["image_index", "splits", "synthetic_index"]


def test_stages_that_can_run_one_after_the_other_are_named_in_order(pipelines, catalog):
    with pytest.raises(MissingUpstreamError, match=r"needs image_index, .*run `kedro run --pipelines ingestion` first"):
        _run(pipelines, catalog, "split")
    catalog.save("image_index", pd.DataFrame({"path": ["a.png"]}))
    _run(pipelines, catalog, "split")  # image_index written: nothing missing


def test_no_error_when_the_inputs_exist(pipelines, catalog):
    for name in ("image_index", "splits", "synthetic_index"):
        catalog.save(name, pd.DataFrame({"path": ["a.png"]}))
    assert missing_upstream(pipelines["anomaly_maps"], catalog, pipelines, "anomaly_maps") is None
    _run(pipelines, catalog, "anomaly_maps")


def test_the_whole_flow_is_never_stopped(pipelines, catalog):
    # its free inputs are the detectors' stores, which the nodes fill through a handle
    _run(pipelines, catalog, "segad")
    assert missing_upstream(pipelines["__default__"], catalog, pipelines, "__default__") is None


@pytest.mark.e2e
def test_kedro_run_prints_one_error_line_without_a_traceback(tmp_path):
    project = copy_project(tmp_path / "project", ("base",))  # data/ stays empty
    result = kedro_run(project, "--pipelines", "split", timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    expected = (
        "Error: pipeline 'split' needs image_index, which no run has written yet: "
        "run `kedro run --pipelines ingestion` first, or `kedro run --pipelines segad` for the whole flow"
    )
    assert result.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in result.stdout + result.stderr
