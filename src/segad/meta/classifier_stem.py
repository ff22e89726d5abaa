"""The frozen stem of a frozen-mode classifier: its activations per image, computed once per run,
eager or on a converted backend.

A frozen-mode model (`segad.meta.classifier.build_model`) keeps its stem and first
``frozen_blocks`` blocks at their ImageNet weights, so their output is a fixed function of the
image. `ActivationCache` holds it per image for a run (all split seeds, training and scoring share
it); ``backend`` openvino | onnxruntime runs the stem converted (`segad.storage.backends`, the
module `_stem_module` builds), checked against eager on its first batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from segad.storage.images import ImageSize, SizeLike


class ActivationCache:
    """Output of a frozen-mode model's stem per image, computed once per run and held in memory.

    Keyed by (SHA-256 of the image file's bytes, image size, the model's `stem_key`): an image
    whose file changes is computed again, one file under two paths once, and a model with other
    weights or `frozen_blocks` never gets another's activations. The stem is fixed pretrained
    weights in eval mode, so every split seed shares the entries. Memory: C x h x w float32 per
    image (EfficientNet-Lite0 at 256 px: frozen_blocks 6, 192 x 8 x 8, 48 KiB; 5, 112 x 16 x 16, 112 KiB). `computed` counts
    the images that went through the stem. ``backend`` (openvino | onnxruntime) runs the stem
    converted on CPU (`segad.storage.backends`), checked against eager on its first batch;
    ``cache_root`` is the folder of converted models (default: the backends' temp-dir cache).
    """

    def __init__(self, batch_size: int = 32, backend: str = "eager", cache_root: str | Path | None = None) -> None:
        self.batch_size = batch_size
        self.backend = backend
        self.cache_root = cache_root
        self.computed = 0
        self._store: dict[tuple[str, ImageSize, str], object] = {}
        self._runners: dict[tuple[str, ImageSize], Any] = {}

    def stem_output(self, model, batch, size: ImageSize, device: str):
        """The stem's output of a float32 (B, 3, H, W) batch: eager, or the converted stem on CPU."""
        import torch

        if self.backend == "eager" or device != "cpu":
            return model.stem(batch.to(device))
        from segad.storage.backends import check_close, converted_path, runner

        if (model.stem_key, size) not in self._runners:
            key = "classifier-stem-" + hashlib.sha256(f"{model.stem_key}|{size.tag()}".encode()).hexdigest()[:16]
            path = converted_path(model, self.backend, size, key=key, cache_root=self.cache_root, wrap=_stem_module)
            run = runner(path, self.backend, torch.get_num_threads())
            what = f"classifier stem activations on {self.backend}"
            check_close(run(batch[:1].numpy()), model.stem(batch[:1]).numpy(), what, "set classifier.backend: eager")
            self._runners[(model.stem_key, size)] = run
        return torch.from_numpy(self._runners[(model.stem_key, size)](batch.numpy()))

    def activations(self, model, paths: Sequence[str], image_size: SizeLike, device: str = "cpu"):
        """(N, C, h, w) tensor on `device`: the stem's output for each path, computed where missing."""
        import torch

        from segad.storage.files import file_sha256

        size = ImageSize.parse(image_size)
        keys = [(file_sha256(p), size, model.stem_key) for p in paths]
        todo = list(dict.fromkeys(k for k in keys if k not in self._store))
        where = dict(zip(keys, paths))
        model.eval()
        with torch.no_grad():
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                out = self.stem_output(model, load_batch([where[k] for k in chunk], size), size, device)
                self._store.update(zip(chunk, out.unbind(0)))
                self.computed += len(chunk)
        if not keys:
            return torch.zeros(0)
        return torch.stack([cast(torch.Tensor, self._store[k]) for k in keys]).to(device)


def _stem_module(model):
    """The frozen stem of a frozen-mode model as a module (what a backend converts): its state is
    the stem's layers and the normalisation only, so the trained tail does not change its key."""
    import torch

    class Stem(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(model.stem_modules())
            self.register_buffer("mean", model.mean)
            self.register_buffer("std", model.std)
            object.__setattr__(self, "model", model)  # not registered: its tail is not converted

        def forward(self, x):
            return self.model.stem(x)

    return Stem()


def load_batch(paths: Sequence[str], image_size: SizeLike):
    """float32 (N, 3, H, W) tensor of the images at `paths`, in [0, 1] at `image_size`."""
    import torch

    from segad.storage.images import read_image

    return torch.from_numpy(np.stack([read_image(p, size=image_size) for p in paths]))
