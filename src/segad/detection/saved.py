"""Identity and storage of fitted detectors: model_key, save_detector, load_detector.

Everything that decides whether a fitted detector (and its maps) can be reused lives here:
`FORMAT_VERSION`, the `MAP_LIBRARIES` versions and `model_key`. A fitted detector is saved as a
model folder (`segad.storage.persistence.write_model_folder`): ``detector.json`` (its
configuration) and ``state_dict.pt`` (every tensor of the module, reloaded with
``torch.load(weights_only=True)`` and ``load_state_dict(strict=True)`` into a freshly built,
randomly initialised architecture, so reloading downloads nothing and needs no backbone file).

Example:
    >>> from segad.detection.config import DetectorConfig
    >>> from segad.detection.saved import model_key
    >>> len(model_key(DetectorConfig.from_dict("padim", {}), 64, ["b", "a"]))
    16
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from segad.detection.config import DetectorConfig, resolve_device
from segad.detection.fit import build_detector
from segad.storage.images import ImageSize, SizeLike
from segad.storage.persistence import DetectorLoadError, read_model_folder, write_model_folder
from segad.versions import package_versions
from segad.vocabulary import MAP_LIBRARIES

#: Bump when segad's own code changes what a saved detector or a map means (part of model_key).
#: 2: model_key also holds the versions of the libraries that compute the maps.
#: 3: the seed is set right before the model is constructed (PaDiM's channel subset no longer
#:    depends on whether the backbone cache existed), so format-2 PaDiM models are refitted.
#: 4: detector.json and model_key hold every setting (none left out at its default any more);
#:    a saved detector of another format is not loaded (`load_detector`).
FORMAT_VERSION = 4


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


def load_detector(
    directory: str | Path, device: str = "cpu", backbone_cache_dir: str | Path | None = None
) -> tuple[torch.nn.Module, DetectorConfig, ImageSize]:
    """Reload a saved detector: ``(model in eval mode, its config, its ImageSize)``.

    The architecture is rebuilt with random weights (no download, no weights file) and every
    tensor is restored from ``state_dict.pt`` with ``weights_only=True`` and ``strict=True``.
    """
    directory = Path(directory)
    meta, state = read_model_folder(directory)
    if meta.get("format") != FORMAT_VERSION:
        raise DetectorLoadError(
            f"{directory}: saved detector format {meta.get('format')}, this segad reads {FORMAT_VERSION}; fit it again"
        )
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


def _resize_buffers_like(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give empty/placeholder buffers (memory banks, Gaussian stats, quantiles) the saved shapes."""
    for name, buffer in model.named_buffers():
        saved = state.get(name)
        if saved is not None and saved.shape != buffer.shape:
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            module._buffers[leaf] = torch.empty_like(saved)  # noqa: SLF001
