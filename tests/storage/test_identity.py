"""segad.storage.identity: the dataset id, and the catalog's ``${dataset_id:}`` folders."""

from __future__ import annotations

import pytest

from segad.config import DatasetConfig, ParameterError, RunConfig
from segad.config_loader import SegadConfigLoader, dataset_id_resolver, use_dataset_id
from segad.settings import CONFIG_LOADER_ARGS
from segad.storage.identity import check_dataset_name, dataset_id, dataset_id_of
from tests.conftest import PROJECT_ROOT


def test_the_id_is_the_layout_and_a_hash_of_the_resolved_root(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    a = dataset_id("demo", tmp_path / "a")
    assert a.startswith("demo-") and len(a) == len("demo-") + 8
    # one folder, however it is written: relative, absolute, with .., through a symlink
    assert {dataset_id("demo", p) for p in ("a", str(tmp_path / "a"), "b/../a", "link")} == {a}
    assert dataset_id("demo", "b") != a  # another root of the same layout
    assert dataset_id("vad", "a") != a and dataset_id("vad", "a").startswith("vad-")
    # layout options change which images and labels are read: another dataset
    assert dataset_id("elpv", None) != dataset_id("elpv", None, options={"include_uncertain": True})
    assert dataset_id("demo", "a", options={}) == a


def test_a_given_name_is_the_id_and_must_be_plain():
    assert dataset_id("vad", "/anywhere", name="line3_caps-2") == "line3_caps-2"
    for bad in ("../elsewhere", "a/b", "", ".hidden", "a b", "dataset=x", "x" * 65, "-x"):
        with pytest.raises(ValueError, match="not a plain name"):
            check_dataset_name(bad)
    with pytest.raises(ValueError, match="shape of an automatic dataset id"):
        check_dataset_name("demo-0123abcd")
    with pytest.raises(ValueError, match="not a plain name"):
        DatasetConfig(layout="demo", name="../x")
    with pytest.raises(ParameterError, match=r"dataset\.name.*not a plain name"):
        RunConfig.from_parameters(
            {
                "dataset": {"layout": "demo", "root": "x", "name": "a/b"},
                "benchmark": "high_shot",
                "seeds": [0],
                "detectors": ["padim"],
                "image_size": 32,
                "anomaly_maps": {"padim": {}},
            }
        )


def test_dataset_config_and_a_plain_block_give_the_same_id(tmp_path):
    block = {"layout": "demo", "root": str(tmp_path), "category": None, "on_bad_image": "fail", "options": {}}
    assert DatasetConfig(**block).id == dataset_id_of(block) == dataset_id("demo", tmp_path)
    assert DatasetConfig(**{**block, "name": "mine"}).id == dataset_id_of({**block, "name": "mine"}) == "mine"


def _catalog_paths(root: str | None, name: str | None = None) -> dict[str, str]:
    """Every catalog entry's path in a session whose dataset.root (and name) are these --params."""
    runtime = {"dataset": {"root": root, **({"name": name} if name else {})}}
    use_dataset_id(None)  # only the loader's own parameters decide
    loader = SegadConfigLoader(str(PROJECT_ROOT / "conf"), runtime_params=runtime, **CONFIG_LOADER_ARGS)
    paths = {}
    for entry, body in loader["catalog"].items():
        for key in ("filepath", "path", "labels_folder"):
            if isinstance(body, dict) and key in body:
                paths[f"{entry}.{key}"] = str(body[key])
    return paths


def test_every_single_file_table_of_a_dataset_lies_in_its_dataset_folder(tmp_path):
    a, b = _catalog_paths(str(tmp_path / "a")), _catalog_paths(str(tmp_path / "b"))
    ident = dataset_id("demo", tmp_path / "a")
    keyed = {key for key in a if a[key] != b[key]}
    assert keyed == {
        "image_index.filepath",
        "splits.filepath",
        "ingestion_problems.filepath",
        "synthetic_index.filepath",
        "synthetic_images.path",
        "{detector}.map_index.filepath",
        "segment_maps.filepath",
        "segmentation_overlays.filepath",
        "classifier_scores.filepath",
        "evaluation.test_scores.filepath",
    }
    assert all(f"/dataset={ident}/" in a[key] + "/" for key in keyed)
    assert a["image_index.filepath"] == f"data/02_intermediate/dataset={ident}/image_index.parquet"
    # partitioned tables carry the id in their partitions; content-keyed caches and latest-run reports are shared
    assert a["features.path"] == b["features.path"] and a["{detector}.map_store.path"] == b["{detector}.map_store.path"]
    named = _catalog_paths(str(tmp_path / "a"), name="line3")
    assert named["splits.filepath"] == "data/02_intermediate/dataset=line3/splits.parquet"


def test_a_bad_name_stops_the_catalog_and_a_bare_loader_needs_an_id(tmp_path):
    with pytest.raises(ValueError, match="dataset.name.*not a plain name"):
        _catalog_paths(str(tmp_path), name="../up")
    use_dataset_id(None)
    with pytest.raises(RuntimeError, match="outside segad's config loader"):
        dataset_id_resolver()
