"""Raw anomaly maps from a fitted detector: one batch (`predict_maps`) or a list of image files.

Separate from fitting so that production scoring (`segad.production.batch`) and the bundle
load and run detectors without the training code. Maps are ``model(x)`` on float images in
[0, 1] at the detector's image_size: ``(B, H, W)`` raw scores, higher = more anomalous.

``backend`` (eager | openvino | onnxruntime) picks how a CPU model runs: the converted backends
(`segad.storage.backends`) run the model with lean heads (`segad.detection.lean`) and give the
same maps within `segad.storage.backends.TOLERANCE` x the map range; a model on CUDA always runs
eager. Several detectors on one backbone share a pass in `segad.detection.shared`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from segad.storage.images import ImageSize, SizeLike, read_image


class ImageFiles(torch.utils.data.Dataset):
    """Images read with `segad.storage.images.read_image` as float32 (3, H, W) in [0, 1], with their index."""

    def __init__(self, paths: Sequence[str | Path], image_size: SizeLike) -> None:
        self.paths = [str(p) for p in paths]
        self.image_size = ImageSize.parse(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, torch.from_numpy(read_image(self.paths[index], self.image_size))


def predict_maps(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    amp: bool = False,
    backend: str = "eager",
    cache_key: str | None = None,
    cache_root: str | Path | None = None,
) -> np.ndarray:
    """Raw anomaly maps of a batch.

    Args:
        model: a fitted detector (`fit_detector` / `load_detector`).
        images: float32 (B, 3, H, W) in [0, 1], (H, W) = the detector's image_size.
        amp: float16 autocast on CUDA (ignored on CPU).
        backend: eager | openvino | onnxruntime (CPU only; `segad.storage.backends`).
        cache_key: the detector's model_key, naming its cached converted model (default: a
            content hash of the model's tensors).
        cache_root: folder of converted models (default: ``segad-backends`` in the temp dir).

    Returns:
        float32 (B, H, W): raw scores, higher = more anomalous (no normalisation).
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(x.shape)}")
    if backend != "eager" and device.type == "cpu":
        from segad.detection.lean import LeanMapModule
        from segad.storage.backends import compiled_detector

        compiled = compiled_detector(model, backend, ImageSize(*x.shape[-2:]), cache_key, cache_root, LeanMapModule)
        maps = torch.from_numpy(compiled(x.numpy()))
        if maps.shape[-2:] != x.shape[-2:]:
            maps = torch.nn.functional.interpolate(
                maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False
            )[:, 0]
        return maps.float().numpy()
    x = x.to(device, non_blocking=True)
    model.eval()
    autocast = (
        torch.autocast("cuda", dtype=torch.float16) if amp and device.type == "cuda" else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        output = model(x)
    anomaly_map = output.anomaly_map
    if anomaly_map.ndim == 4:
        anomaly_map = anomaly_map[:, 0]
    if anomaly_map.shape[-2:] != x.shape[-2:]:
        anomaly_map = torch.nn.functional.interpolate(
            anomaly_map[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
    return anomaly_map.float().cpu().numpy()


def iter_maps(
    model: torch.nn.Module,
    paths: Sequence[str | Path],
    image_size: SizeLike,
    batch_size: int = 16,
    num_workers: int = 0,
    amp: bool = False,
    progress: str | None = None,
    channels_last: bool = False,
    backend: str = "eager",
    cache_key: str | None = None,
    cache_root: str | Path | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index into paths, float32 (H, W) map)``, (H, W) = ``image_size``; images are
    decoded in DataLoader workers.

    A progress bar (segad.logs.progress) named ``progress`` shows images/s when given. With ``channels_last`` on CPU the
    model is switched to channels_last memory format first (same maps up to float rounding;
    measured 1.4x faster for EfficientNet-Lite0 PatchCore, 0.75x for PaDiM: docs/anomaly_maps.md).
    ``backend``, ``cache_key``, ``cache_root``: as in `predict_maps` (docs/journal.md).
    """
    from segad.logs import progress as progress_bar

    device = next(model.parameters()).device
    if backend != "eager":
        from segad.storage.backends import check_backend

        check_backend(backend)  # a missing package fails before any image is decoded
    if device.type == "cpu" and channels_last and backend == "eager":
        model.to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, image_size),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    bar = progress_bar(total=len(paths), desc=progress or "", unit="img", disable=progress is None, smoothing=0.1)
    try:
        for indices, images in loader:
            maps = predict_maps(model, images, amp=amp, backend=backend, cache_key=cache_key, cache_root=cache_root)
            yield from zip(indices.tolist(), maps, strict=True)
            bar.update(len(indices))
    finally:
        bar.close()
