"""Backbone weights: the packaged EfficientNet-Lite0 mapping, local files, clear errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import timm
import torch

from segad.storage.weights import (
    WeightsError,
    WeightsSource,
    lukemelas_to_timm_efficientnet,
    packaged_efficientnet_lite0_file,
    packaged_efficientnet_lite0_state_dict,
    prepare_backbone,
    weights_fingerprint,
)


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
