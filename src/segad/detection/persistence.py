"""Identity and storage of fitted detectors: model_key, save_detector, load_detector.

Everything that decides whether a fitted detector (and its maps) can be reused lives here:
`FORMAT_VERSION`, the `MAP_LIBRARIES` versions, image `content_hash` and `model_key`, plus the
on-disk format. A fitted detector is saved as a folder: ``detector.json`` (its configuration) and
``state_dict.pt`` (every tensor of the module, reloaded with ``torch.load(weights_only=True)``
and ``load_state_dict(strict=True)`` into a freshly built, randomly initialised architecture, so
reloading downloads nothing and needs no backbone file).

Example:
    >>> from segad.detection.config import DetectorConfig
    >>> from segad.detection.persistence import model_key
    >>> len(model_key(DetectorConfig.from_dict("padim", {}), 64, ["b", "a"]))
    16
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from segad.detection.config import DetectorConfig, resolve_device
from segad.detection.fit import build_detector
from segad.files import check_owned, file_sha256, replace_folder, staging_folder
from segad.images import ImageReadError, ImageSize, SizeLike
from segad.versions import package_versions

#: Bump when segad's own code changes what a saved detector or a map means (part of model_key).
#: 2: model_key also holds the versions of the libraries that compute the maps.
#: 3: the seed is set right before the model is constructed (PaDiM's channel subset no longer
#:    depends on whether the backbone cache existed), so format-2 PaDiM models are refitted.
FORMAT_VERSION = 3
#: Libraries whose exact installed version is part of model_key: a new release may fit or
#: score differently, so its maps are not reused.
MAP_LIBRARIES = ("anomalib", "torch", "torchvision", "timm")


def content_hash(path: str | Path) -> str:
    """32-hex SHA-256 of an image file's bytes: the cache identity of an image."""
    if not Path(path).is_file():
        raise ImageReadError(f"{path}: no such image file")
    return file_sha256(path)[:32]


def library_versions() -> dict[str, str]:
    """Installed versions of `MAP_LIBRARIES` ('missing' when absent)."""
    return package_versions(MAP_LIBRARIES)


def model_key(
    config: DetectorConfig,
    image_size: SizeLike,
    train_hashes: Sequence[str],
    quantile_hashes: Sequence[str] | None = None,
) -> str:
    """16-hex hash of the detector's identity, image size (an int N for N x N, as before non-square
    sizes existed, else [height, width]), training set (content hashes), segad's
    `FORMAT_VERSION` and the `library_versions` that compute the maps; with ``quantile_hashes``
    also the images of EfficientAD's map quantiles (``quantiles_from: brf_train``)."""
    payload = {
        "format": FORMAT_VERSION,
        "libraries": library_versions(),
        "config": config.identity(),
        "image_size": ImageSize.parse(image_size).to_json(),
        "train": sorted(train_hashes),
    }
    if quantile_hashes is not None:
        payload["quantiles"] = sorted(quantile_hashes)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_detector(model: torch.nn.Module, config: DetectorConfig, image_size: SizeLike, directory: str | Path) -> Path:
    """Write ``detector.json`` + ``state_dict.pt`` into ``directory`` atomically (temp dir, rename)."""
    meta = {
        "format": FORMAT_VERSION,
        "detector": config.name,
        "image_size": ImageSize.parse(image_size).to_json(),
        "config": config.to_dict(),
    }
    return write_model_folder(model, meta, directory, "save_detector")


def write_model_folder(model: torch.nn.Module, meta: dict, directory: str | Path, writer: str) -> Path:
    """``state_dict.pt`` of `model` and ``detector.json`` (`meta` + the state's sha256) written
    into a temporary sibling folder, then swapped in for ``directory`` (`segad.files.replace_folder`);
    ``directory`` may only hold a model folder's own files (`segad.files.check_owned`, named by
    `writer`). Nothing is left half-written."""
    directory = Path(directory)
    staging = staging_folder(directory)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, staging / "state_dict.pt")
        meta = {**meta, "state_sha256": file_sha256(staging / "state_dict.pt")}
        (staging / "detector.json").write_text(json.dumps(meta, indent=2, default=str))
        owned = ["detector.json", "state_dict.pt"] if (directory / "detector.json").is_file() else None
        check_owned(directory, owned, writer)
        replace_folder(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


class DetectorLoadError(RuntimeError):
    """A saved detector folder is missing, incomplete or damaged."""


def load_detector(
    directory: str | Path, device: str = "cpu", backbone_cache_dir: str | Path | None = None
) -> tuple[torch.nn.Module, DetectorConfig, ImageSize]:
    """Reload a saved detector: ``(model in eval mode, its config, its ImageSize)``.

    The architecture is rebuilt with random weights (no download, no weights file) and every
    tensor is restored from ``state_dict.pt`` with ``weights_only=True`` and ``strict=True``.
    """
    directory = Path(directory)
    meta, state = read_model_folder(directory)
    try:
        config = DetectorConfig.from_dict(meta["detector"], meta["config"])
        image_size = ImageSize.parse(meta["image_size"])
    except Exception as error:  # noqa: BLE001
        raise DetectorLoadError(f"{directory}: damaged saved detector ({error})") from error
    model = build_detector(config, image_size, backbone_cache_dir, for_loading=True)
    _resize_buffers_like(model, state)
    model.load_state_dict(state, strict=True)
    model.to(resolve_device(device))
    model.eval()
    return model, config, image_size


def read_model_folder(directory: Path, detector: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(``detector.json`` contents, state dict) of a folder `write_model_folder` wrote, loaded with
    ``weights_only``; `DetectorLoadError` naming the folder when a file is missing, the checksum
    does not match, or (with `detector`) it holds another detector."""
    meta_path, state_path = directory / "detector.json", directory / "state_dict.pt"
    if not meta_path.is_file() or not state_path.is_file():
        raise DetectorLoadError(f"{directory}: not a saved detector (needs detector.json and state_dict.pt)")
    try:
        meta = json.loads(meta_path.read_text())
        if detector is not None and meta.get("detector") != detector:
            raise DetectorLoadError(f"{directory}: not a {detector} model (it holds {meta.get('detector')!r})")
        if file_sha256(state_path) != meta["state_sha256"]:
            raise DetectorLoadError(f"{state_path}: checksum mismatch (damaged file)")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except DetectorLoadError:
        raise
    except Exception as error:  # noqa: BLE001
        raise DetectorLoadError(f"{directory}: damaged saved detector ({error})") from error
    return meta, state


def _resize_buffers_like(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give empty/placeholder buffers (memory banks, Gaussian stats, quantiles) the saved shapes."""
    for name, buffer in model.named_buffers():
        saved = state.get(name)
        if saved is not None and saved.shape != buffer.shape:
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            module._buffers[leaf] = torch.empty_like(saved)  # noqa: SLF001
