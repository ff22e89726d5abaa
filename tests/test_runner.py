"""DaskRunner: same outputs as the SequentialRunner on a dask.distributed LocalCluster."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from distributed import Client, LocalCluster
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset

from segad.runner import DaskDataset, DaskRunner
from tests.conftest import PADIM, make_project, only_map_index, run_project, set_parameters

#: The chain up to the feature table (the map stage is the one Dask is for).
FEATURE_CHAIN = ["ingestion", "split", "segmentation", "defects", "anomaly_maps", "classifier", "features"]


def make_table(n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(n_rows)], "value": rng.normal(size=n_rows)})


def square(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(value=table["value"] ** 2)


def shift(table: pd.DataFrame, offset: float) -> pd.DataFrame:
    return table.assign(value=table["value"] + offset)


def join(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    return left.merge(right, on="image_id", suffixes=("_squared", "_shifted"))


def explode(table: pd.DataFrame) -> pd.DataFrame:
    raise RuntimeError(f"node failed on {len(table)} rows")


def diamond() -> Pipeline:
    """make -> (square, shift) in parallel -> join -> a persisted table."""
    return Pipeline(
        [
            node(make_table, ["params:n_rows", "params:seed"], "table", name="make"),
            node(square, "table", "squared", name="square"),
            node(shift, ["table", "params:offset"], "shifted", name="shift", tags=["gpu"]),
            node(join, ["squared", "shifted"], "joined", name="join"),
        ]
    )


def catalog_for(out_dir, intermediate) -> DataCatalog:
    datasets = {name: intermediate(name) for name in ("table", "squared", "shifted")}
    datasets["joined"] = ParquetDataset(filepath=str(out_dir / "joined.parquet"))
    catalog = DataCatalog(datasets)
    for key, value in {"n_rows": 50, "seed": 7, "offset": 1.5}.items():
        catalog[f"params:{key}"] = MemoryDataset(value)
    return catalog


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes: node inputs, catalog and results really cross process borders."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, resources={"GPU": 1}
    ) as cluster:
        yield cluster


@pytest.mark.slow
def test_dask_runner_matches_sequential_runner(tmp_path, cluster):
    (tmp_path / "seq").mkdir()
    (tmp_path / "dask").mkdir()
    SequentialRunner().run(diamond(), catalog_for(tmp_path / "seq", lambda _: MemoryDataset()))
    with Client(cluster):
        DaskRunner(node_resources={"gpu": {"GPU": 1}}).run(diamond(), catalog_for(tmp_path / "dask", DaskDataset))
    expected = pd.read_parquet(tmp_path / "seq" / "joined.parquet")
    got = pd.read_parquet(tmp_path / "dask" / "joined.parquet")
    assert len(got) == 50
    pd.testing.assert_frame_equal(got, expected)


def test_intermediates_are_released_after_their_last_reader(tmp_path, cluster):
    with Client(cluster) as client:
        DaskRunner().run(diamond(), catalog_for(tmp_path, DaskDataset))
        assert client.list_datasets() == ()


def test_memory_intermediates_are_refused_before_any_node_runs(tmp_path, cluster):
    with Client(cluster), pytest.raises(ValueError, match="--env dask") as error:
        DaskRunner().run(diamond(), catalog_for(tmp_path, lambda _: MemoryDataset()))
    assert "squared" in str(error.value)
    assert not (tmp_path / "joined.parquet").exists()


def test_node_error_reaches_the_caller(tmp_path, cluster):
    pipeline = Pipeline(
        [
            node(make_table, ["params:n_rows", "params:seed"], "table", name="make"),
            node(explode, "table", "squared", name="explode"),
        ]
    )
    with Client(cluster) as client, pytest.raises(RuntimeError, match="node failed on 50 rows"):
        DaskRunner().run(pipeline, catalog_for(tmp_path, DaskDataset))
    with Client(cluster) as client:
        assert "squared" not in client.list_datasets()


def test_runner_builds_and_closes_its_own_local_cluster(tmp_path):
    DaskRunner(cluster_args={"n_workers": 1, "processes": False}).run(diamond(), catalog_for(tmp_path, DaskDataset))
    assert len(pd.read_parquet(tmp_path / "joined.parquet")) == 50


def test_node_resources_follow_tags_and_names():
    from kedro.pipeline import pipeline

    runner = DaskRunner(
        node_resources={"gpu": {"GPU": 1}, "join": {"MEMORY": 8e9}, "make": {"GPU": 0.5, "MEMORY": 1e9}}
    )
    nodes = {n.name: n for n in pipeline(diamond(), namespace="patchcore").nodes}
    assert runner._resources(nodes["patchcore.shift"]) == {"GPU": 1.0}  # by tag
    assert runner._resources(nodes["patchcore.join"]) == {"MEMORY": 8e9}  # by name without namespace
    assert runner._resources(nodes["patchcore.make"]) == {"GPU": 0.5, "MEMORY": 1e9}
    assert runner._resources(nodes["patchcore.square"]) is None


# ------------------------------------------------------------------ the real segad pipelines


def read_features(root: Path) -> pd.DataFrame:
    table = pd.read_parquet(root / "data" / "04_feature" / "features")
    return table.sort_values(["split_seed", "image_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def projects(tiny_demo, tmp_path_factory):
    """The real chain (ingestion .. features, map stage included) run twice on the tiny demo:
    with the SequentialRunner, and in a Dask worker process with `--env dask`.

    The sequential run uses one torch thread like the Dask worker (OMP_NUM_THREADS=1 there):
    with another thread count float32 sums run in another order and the maps move by ~1e-7
    relative, so the feature tables would be equal only to that tolerance, not bit for bit.
    """
    import torch

    root = tmp_path_factory.mktemp("projects")
    sequential, distributed = make_project(root / "seq", tiny_demo), make_project(root / "dask", tiny_demo)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(sequential)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            run_project(sequential, FEATURE_CHAIN, SequentialRunner())
        finally:
            torch.set_num_threads(threads)
        patch.chdir(distributed)
        run_project(
            distributed,
            FEATURE_CHAIN,
            env="dask",
            runner=DaskRunner(cluster_args={"n_workers": 1, "threads_per_worker": 2, "processes": True}),
        )
    return sequential, distributed


@pytest.mark.e2e
def test_segad_features_are_identical_under_dask(projects):
    sequential, distributed = projects
    expected, got = read_features(sequential), read_features(distributed)
    assert len(got) > 0 and any(c.startswith("seg") for c in got.columns)
    assert set(got["role"]) == {"brf_train", "test"}
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.e2e
def test_a_bundle_trained_under_dask_scores_a_folder(projects, tiny_demo, monkeypatch):
    """brf + evaluation + bundle on Dask (a bundle is promoted only after its evaluation), then
    `kedro run --pipelines score --params score.input=<folder>`."""
    _, project = projects
    monkeypatch.chdir(project)
    run_project(
        project,
        ["brf", "evaluation", "bundle"],
        env="dask",
        runner=DaskRunner(cluster_args={"n_workers": 1, "threads_per_worker": 2, "processes": False}),
    )
    parent = project / "data" / "06_models" / "segad_bundle"
    bundle = parent / (parent / "LATEST").read_text().strip()
    manifest = yaml.safe_load((bundle / "manifest.json").read_text())  # JSON is YAML
    # the method the out-of-fold selection chose on the brf_train rows (segad.meta.selection)
    assert manifest["detectors"] == ["patchcore"] and manifest["config"]["method"] in ("patchcore", "patchcore+segad")
    assert manifest["bundle_id"] == bundle.name
    assert manifest["config"]["layout"] == "demo" and manifest["config"]["benchmark"] == "high_shot"
    assert re.fullmatch(r"demo-[0-9a-f]{8}", manifest["config"]["dataset"])  # the dataset id
    assert sorted(p.name for p in bundle.iterdir()) == ["brf.ubj", "detectors", "manifest.json", "segmentation.npy"]
    report = yaml.safe_load((project / "data" / "08_reporting" / "operating_point.json").read_text())
    assert report["threshold"] == manifest["operating_point"]["threshold"]
    assert 0.0 <= report["expected_pass_rate"] <= 1.0

    incoming = tiny_demo / "test"
    run_project(project, ["score"], SequentialRunner(), params={"score": {"input": str(incoming)}})
    table = pd.read_parquet(project / "data" / "07_model_output" / "inspection")  # every score run's partition
    assert sorted(table["image"]) == sorted(p.relative_to(incoming).as_posix() for p in incoming.rglob("*.png"))
    assert (table["status"] == "ok").all()
    assert set(table["bundle_id"]) == {bundle.name}  # the version that decided
    assert set(table["decision"]) <= {"accept", "reject"}
    overlays = sorted(p.name for p in (project / "data" / "08_reporting" / "inspection_overlays").rglob("*.png"))
    assert overlays == sorted(table.loc[table["decision"] == "reject", "overlay"])


def stored_maps(root: Path) -> tuple[pd.DataFrame, dict[str, bytes], dict[str, str]]:
    """(map index, bytes of every map file by map_key, state checksum of every saved model)."""
    index = pd.read_parquet(only_map_index(root, "padim"))
    maps = root / "data" / "03_primary" / "padim" / "maps"
    models = root / "data" / "06_models" / "padim"
    states = {
        key: yaml.safe_load((models / key / "detector.json").read_text())["state_sha256"]
        for key in index["model_key"].unique()
    }
    return index, {key: (maps / f"{key}.npz").read_bytes() for key in index["map_key"]}, states


@pytest.mark.e2e
def test_sharded_map_stage_on_two_workers_equals_the_sequential_map_stage(tiny_demo, tmp_path, monkeypatch):
    """One detector's maps split into fit tasks (one per split seed) and chunks of 4 images, run
    on 2 worker processes from inside the Dask node: the same map index, map bytes and models as
    the unsharded SequentialRunner run (both with one torch thread)."""
    import torch
    from distributed import get_task_stream

    sequential, distributed = make_project(tmp_path / "seq", tiny_demo), make_project(tmp_path / "dask", tiny_demo)
    set_parameters(sequential, detectors=["padim"], seeds=[0, 1], anomaly_maps={"padim": PADIM})
    sharded = {**PADIM, "distribute": {"chunk_size": 4, "torch_threads": 1}}
    set_parameters(distributed, detectors=["padim"], seeds=[0, 1], anomaly_maps={"padim": sharded})
    monkeypatch.chdir(sequential)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_project(sequential, FEATURE_CHAIN, SequentialRunner())
    finally:
        torch.set_num_threads(threads)
    monkeypatch.chdir(distributed)  # before the workers start: the catalog's paths are relative
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        run_project(distributed, FEATURE_CHAIN, env="dask", runner=DaskRunner())
    expected_index, expected_maps, expected_models = stored_maps(sequential)
    index, maps, models = stored_maps(distributed)
    pd.testing.assert_frame_equal(index, expected_index)
    assert maps == expected_maps and models == expected_models
    pd.testing.assert_frame_equal(read_features(distributed), read_features(sequential))
    tasks = [str(task["key"]) for task in stream.data]
    fits = [key for key in tasks if key.startswith("segad-fit-padim-")]
    chunks = [key for key in tasks if key.startswith("segad-maps-padim-")]
    n_maps = index["map_key"].nunique()
    assert len(fits) == index["model_key"].nunique() == 2  # one per split seed, in parallel
    assert len(chunks) == sum(-(-n // 4) for n in index.drop_duplicates("map_key")["model_key"].value_counts())
    assert len(chunks) > 2 and n_maps > 8
