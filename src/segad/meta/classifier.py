"""Optional supervised classifier g(I): a pretrained CNN fine-tuned on good and bad training images.

The paper fine-tunes a Wide ResNet50 on 80 % of the full training set (good and bad images) and
adds its image score to the SegAD feature vector. Here the backbone is any timm CNN whose weights
come through the detectors' mechanism (`segad.storage.weights`: ``hub``, a file, or
``packaged:efficientnet_lite0``, the only ImageNet CNN available offline); the classification
head is a fresh single logit. Training: binary cross-entropy with ``pos_weight = n_good / n_bad``,
Adam, no augmentation, images resized to ``image_size``; seeded per split seed. The score is the
raw logit (higher = more anomalous; not a calibrated probability). Random weights are never used
silently: ``pretrained: false`` must be set to get them.

Two training modes (``mode``):

- ``frozen``: the stem and the first ``frozen_blocks`` blocks keep their ImageNet weights and
  batch-norm statistics (eval mode, no gradients). Their output is computed once per image per
  run (`segad.meta.classifier_stem.ActivationCache`, in memory, keyed by the file's SHA-256, shared by all split seeds and
  by scoring) and only the remaining blocks, the head convolution and the logit are trained on
  it. Without augmentation this is the same function of the image as running the whole network.
- ``full``: every layer is fine-tuned and each step reads and runs the full network on its batch.

Which images train it and which model scores each row (the paper's protocol or cross-fitting):
`segad.meta.classifier_protocol`.

Example:
    >>> from segad.meta.classifier import ClassifierConfig, fit_classifier, predict_scores
    >>> cfg = ClassifierConfig(enabled=True, epochs=1, max_steps=2, batch_size=4)
    >>> model = fit_classifier(paths, labels, cfg, image_size=64, seed=0)   # doctest: +SKIP
    >>> predict_scores(model, paths, image_size=64).shape                    # doctest: +SKIP
    (8,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, cast

import numpy as np
import pandas as pd
from pydantic import Field
from pydantic.dataclasses import dataclass

from segad.config import PARAMS
from segad.meta.classifier_stem import ActivationCache, load_batch
from segad.schemas import ClassifierScores
from segad.storage.images import SizeLike
from segad.vocabulary import Backend


@dataclass(config=PARAMS)
class ClassifierConfig:
    """Settings of the supervised classifier (conf/base/parameters_classifier.yml, `classifier`).

    mode: ``frozen`` (train the tail on cached activations of a frozen stem) or ``full``
    (fine-tune every layer). frozen_blocks: in mode frozen, how many of the backbone's
    ``blocks`` stages stay frozen after the stem (EfficientNet-Lite0 has 7, 0 to 7 allowed; 6
    leaves the last stage, 192 -> 320 channels at 1/32 resolution, plus head convolution and
    logit to train, 13 % of the network's FLOPs; 5 also the 112 -> 192 stage, 37 %);
    mode frozen needs an EfficientNet-style timm backbone and pretrained weights. The other
    fields apply to both modes. Measured speed and AUROC of the modes: docs/journal.md,
    "Classifier speed". cross_fit_folds: 0 (the paper's protocol) or K >= 2 (out-of-fold scores
    for the BRF's training rows; `segad.meta.classifier_protocol`). backend: how a frozen-mode
    stem runs on CPU (`segad.storage.backends`; eager on CUDA and in mode full); activations
    equal eager within the backends' tolerance, checked on the first batch of each run.
    """

    enabled: bool = True
    backbone: str = "tf_efficientnet_lite0"
    weights: str = "packaged:efficientnet_lite0"
    pretrained: bool = True
    train_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    epochs: Annotated[int, Field(ge=1)] = 5
    batch_size: Annotated[int, Field(ge=1)] = 16
    learning_rate: Annotated[float, Field(gt=0.0)] = 3e-4
    max_steps: Annotated[int, Field(ge=1)] | None = None
    #: the backbone cache (a run: ``<data_root>/06_models/backbones``); None: `segad.storage.weights.backbone_cache()`
    cache_dir: str | None = None
    mode: Literal["frozen", "full"] = "frozen"
    frozen_blocks: Annotated[int, Field(ge=0, le=7)] = 6
    cross_fit_folds: Annotated[int, Field(ge=0)] = 3
    backend: Backend = "openvino"

    def __post_init__(self) -> None:
        if self.cross_fit_folds == 1:
            raise ValueError("classifier.cross_fit_folds must be 0 (the paper's protocol) or at least 2, got 1")
        if self.mode == "frozen" and not self.pretrained:
            raise ValueError("classifier.mode 'frozen' needs pretrained weights (pretrained: true)")


def empty_scores() -> pd.DataFrame:
    """`classifier_scores` with its columns and no rows (classifier disabled; `segad.schemas.ClassifierScores`)."""
    return ClassifierScores.empty()


def build_model(config: ClassifierConfig):
    """timm CNN with a single-logit head and the configured pretrained weights.

    Returns a `torch.nn.Module` taking float (B, 3, H, W) images in [0, 1] (it normalises them with
    the backbone's own mean/std) and giving logits (B, 1); the timm network is its `.net`. With
    ``mode: frozen`` it also has `.stem(x)` (normalisation, stem and the first `frozen_blocks`
    blocks: no gradients, always in eval mode, so batch norm keeps ImageNet's statistics),
    `.tail(h)` (the rest, an `nn.Module` sharing the network's layers) and `.stem_key` (what the
    stem's output depends on besides the image); forward is ``tail(stem(x))``.
    """
    import timm
    import torch

    from segad.storage.weights import WeightsSource, backbone_cache, prepare_backbone, weights_fingerprint

    source = WeightsSource.parse(config.weights)
    backbone, pretrained = prepare_backbone(
        source, config.backbone, config.pretrained, config.cache_dir or backbone_cache()
    )
    net = timm.create_model(backbone, pretrained=pretrained, num_classes=1)
    pretrained_cfg = cast(dict, net.pretrained_cfg)
    mean = torch.tensor(pretrained_cfg.get("mean", (0.485, 0.456, 0.406)), dtype=torch.float32)
    std = torch.tensor(pretrained_cfg.get("std", (0.229, 0.224, 0.225)), dtype=torch.float32)
    frozen = config.frozen_blocks if config.mode == "frozen" else None
    blocks = cast(torch.nn.Sequential, getattr(net, "blocks", torch.nn.Sequential()))
    if frozen is not None:
        missing = [n for n in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool") if not hasattr(net, n)]
        if missing or frozen > len(blocks):
            raise ValueError(
                f"classifier.mode 'frozen' needs an EfficientNet-style timm backbone (conv_stem, "
                f"bn1, blocks, conv_head, bn2) with at least frozen_blocks={frozen} blocks; "
                f"{config.backbone} lacks {missing or 'enough blocks'} (use mode: full)"
            )

    class Tail(torch.nn.Module):
        """The trained part of a frozen-mode model: blocks[frozen:], head convolution, pooling, logit."""

        def __init__(self, k: int) -> None:
            super().__init__()
            self.blocks = cast(torch.nn.Sequential, blocks[k:])
            self.head = torch.nn.Sequential(
                cast(torch.nn.Module, net.conv_head),
                cast(torch.nn.Module, net.bn2),
                cast(torch.nn.Module, net.global_pool),
                cast(torch.nn.Module, cast(Any, net).get_classifier()),
            )

        def forward(self, h):
            return self.head(self.blocks(h))

    class Normalised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", mean.view(1, 3, 1, 1))
            self.register_buffer("std", std.view(1, 3, 1, 1))
            self.frozen_blocks = frozen
            self.stem_key = f"{backbone}|{weights_fingerprint(source, pretrained)}|{frozen}"
            if frozen is not None:
                object.__setattr__(self, "tail", Tail(frozen))  # not registered: no duplicate state keys
                for module in self.stem_modules():
                    module.requires_grad_(False)
                    module.eval()

        def stem_modules(self) -> list:
            return [net.conv_stem, net.bn1, *blocks[: self.frozen_blocks]] if self.frozen_blocks is not None else []

        def stem(self, x):
            h = cast(torch.nn.Module, net.bn1)(cast(torch.nn.Module, net.conv_stem)((x - self.mean) / self.std))
            return blocks[: self.frozen_blocks](h)

        def train(self, mode: bool = True):
            super().train(mode)
            for module in self.stem_modules():
                module.eval()
            return self

        def forward(self, x):
            if self.frozen_blocks is None:
                return self.net((x - self.mean) / self.std)
            return self.tail(self.stem(x))

    return Normalised()


def fit_classifier(
    paths: Sequence[str],
    labels: Sequence[int],
    config: ClassifierConfig,
    image_size: SizeLike,
    seed: int,
    device: str = "cpu",
    cache: ActivationCache | None = None,
):
    """Train `build_model(config)` on images (paths) with labels 0 good / 1 bad; returns the model.

    ``mode: full`` fine-tunes every layer, reading the images at every step; ``mode: frozen``
    passes each image through the frozen stem once (through `cache`, a new one if None) and
    trains the tail on those activations.
    """
    import torch

    y_all = np.asarray(labels, dtype=np.int64)
    n_bad, n_good = int(y_all.sum()), int((y_all == 0).sum())
    if n_bad == 0 or n_good == 0:
        raise ValueError(
            f"classifier training needs good and bad images, got {n_good} good and {n_bad} bad "
            "(set classifier.enabled=false for a regime without bad training images)"
        )
    torch.manual_seed(seed)
    model = build_model(config).to(device)
    if model.frozen_blocks is not None:
        cache = cache if cache is not None else ActivationCache(config.batch_size)
        inputs = cache.activations(model, paths, image_size, device)
        forward = model.tail

        def batch_of(chosen):
            return inputs[torch.from_numpy(chosen)]
    else:
        forward = model

        def batch_of(chosen):
            return load_batch([paths[i] for i in chosen], image_size).to(device)

    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(n_good / n_bad, device=device))
    from segad.logs import progress

    rng = np.random.default_rng(seed)
    steps = 0
    per_epoch = -(-len(paths) // config.batch_size)
    total = per_epoch * config.epochs if config.max_steps is None else min(config.max_steps, per_epoch * config.epochs)
    bar = progress(total=total, desc=f"classifier (seed {seed})", unit="step", leave=False)
    for _ in range(config.epochs):
        order = rng.permutation(len(paths))
        for start in range(0, len(order), config.batch_size):
            if config.max_steps is not None and steps >= config.max_steps:
                break
            chosen = order[start : start + config.batch_size]
            if len(chosen) < 2:  # batch norm cannot train on one image: a last batch of one is skipped
                continue
            x = batch_of(chosen)
            y = torch.from_numpy(y_all[chosen].astype(np.float32)).to(device)
            optimiser.zero_grad()
            loss = loss_fn(forward(x)[:, 0], y)
            loss.backward()
            optimiser.step()
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.steps = steps
    if model.frozen_blocks is not None:
        batches = (inputs[start : start + config.batch_size] for start in range(0, len(paths), config.batch_size))
        _recalibrate_norm_statistics(model.tail, batches, device)
    else:
        batches = (
            load_batch(paths[start : start + config.batch_size], image_size).to(device)
            for start in range(0, len(paths), config.batch_size)
        )
        _recalibrate_norm_statistics(model, batches, device)
    model.eval()
    return model


def _recalibrate_norm_statistics(module, batches, device: str) -> None:
    """Re-estimate the batch-norm running statistics of `module` on the training inputs (one no-grad pass).

    Training normalises with batch statistics, but eval mode uses running averages that move
    slowly (timm's TF-ported EfficientNets use momentum 0.01) and still hold ImageNet's after a
    few hundred steps; the logits at test time then come from other activations than the ones
    the head was fitted on. Measured on the dark-vs-bright 64 px images of the tests: AUROC 0.52
    without this pass, 1.0 with it. In frozen mode `module` is the tail: the stem keeps ImageNet's.
    """
    import torch
    from torch.optim.swa_utils import update_bn

    update_bn((b for b in batches if len(b) > 1), module, device=torch.device(device))  # one image: no batch statistics


def predict_scores(
    model,
    paths: Sequence[str],
    image_size: SizeLike,
    batch_size: int = 32,
    device: str = "cpu",
    cache: ActivationCache | None = None,
) -> np.ndarray:
    """Raw logits float64 (N,) of the classifier (higher = more anomalous); a frozen-mode model reads `cache`."""
    import torch

    out = []
    model.eval()
    staged = cache is not None and getattr(model, "frozen_blocks", None) is not None
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            if staged:
                logits = model.tail(cast(ActivationCache, cache).activations(model, chunk, image_size, device))
            else:
                logits = model(load_batch(chunk, image_size).to(device))
            out.append(logits[:, 0].double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)
