"""Non-square images end to end: `image_size: auto` on a VAD-layout folder of tall 48 x 96 images.

One real `kedro run` of the `segad` chain (ingestion .. bundle, a cheap PaDiM, the default
segmentation: `auto_select`, which must find these banded parts aligned and then choose among one
segment, static and per-image segments out of fold, the classifier g(I)) in a copy of this project's configuration
(tests.conftest.make_project), then the `score` pipeline on a folder of new images. Every stage
must resolve the same size: median aspect 2 (h/w) at about 256 x 256 pixels -> 352 x 192.
PatchCore at non-square sizes is tested in tests/detection (fit, maps, save and reload, backends);
here PaDiM keeps the run cheap: inside a Kedro run, anomalib's greedy coreset at about 256 x 256
pixels grows by tens of MB per selected centre (square sizes too), which a shared test machine
cannot afford.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.runner import SequentialRunner
from PIL import Image

from tests.conftest import PADIM, make_project, only_map_index, run_project, set_parameters

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 48, 96  # on disk (PIL order): tall parts
EXPECTED = (352, 192)  # (height, width) chosen by image_size: auto
COUNTS = {("train", "good"): 12, ("train", "bad"): 6, ("test", "good"): 6, ("test", "bad"): 5}


def write_tall_vad(root: Path) -> Path:
    """A VAD-layout folder of WIDTH x HEIGHT parts: a bright band at the top, a dark one at the
    bottom (so k-means finds segments); bad parts carry a bright square in the middle."""
    rng = np.random.default_rng(0)
    for (split, folder), count in COUNTS.items():
        (root / split / folder).mkdir(parents=True)
        for i in range(count):
            part = rng.normal(120, 8, (HEIGHT, WIDTH, 3))
            part[: HEIGHT // 4] += 80
            part[-HEIGHT // 4 :] -= 80
            if folder == "bad":
                top, left = int(rng.integers(30, 50)), int(rng.integers(8, 24))
                part[top : top + 12, left : left + 12] = 250
            Image.fromarray(np.clip(part, 0, 255).astype(np.uint8)).save(root / split / folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def tall_run(tmp_path_factory):
    """The project after `segad` (ingestion .. bundle) and `score` on the tall parts."""
    root = tmp_path_factory.mktemp("nonsquare")
    parts = write_tall_vad(root / "parts")
    project = make_project(root / "project", parts)
    segmentation = yaml.safe_load((project / "conf" / "base" / "parameters_segmentation.yml").read_text())
    classifier = yaml.safe_load((project / "conf" / "base" / "parameters_classifier.yml").read_text())["classifier"]
    set_parameters(
        project,
        dataset={"layout": "vad", "root": str(parts), "category": None, "on_bad_image": "fail"},
        image_size="auto",
        detectors=["padim"],
        anomaly_maps={"padim": PADIM},
        segmentation={**segmentation["segmentation"], "auto_segments": 3},
        classifier={**classifier, "enabled": True, "max_steps": 4},  # on: it reads (H, W) images too
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        run_project(project, ["segad"], SequentialRunner())
        run_project(project, ["score"], SequentialRunner(), params={"score": {"input": str(parts / "test")}})
    return project, parts


def test_maps_detectors_and_segment_maps_are_height_by_width(tall_run):
    project, _ = tall_run
    index = pd.read_parquet(only_map_index(project, "padim"))
    assert len(index) > 0 and set(zip(index["height"], index["width"])) == {EXPECTED}
    models = (project / "data" / "06_models" / "padim").glob("*/detector.json")
    saved = [json.loads(path.read_text())["image_size"] for path in models]
    assert saved and all(size == list(EXPECTED) for size in saved)


def test_features_are_computed_for_every_role(tall_run):
    project, _ = tall_run
    table = pd.read_parquet(project / "data" / "04_feature" / "features")
    assert set(table["role"]) == {"brf_train", "test"}
    seg_columns = [c for c in table.columns if c.startswith("seg")]
    assert seg_columns and table[[c for c in seg_columns if c.endswith("__mean")]].notna().all().all()
    assert "classifier__score" in table.columns and table["classifier__score"].notna().all()


def test_the_bundle_records_the_size_and_scores_a_folder_at_it(tall_run):
    project, parts = tall_run
    parent = project / "data" / "06_models" / "segad_bundle"
    bundle = parent / (parent / "LATEST").read_text().strip()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["input_spec"]["image_size"] == list(EXPECTED)
    assert manifest["input_spec"]["sizes"] == [[WIDTH, HEIGHT]]
    assert manifest["config"]["parameters"]["image_size"] == list(EXPECTED)  # concrete, not "auto"
    assert np.load(bundle / "segmentation.npy").shape == EXPECTED
    # aligned by construction, constant along the width: the alignment measure must say so
    (maps,) = (project / "data" / "04_feature").glob("dataset=*/segment_maps.npz")
    assert list(json.loads(str(np.load(maps)["meta"]))["alignment"].values()) == [1.0]
    # the bundle ships the segments the features stage chose out of fold, the ones its BRF was fitted on
    evidence = pd.read_parquet(project / "data" / "04_feature" / "segmentation_selection")
    assert sorted(evidence["segmentation"]) == ["auto", "auto_per_image", "single"]
    (chosen,) = evidence.loc[evidence["chosen"], "segmentation"]
    assert manifest["config"]["segmentation_source"].startswith(f"{chosen} (chosen out of fold): ")
    recorded = manifest["config"]["segmentation_selection"]  # the evidence travels with the bundle
    assert [r["segmentation"] for r in recorded] == ["single", "auto", "auto_per_image"]
    assert [r["chosen"] for r in recorded] == list(
        evidence.set_index("segmentation").loc[["single", "auto", "auto_per_image"], "chosen"]
    )

    table = pd.read_parquet(project / "data" / "07_model_output" / "inspection")  # every score run's partition
    incoming = parts / "test"
    assert sorted(table["image"]) == sorted(p.relative_to(incoming).as_posix() for p in incoming.rglob("*.png"))
    assert (table["status"] == "ok").all() and set(table["decision"]) <= {"accept", "reject"}
