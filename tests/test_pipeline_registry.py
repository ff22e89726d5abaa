"""The registry: detector list from conf, stages composed, environments kept apart."""

import json
import re
import subprocess
import sys

import pytest

from segad.pipeline_registry import configured_detectors
from tests.conftest import PROJECT_ROOT, copy_project, one_detector, project_env


def test_detectors_come_from_base_then_the_run_environment(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "prod").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text("detectors: [patchcore, padim]\n")
    (tmp_path / "prod" / "parameters_models.yml").write_text("detectors: [efficient_ad]\n")
    assert configured_detectors(tmp_path, env="local") == ["patchcore", "padim"]
    assert configured_detectors(tmp_path, env="prod") == ["efficient_ad"]


@pytest.mark.e2e
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
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=project_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.fullmatch(
        r"data/elpv/02_intermediate/dataset=elpv-[0-9a-f]{8}/image_index.parquet",
        result.stdout.strip().splitlines()[-1],
    )


@pytest.mark.e2e
def test_the_registry_and_the_nodes_share_the_sessions_detector_list(tmp_path):
    """`--env` and `--params` reach the registry: the namespaced anomaly_maps pipelines, the brf
    node's detectors and the `detectors` parameter the nodes read are one list, in one process
    that runs two sessions (as `kedro run` does, with `KedroSession.run`)."""
    project = copy_project(tmp_path / "project", params={"two": one_detector("padim")})
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "from kedro.framework.project import pipelines\n"
        "from kedro.framework.session import KedroSession\n"
        "from kedro.framework.startup import bootstrap_project\n"
        "bootstrap_project(Path.cwd())\n"
        "def seen(session):\n"
        "    params = session.load_context().params\n"
        "    maps = sorted({n.namespace.split('.')[1] for n in pipelines['segad'].nodes\n"
        "                   if (n.namespace or '').startswith('anomaly_maps.')})\n"
        "    brf = next(n for n in pipelines['brf'].nodes if n.name.endswith('train_brf'))\n"
        "    return {'registry': maps, 'brf': sorted(brf.func.keywords['detectors']),\n"
        "            'parameters': sorted(params['detectors'])}\n"
        "with KedroSession.create(env='two') as session:\n"
        "    print(json.dumps(seen(session)))\n"
        "with KedroSession.create(env='two', runtime_params={'detectors': ['patchcore', 'padim']}) as session:\n"
        "    print(json.dumps(seen(session)))\n"
        "    session.run(pipeline_names=['ingestion'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=project_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines == [
        {"registry": ["padim"], "brf": ["padim"], "parameters": ["padim"]},
        {"registry": ["padim", "patchcore"], "brf": ["padim", "patchcore"], "parameters": ["padim", "patchcore"]},
    ]
    assert len(list((project / "data" / "02_intermediate").glob("dataset=*/image_index.parquet"))) == 1


def test_stages_are_in_data_flow_order(monkeypatch):
    """Every dataset a stage reads that some stage writes is written by an earlier stage of STAGES."""
    from segad.hooks import _producers
    from segad.pipeline_registry import STAGES, register_pipelines

    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.setenv("KEDRO_ENV", "local")
    pipelines = register_pipelines()
    producer = _producers(pipelines)
    late = [
        f"{stage} reads {name} of {producer[name]}"
        for position, stage in enumerate(STAGES)
        for name in sorted(pipelines[stage].inputs())
        if name in producer and (producer[name] not in STAGES or STAGES.index(producer[name]) >= position)
    ]
    assert not late
    assert [n for n in pipelines if n in STAGES] == list(STAGES)
    # the segment maps come before the synthetic defects drawn inside them
    assert producer["segment_maps"] == "segmentation" and "segment_maps" in pipelines["defects"].inputs()
    assert producer["classifier_scores"] == "classifier" and "classifier_scores" in pipelines["features"].inputs()


def test_the_bundle_is_the_last_node_of_the_training_run():
    """LATEST moves only after the run's evaluation has finished: every other node of `segad`
    (with any detector list) but the report stage's is upstream of the bundle node, so no runner can start it earlier,
    and a run that fails anywhere before never writes a bundle or moves LATEST. The one
    exception is the picture folder of the segment maps (a write-only Matplotlib dataset, which
    nothing can read back to depend on); it needs only the segment maps, so it runs long before."""
    from segad.pipeline_registry import register_pipelines, use_detectors

    for detectors in (["patchcore"], ["padim", "patchcore"]):
        use_detectors(detectors)
        try:
            segad = register_pipelines()["segad"]
        finally:
            use_detectors(None)
        (last,) = [node for node in segad.nodes if "segad_bundle" in node.outputs]
        upstream = {node.name for node in segad.to_nodes(last.name).nodes}
        # after it only the report stage, which writes report.md with the bundle's id and threshold
        report = {node.name for node in segad.nodes if node.namespace == "report"}
        assert {o for node in segad.nodes if node.name in report for o in node.outputs} == {
            "report",
            "report_by_regime",
        }
        others = {node.name for node in segad.nodes if node.outputs != ["segmentation_overlays"]} - report
        assert upstream == others
        assert "metrics_by_regime" in last.inputs
