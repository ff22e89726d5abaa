"""notebooks/query_features.ipynb executes headless (segad.notebooks, `make notebook`) against a tiny
feature table written the way the features stage writes it."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from segad.datasets.partitioned_parquet_dataset import PartitionedParquetDataset
from tests.conftest import PROJECT_ROOT

pytest.importorskip(
    "nbclient", reason="the notebook runner is not installed (pip install -e '.[test]'; `make test` does)"
)
pytest.importorskip("ipykernel", reason="no Jupyter kernel (pip install -e '.[test]'; `make test` does)")

PARTITIONS = ["dataset", "benchmark", "category", "detectors", "split_seed"]


def tiny_features(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {
            "dataset": "demo",
            "benchmark": "high_shot",
            "category": "demo",
            "detectors": "patchcore",
            "split_seed": 0,
            "image_id": [f"demo/{i:03d}" for i in range(n)],
            "role": ["brf_train", "test"] * (n // 2),
            "label": [0, 0, 1] * (n // 3),
            "defect_type": ["good", "good", "scratch"] * (n // 3),
            "unseen": False,
            "source_image_id": None,
        }
    )
    for segment in (0, 1):
        for stat in ("q995", "skew", "kurtosis", "mean"):
            rows[f"seg{segment}__patchcore__{stat}"] = rng.normal(size=n)
    rows.loc[0, "seg1__patchcore__skew"] = np.nan  # a constant segment: NaN skew, as the notebook counts
    rows["patchcore__max"] = rng.normal(size=n)
    return rows


@pytest.mark.slow
def test_the_query_features_notebook_runs_headless(tmp_path):
    from segad.notebooks import run_notebook

    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    notebook = shutil.copy(PROJECT_ROOT / "notebooks" / "query_features.ipynb", project / "notebooks")
    table = tiny_features()
    PartitionedParquetDataset(
        str(project / "data/04_feature/features"), partition_cols=PARTITIONS, partition_types={"split_seed": "int64"}
    ).save(table)
    executed = run_notebook(notebook, cwd=project / "notebooks", out=tmp_path / "out", timeout=300)

    import nbformat

    cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    assert all(c.execution_count for c in cells)
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for c in cells for o in c.outputs
    )
    assert "(12, " in text  # the pandas cell prints the slice's shape: 12 rows of seed 0
    assert "seg1__patchcore__skew" in text


def test_a_missing_notebook_is_named(tmp_path):
    from segad.notebooks import run_notebook

    with pytest.raises(FileNotFoundError, match="nope.ipynb: no such notebook"):
        run_notebook(tmp_path / "nope.ipynb", cwd=tmp_path)
