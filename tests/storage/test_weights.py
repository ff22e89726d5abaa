"""Backbone weights: the packaged EfficientNet-Lite0 mapping, local files, clear errors."""

from __future__ import annotations

import ast
import os
from pathlib import Path, PurePosixPath

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import timm
import torch
import yaml

from segad.storage.weights import (
    BACKBONE_CACHE,
    TEMP_BACKBONE_CACHE,
    WeightsError,
    WeightsSource,
    backbone_cache,
    lukemelas_to_timm_efficientnet,
    packaged_efficientnet_lite0_file,
    packaged_efficientnet_lite0_state_dict,
    prepare_backbone,
    store_backbone_cache,
    weights_fingerprint,
)

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_lite0_maps_onto_timm_with_no_missing_or_unexpected_keys():
    state = packaged_efficientnet_lite0_state_dict()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert len(state) == len(model.state_dict()) == 296
    raw = torch.load(packaged_efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(state["blocks.6.0.conv_pwl.weight"], raw["_blocks.15._project_conv.weight"])
    torch.testing.assert_close(state["blocks.0.0.conv_pw.weight"], raw["_blocks.0._project_conv.weight"])
    torch.testing.assert_close(state["classifier.bias"], raw["_fc.bias"])


def test_mapping_rejects_foreign_keys():
    keys = list(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict())
    with pytest.raises(WeightsError, match="unexpected lukemelas key"):
        lukemelas_to_timm_efficientnet({"_strange.weight": torch.zeros(1)}, keys)


def test_parse():
    assert WeightsSource.parse("hub") == WeightsSource("hub", "hub")
    assert WeightsSource.parse("packaged:efficientnet_lite0").architecture() == "tf_efficientnet_lite0"
    assert WeightsSource.parse("w.pth").kind == "file"
    with pytest.raises(WeightsError, match="unknown packaged"):
        WeightsSource.parse("packaged:resnet50")


def test_packaged_weights_become_a_timm_local_dir_with_the_same_tensors(tmp_path):
    backbone, pretrained = prepare_backbone(
        WeightsSource.parse("packaged:efficientnet_lite0"), "tf_efficientnet_lite0", True, tmp_path
    )
    assert pretrained and backbone.startswith("local-dir:")
    model = timm.create_model(backbone, pretrained=True, features_only=True, out_indices=[1, 2])
    expected = packaged_efficientnet_lite0_state_dict()["conv_stem.weight"]
    torch.testing.assert_close(model.state_dict()["conv_stem.weight"], expected)


def test_packaged_weights_for_another_architecture_fail_clearly(tmp_path):
    with pytest.raises(WeightsError, match="model.backbone to tf_efficientnet_lite0"):
        prepare_backbone(WeightsSource.parse("packaged:efficientnet_lite0"), "resnet18", True, tmp_path)


def test_local_file_weights_are_used(tmp_path):
    torch.manual_seed(3)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    backbone, _ = prepare_backbone(WeightsSource.parse(str(tmp_path / "r18.pth")), "resnet18", True, tmp_path / "c")
    model = timm.create_model(backbone, pretrained=True)
    torch.testing.assert_close(model.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert weights_fingerprint(WeightsSource.parse(str(tmp_path / "r18.pth")), True).startswith("file:")


def test_missing_file_says_how_to_supply_weights(tmp_path):
    with pytest.raises(WeightsError, match="not found.*packaged:efficientnet_lite0"):
        prepare_backbone(WeightsSource.parse(str(tmp_path / "absent.pth")), "resnet18", True, tmp_path)


def test_file_for_the_wrong_architecture_is_refused(tmp_path):
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match="do not fit timm resnet34"):
        prepare_backbone(WeightsSource.parse(str(tmp_path / "r18.pth")), "resnet34", True, tmp_path / "c")


def test_random_weights_only_when_asked():
    assert prepare_backbone(WeightsSource.parse("hub"), "resnet18", False, "/nonexistent") == ("resnet18", False)
    assert weights_fingerprint(WeightsSource.parse("hub"), False) == "random"


def _path_constants(source: str) -> list[tuple[int, str]]:
    """(line, value) of every string constant in the code, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_backbone_cache_is_defined_in_one_place():
    """The detectors (fit, load, Dask tasks, the supervised one), the classifier and bundle loading
    unpack weights into `backbone_cache`: its folder names are written in segad.storage.weights only."""
    names = {BACKBONE_CACHE, TEMP_BACKBONE_CACHE, "_backbones"}
    copies = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "src" / "segad").rglob("*.py"))
        if path.name != "weights.py"
        for line, value in _path_constants(path.read_text())
        if names & set(PurePosixPath(value).parts)
    ]
    assert not copies, f"a backbone cache folder is named again in {copies}: use segad.storage.weights.backbone_cache"
    assert _path_constants('"""the data/06_models/backbones folder"""\nx = "a/backbones"\n') == [(2, "a/backbones")]


def test_a_run_keeps_one_backbone_cache_under_its_data_root(tmp_path):
    """The detector stores (``<data_root>/06_models/<detector>``) and the classifier's ``cache_dir``
    (conf/base/parameters_classifier.yml) share ``<data_root>/06_models/backbones``."""
    models = tmp_path / "06_models"
    assert (
        store_backbone_cache(models / "padim") == store_backbone_cache(models / "patchcore") == backbone_cache(models)
    )
    parameters = yaml.safe_load((ROOT / "conf" / "base" / "parameters_classifier.yml").read_text())
    assert parameters["classifier"]["cache_dir"] == backbone_cache("${globals:data_root}/06_models").as_posix()
    assert backbone_cache().name == TEMP_BACKBONE_CACHE  # no models folder: the system temp dir
