"""Several detectors' maps from one backbone pass.

PatchCore and PaDiM on the same backbone, weights, layers and pre-processing compute the same
features; run one after the other, each image goes through the backbone once per detector.
`SharedMaps` runs the pre-processor and the backbone once and hands the features to each
detector's own anomalib torch model, in a copy whose ``feature_extractor`` is `ProvidedFeatures`
(the features of the current batch) and whose blur is lean (`segad.detection.lean`): everything
after the features is the anomalib model's own code. `detector_maps` groups a bundle's detectors
that can share a pass (`shared_groups`) and runs each group as one converted module
(`segad.storage.backends`); `prepare_maps` converts them ahead of the first image. Every map a
shared module returns is checked against the detector's own eager map on the first batch in each
process: within `segad.storage.backends.TOLERANCE` x the map range, else
`segad.storage.backends.BackendMismatchError`.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segad.detection.lean import LeanMapModule, lean_copy
from segad.storage.backends import (
    BackendError,
    Runner,
    check_backend,
    check_close,
    compiled_detector,
    converted_path,
    eager_maps,
    runner,
)

#: detectors whose torch model reads its features once, from ``feature_extractor(pre-processed image)``
SHAREABLE = ("patchcore", "padim")


class ProvidedFeatures(torch.nn.Module):
    """Stands in for a detector's feature extractor: returns its layers of the batch's shared features."""

    def __init__(self, layers: Sequence[str]) -> None:
        super().__init__()
        self.layers = list(layers)
        self.features: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {layer: self.features[layer] for layer in self.layers}


class SharedMaps(torch.nn.Module):
    """float32 (B, 3, H, W) images in [0, 1] -> raw maps (B, D, H, W) of D detectors, one backbone pass.

    Args:
        models: fitted anomalib modules that `can_share` (same pre-processing and feature extractor
            weights); the extractor of the one whose layers cover all others' is run.
    """

    def __init__(self, models: Sequence[Any]) -> None:
        super().__init__()
        extractors: list[Any] = [m.model.feature_extractor for m in models]
        wanted = set().union(*(e.layers for e in extractors))
        owner = next((e for e in extractors if wanted <= set(e.layers)), None)
        if owner is None:
            raise ValueError(f"no detector's feature extractor computes every layer of {sorted(wanted)}")
        self.pre_processor: Any = models[0].pre_processor
        self.feature_extractor: Any = owner
        self.provided = [ProvidedFeatures(e.layers) for e in extractors]
        self.heads = torch.nn.ModuleList(lean_copy(m.model, p) for m, p in zip(models, self.provided))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_processor is not None:
            x = self.pre_processor(x)
        with torch.no_grad():
            features = self.feature_extractor(x)
        maps = []
        for provided, head in zip(self.provided, self.heads):
            provided.features = features
            anomaly_map = head(x).anomaly_map
            maps.append(anomaly_map if anomaly_map.ndim == 4 else anomaly_map[:, None])
            provided.features = {}
        return torch.cat(maps, 1)


_KEYS: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


def _sharing_key(detector: Any) -> str:
    """What two detectors must agree on to share a pass: pre-processing, extractor class, layers'
    backbone and every extractor tensor (hex digest; computed once per model object)."""
    if detector in _KEYS:
        return _KEYS[detector]
    extractor: Any = detector.model.feature_extractor
    digest = hashlib.sha256(repr(getattr(detector, "pre_processor", None)).encode())
    digest.update(f"{type(extractor).__qualname__}:{getattr(extractor, 'backbone', '')}".encode())
    for name, tensor in sorted(extractor.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    _KEYS[detector] = digest.hexdigest()
    return _KEYS[detector]


def shared_groups(models: Mapping[str, torch.nn.Module], names: Sequence[str]) -> list[list[str]]:
    """`names` in groups that can share one pass, in their order: each `SHAREABLE` detector with
    the others of the same `_sharing_key` and device; every other detector alone.

    Example: patchcore and padim on one packaged EfficientNet-Lite0 -> [["patchcore", "padim"]]."""
    groups: dict[str, list[str]] = {}
    for name in names:
        model = models[name]
        inner = getattr(model, "model", None)
        if name in SHAREABLE and hasattr(inner, "feature_extractor"):
            device = next(model.parameters()).device
            groups.setdefault(f"{device}:{_sharing_key(model)}", []).append(name)
        else:
            groups[f"alone:{name}"] = [name]
    return list(groups.values())


class _Shared:
    """A group's `SharedMaps` converted to a backend, checked against each detector's eager map once."""

    def __init__(self, models: Sequence[torch.nn.Module], backend: str, cache_root: str | Path | None) -> None:
        if check_backend(backend) == "eager":
            raise BackendError("a shared pass runs converted; eager runs each detector itself (predict_maps)")
        self.models = [weakref.ref(m) for m in models]
        self.module = SharedMaps(models).eval()
        self.backend = backend
        self.cache_root = cache_root
        self.runners: dict[tuple[int, int], Runner] = {}
        self.verified = False

    def prepare(self, height: int, width: int) -> Runner:
        """The converted module for (height, width) images (converted once, or loaded from the cache)."""
        if (height, width) not in self.runners:
            path = converted_path(self.module, self.backend, (height, width), "shared", self.cache_root, wrap=_same)
            self.runners[(height, width)] = runner(path, self.backend, torch.get_num_threads())
        return self.runners[(height, width)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        maps = self.prepare(*x.shape[-2:])(x)
        if not self.verified:
            for k, ref in enumerate(self.models):
                model = ref()
                if model is not None:
                    what = f"shared backbone pass ({self.backend}): detector {k} maps"
                    check_close(maps[:1, k], eager_maps(model, x[:1]), what, "use backend: eager")
            self.verified = True
        return maps


def _same(module: torch.nn.Module) -> torch.nn.Module:
    return module


_SHARED: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, _Shared]] = weakref.WeakKeyDictionary()


def shared_module(models: Sequence[torch.nn.Module], backend: str, cache_root: str | Path | None = None) -> _Shared:
    """The group's shared pass on `backend` (built, converted and cached once per process)."""
    per_first = _SHARED.setdefault(models[0], {})
    key = (tuple(id(m) for m in models), backend)
    entry = per_first.get(key)
    if entry is None or any(ref() is not model for ref, model in zip(entry.models, models)):  # an id reused
        entry = per_first[key] = _Shared(models, backend, cache_root)
    return entry


def _one_pass(models: Mapping[str, torch.nn.Module], group: Sequence[str], backend: str) -> bool:
    """Whether `group` (one of `shared_groups`) runs as one converted `SharedMaps` on `backend`."""
    return len(group) >= 2 and backend != "eager" and next(models[group[0]].parameters()).is_cpu


def prepare_maps(
    models: Mapping[str, torch.nn.Module],
    names: Sequence[str],
    backend: str,
    height: int,
    width: int,
    cache_root: str | Path,
) -> None:
    """Convert (or load the converted) modules `detector_maps` will run for (height, width) images
    on `backend`, kept under `cache_root` (the resident scorer keeps them beside its bundle)."""
    for group in shared_groups(models, names):
        if _one_pass(models, group, backend):
            shared_module([models[n] for n in group], backend, cache_root).prepare(height, width)
        elif backend != "eager":
            for name in group:
                if next(models[name].parameters()).is_cpu:
                    compiled_detector(models[name], backend, (height, width), name, cache_root, LeanMapModule)


def detector_maps(
    models: Mapping[str, torch.nn.Module],
    names: Sequence[str],
    x: np.ndarray,
    backends: Mapping[str, str] | None = None,
    cache_root: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Raw maps float32 (B, H, W) of each detector in `names` for float32 (B, 3, H, W) images in
    [0, 1]. `backends`: detector -> backend (eager where not given). A `shared_groups` group of two
    or more CPU detectors on one converted backend runs as one converted `SharedMaps`; every other
    detector through `segad.detection.inference.predict_maps` (eager: the detector's own anomalib
    module, the reference every other path is checked against). `cache_root`: where converted
    modules are kept (default: the temp-dir cache of `segad.storage.backends`)."""
    from segad.detection.inference import predict_maps

    backends = backends or {}
    maps: dict[str, np.ndarray] = {}
    for group in shared_groups(models, names):
        chosen = {backends.get(name, "eager") for name in group}
        backend = chosen.pop() if len(chosen) == 1 else "eager"
        if _one_pass(models, group, backend):
            stacked = shared_module([models[n] for n in group], backend, cache_root)(x)
            maps.update({name: stacked[:, k] for k, name in enumerate(group)})
            continue
        for name in group:
            maps[name] = predict_maps(models[name], x, backend=backends.get(name, "eager"), cache_root=cache_root)
    return {name: maps[name] for name in names}
