"""score pipeline: a folder of new images -> inspection table + overlays, bad files as error rows."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from segad.config import ScoreOptions
from segad.meta.brf import brf_scores
from segad.pipelines.score import create_pipeline
from segad.production.render import TITLE_HEIGHT
from segad.production.writer import write_bundle
from segad.runs import RUN_ID
from tests.conftest import PROJECT_ROOT
from tests.production.conftest import SIZE, train_tiny_bundle


@pytest.fixture(scope="module")
def bundle_dir(tiny_demo, tmp_path_factory):
    work = tmp_path_factory.mktemp("score")
    trained = train_tiny_bundle(tiny_demo, work)
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    # a tiny model's 2 % operating point may reject nothing; put the threshold at the median of
    # the training scores so that both decisions occur
    median = float(np.median(brf_scores(trained["brf"], trained["_features"])))
    arguments["operating_point"] = dataclasses.replace(arguments["operating_point"], threshold=median)
    return write_bundle(work / "bundle", **arguments)


@pytest.fixture()
def new_images(tiny_demo, tmp_path) -> Path:
    """Test images of the demo in nested folders, plus four files that must become error rows."""
    folder = tmp_path / "incoming"
    for path in sorted((tiny_demo / "test").rglob("*.png")):
        target = folder / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (folder / "unreadable.png").write_bytes(b"not an image")
    good = next((tiny_demo / "test" / "good").glob("*.png"))
    (folder / "truncated.png").write_bytes(good.read_bytes()[:300])
    Image.open(good).convert("L").save(folder / "gray.png")
    Image.open(good).resize((40, 64)).save(folder / "wrong_size.png")  # the demo is 64 x 64
    return folder


def project_catalog(tmp_path: Path, bundle: Path, params: dict) -> DataCatalog:
    """The project's own score/bundle catalog entries (bundle path from runtime params), outputs in tmp."""
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"),
        base_env="base",
        default_run_env="local",
        runtime_params={"score": {"bundle": str(bundle)}},
    )
    outputs = {"inspection": "inspection", "score_runs": "score_runs", "inspection_overlays": "overlays"}
    config = {k: v for k, v in loader["catalog"].items() if k == "segad_bundle" or k in outputs}
    assert config["segad_bundle"]["path"] == str(bundle)
    assert config["inspection"]["path"] == "data/07_model_output/inspection"
    for name, folder in outputs.items():
        config[name]["path"] = str(tmp_path / folder)
    catalog = DataCatalog.from_config(config)
    catalog["params:score"] = MemoryDataset(ScoreOptions(**params))
    catalog["params:device"] = MemoryDataset("cpu")
    return catalog


def test_score_pipeline_scores_a_folder_and_reports_bad_files(bundle_dir, new_images, tmp_path):
    params = {"input": str(new_images), "batch_size": 4, "explain": "rejected", "overlays": True, "progress": False}
    (tmp_path / "overlays").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "overlays" / "stale_from_last_run.png")
    catalog = project_catalog(tmp_path, bundle_dir, params)
    SequentialRunner().run(create_pipeline([]), catalog)

    table = catalog.load("inspection")
    (run,) = set(table["run"])
    assert RUN_ID.match(run) and (tmp_path / "inspection" / f"run={run}" / "part-0.parquet").is_file()
    expected = sorted(p.relative_to(new_images).as_posix() for p in new_images.rglob("*.png"))
    assert table["image"].tolist() == expected
    errors = table.set_index("image").loc[["unreadable.png", "truncated.png", "gray.png", "wrong_size.png"]]
    assert (errors["decision"] == "error").all() and (errors["status"] == "error").all()
    assert errors["score"].isna().all()
    assert "unreadable or truncated" in errors.loc["unreadable.png", "error"]
    assert "unreadable or truncated" in errors.loc["truncated.png", "error"]
    assert "gray image but the bundle was trained on rgb" in errors.loc["gray.png", "error"]
    assert "wrong size 40x64" in errors.loc["wrong_size.png", "error"]

    scored = table[table["status"] == "ok"]
    assert len(scored) == len(table) - 4 and scored["score"].notna().all()
    threshold = table["threshold"].iloc[0]
    assert (scored["decision"] == np.where(scored["score"] >= threshold, "reject", "accept")).all()
    # explanations exist exactly for rejected rows and add up to the score
    rejected = scored[scored["decision"] == "reject"]
    accepted = scored[scored["decision"] == "accept"]
    assert len(rejected) > 0
    contrib = [c for c in table.columns if c.startswith("contrib_seg")] + ["contrib_global", "contrib_bias"]
    np.testing.assert_allclose(rejected[contrib].sum(axis=1), rejected["score"], atol=1e-4)
    np.testing.assert_allclose(rejected["contrib_det_padim"] + rejected["contrib_bias"], rejected["score"], atol=1e-4)
    assert accepted[contrib].isna().all().all()
    assert (rejected["top_segment"] >= -1).all() and (accepted["top_segment"] == -1).all()
    # one overlay per rejected part, in the run's folder; the user's own picture is left as it was
    overlays = sorted(p.name for p in (tmp_path / "overlays" / f"run={run}").glob("*.png"))
    assert overlays == sorted(rejected["overlay"])
    assert (tmp_path / "overlays" / "stale_from_last_run.png").is_file()
    picture = np.asarray(Image.open(tmp_path / "overlays" / f"run={run}" / overlays[0]))
    assert picture.shape == (SIZE + TITLE_HEIGHT, 2 * SIZE, 3)
    assert table["bundle_id"].nunique() == 1
    index = catalog.load("score_runs")
    assert index[["run", "images", "accepted", "rejected", "errors"]].values.tolist() == [
        [run, len(table), len(accepted), len(rejected), 4]
    ]
    assert index["input"].item() == str(new_images)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_score_run_keeps_every_row_of_the_first(bundle_dir, new_images, tmp_path):
    params = {"input": str(new_images), "batch_size": 4, "explain": "none", "overlays": True, "progress": False}
    SequentialRunner().run(create_pipeline([]), project_catalog(tmp_path, bundle_dir, params))
    first = _files(tmp_path)
    SequentialRunner().run(create_pipeline([]), project_catalog(tmp_path, bundle_dir, params))

    assert {k: v for k, v in _files(tmp_path).items() if k in first} == first  # nothing of run 1 replaced
    catalog = project_catalog(tmp_path, bundle_dir, params)
    table, index = catalog.load("inspection"), catalog.load("score_runs")
    n_images = len(list(new_images.rglob("*.png")))
    assert len(index) == 2 and index["run"].is_unique and (index["images"] == n_images).all()
    assert table.groupby("run").size().to_dict() == dict.fromkeys(index["run"], n_images)
    assert len({p.parent.name for p in (tmp_path / "overlays").rglob("*.png")}) == 2


def test_score_needs_an_input_folder(bundle_dir, tmp_path):
    with pytest.raises(ValueError, match="score.input"):
        SequentialRunner().run(create_pipeline([]), project_catalog(tmp_path, bundle_dir, {"input": None}))
