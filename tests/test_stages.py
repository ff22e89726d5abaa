"""The stages of `STAGES`, run one by one in that order from an empty data folder, each as its own
`kedro run --pipelines <stage>` session: every stage finds what it reads (the upstream check passes
without a special case) and writes every output it declares."""

from __future__ import annotations

import pytest
from kedro.runner import SequentialRunner

from segad.hooks import _exists
from segad.pipeline_registry import STAGES
from tests.conftest import make_project, run_project, set_parameters


def _catalog_and_pipelines(project):
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="local") as session:
        catalog = session.load_context().catalog
        return catalog, {name: pipelines[name] for name in STAGES}


@pytest.mark.e2e
def test_the_stages_run_one_by_one_in_stages_order_from_an_empty_data_folder(tiny_demo, tmp_path, monkeypatch):
    project = make_project(tmp_path / "project", tiny_demo)
    # one_class: the defects stage draws synthetic defects inside the segmentation stage's segments
    set_parameters(project, benchmark="one_class")
    monkeypatch.chdir(project)
    assert not (project / "data").exists()
    catalog, stages = _catalog_and_pipelines(project)
    assert list(stages) == list(STAGES)
    for stage in STAGES:
        outputs = sorted(stages[stage].all_outputs())
        assert not any(_exists(catalog, name) for name in outputs), f"{stage} output exists before it ran"
        run_project(project, [stage], SequentialRunner())
        catalog, _ = _catalog_and_pipelines(project)  # a fresh catalog: datasets cache their listings
        written = {name: _exists(catalog, name) for name in outputs}
        assert False not in written.values(), f"{stage} did not write {[n for n, w in written.items() if w is False]}"
        assert True in written.values(), f"{stage} wrote no persisted output"
    synthetic = catalog.load("synthetic_index")
    assert len(synthetic) > 0 and set(synthetic["defect_type"]) <= {"synthetic_blur", "synthetic_rectangle"}
    bundles = project / "data" / "06_models" / "segad_bundle"
    assert (bundles / (bundles / "LATEST").read_text().strip() / "manifest.json").is_file()
