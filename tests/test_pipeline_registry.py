"""The registry: detector list from conf, stages composed, environments kept apart."""

import os
import subprocess
import sys

from segad.pipeline_registry import configured_detectors
from tests.conftest import PROJECT_ROOT


def test_detectors_come_from_base_then_the_run_environment(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "prod").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text("detectors: [patchcore, padim]\n")
    (tmp_path / "prod" / "parameters_models.yml").write_text("detectors: [efficient_ad]\n")
    assert configured_detectors(tmp_path, env="local") == ["patchcore", "padim"]
    assert configured_detectors(tmp_path, env="prod") == ["efficient_ad"]


def test_registering_pipelines_keeps_the_environments_globals():
    """Building the pipelines must not reset the session's `${globals:...}` (conf/elpv writes to
    data/elpv, never over the demo's tables in data/)."""
    code = (
        "from pathlib import Path\n"
        "from kedro.framework.startup import bootstrap_project\n"
        "from kedro.framework.session import KedroSession\n"
        "from kedro.framework.project import pipelines\n"
        "bootstrap_project(Path.cwd())\n"
        "with KedroSession.create(env='elpv') as session:\n"
        "    context = session.load_context()\n"
        "    assert len(pipelines['segad'].nodes) > 10\n"
        "    print(context.config_loader['catalog']['image_index']['filepath'])\n"
    )
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "data/elpv/02_intermediate/image_index.parquet"
