"""Supervised SuperSimpleNet: trained on good images plus a few real bad ones (masks or labels only).

What anomalib 2.7 supports (read from ``anomalib.models.image.supersimplenet``):

- ``Supersimplenet(supervised=True)`` builds the model without the unsupervised stop-gradient
  and with gradient clipping 1 (``trainer_arguments``); ``training_step`` calls
  ``model(images=batch.image, masks=batch.gt_mask, labels=batch.gt_label)`` and the loss
  ``SSNLoss`` = focal + truncated L1 on the map (against the masks, at feature resolution) +
  focal on the image score (against the labels). So a training ``Batch`` needs ``image``,
  ``gt_mask`` (B, H, W) and ``gt_label`` (B,).
- With ``gt_mask=None`` the torch model builds all-zero masks and raises ``RuntimeError``
  ("Training with anomalous samples without GT masks is currently not supported!") as soon as
  a label is 1. Label-only supervision is therefore not possible through anomalib's API.
- No anomalib datamodule feeds bad images to training ("Anomalib currently supports only
  unsupervised learning").

What this module adds, with public classes only: `SupervisedImages` (a torch Dataset of anomalib
``ImageItem``s, good and bad, ``ImageBatch.collate``) and `SupervisedSupersimplenet`, whose
``training_step`` is anomalib's except that label-only bad images are left out of the
segmentation loss (the classification loss sees every label). Maps and scores are raw
(``post_processor=False``): ``anomaly_map`` (B, H, W) and ``pred_score`` as
``SupersimplenetModel`` returns them (sigmoids). Details: docs/anomaly_maps.md.

Example:
    >>> from segad.detection.supervised import fit_supervised
    >>> from segad.detection.supervised_config import SupervisedConfig, TrainImage
    >>> config = SupervisedConfig.from_dict({"model": {"backbone": "tf_efficientnet_lite0",
    ...     "layers": ["blocks.2", "blocks.4"]}, "weights": "packaged:efficientnet_lite0"})
    >>> items = [TrainImage("good.png", 0), TrainImage("bad.png", 1, "bad_mask.png")]
    >>> model = fit_supervised(config, items, image_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segad.detection.fit import quiet_lightning, random_local_dir
from segad.detection.supervised_config import (
    NAME,
    SupervisedConfig,
    SupervisedConfigError,
    TrainImage,
    _uses_mask,
)
from segad.storage.images import ImageSize, SizeLike, read_image, read_mask
from segad.storage.weights import WeightsSource, backbone_cache, prepare_backbone

logger = logging.getLogger(__name__)

# -------------------------------------------------------------------------------- model and data


def _lightning_class() -> type:
    from anomalib.models import Supersimplenet

    return Supersimplenet


def _supervised_class() -> type:
    Supersimplenet: Any = _lightning_class()

    class SupervisedSupersimplenet(Supersimplenet):
        """``Supersimplenet(supervised=True)`` whose training step also takes label-only bad images.

        ``unknown_mask_paths``: image paths whose mask is unknown (label-only bad images). Rows of
        such images (and their feature-noise copies) are left out of the segmentation loss; the
        classification loss uses every row. Without such rows the step is anomalib's own.
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(supervised=True, **kwargs)
            self.unknown_mask_paths: frozenset[str] = frozenset()

        def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
            unknown = torch.tensor(
                [str(p) in self.unknown_mask_paths for p in batch.image_path], device=batch.image.device
            )
            if not bool(unknown.any()):
                return super().training_step(batch, *args, **kwargs)
            pred_map, pred_score, masks, labels = self.model(
                images=batch.image, masks=batch.gt_mask, labels=batch.gt_label
            )
            known = ~torch.cat((unknown, unknown))  # the anomaly generator duplicates the batch
            loss = self.loss.focal_loss(pred_score, labels)
            if bool(known.any()):
                loss = loss + self.loss.focal_loss(pred_map[known], masks[known])
                loss = loss + self.loss.trunc_l1_loss(pred_map[known], masks[known])
            self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True)
            return {"loss": loss}

    return SupervisedSupersimplenet


class SupervisedImages(torch.utils.data.Dataset):
    """Training images as anomalib ``ImageItem`` (image in [0, 1], ``gt_label``, ``gt_mask``).

    A good image has an all-false mask; a bad image its mask file (resized by nearest
    neighbour) when the policy uses it, else an all-false placeholder (its path is then in
    `unknown_mask_paths`, so the loss does not read it).
    """

    def __init__(self, items: Sequence[TrainImage], image_size: SizeLike, masks: str) -> None:
        self.items = list(items)
        self.image_size = ImageSize.parse(image_size)
        self.masks = masks

    @property
    def unknown_mask_paths(self) -> frozenset[str]:
        return frozenset(i.path for i in self.items if int(i.label) == 1 and not _uses_mask(i, self.masks))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        from anomalib.data import ImageItem
        from torchvision.tv_tensors import Image, Mask

        item = self.items[index]
        image = torch.from_numpy(read_image(item.path, self.image_size))
        if _uses_mask(item, self.masks):
            mask = torch.from_numpy(read_mask(str(item.mask_path), self.image_size))
        else:
            mask = torch.zeros(image.shape[-2:], dtype=torch.bool)
        return ImageItem(
            image=Image(image), gt_label=torch.tensor(int(item.label)), gt_mask=Mask(mask), image_path=item.path
        )


def check_training_set(items: Sequence[TrainImage], masks: str) -> None:
    """SupervisedConfigError unless there is a good and a bad image, labels are 0/1 and, under
    ``masks: masks``, every bad image has a mask file."""
    labels = [int(i.label) for i in items]
    if set(labels) - {0, 1}:
        raise SupervisedConfigError(f"{NAME}: labels must be 0 (good) or 1 (bad), got {sorted(set(labels))}")
    if 1 not in labels:
        raise SupervisedConfigError(
            f"{NAME}: no bad image to train on ({len(items)} good). The supervised SuperSimpleNet needs "
            "real bad images in brf_train (benchmarks high_shot, low_shot, visa_supervised, kfold; "
            "not one_class), or use the unsupervised detector supersimplenet"
        )
    if 0 not in labels:
        raise SupervisedConfigError(f"{NAME}: no good image to train on ({len(items)} bad)")
    if masks == "masks":
        lacking = [i.path for i in items if int(i.label) == 1 and i.mask_path is None]
        if lacking:
            raise SupervisedConfigError(
                f"{NAME}: masks: masks, but {len(lacking)} bad images have no mask, e.g. {lacking[:3]}; "
                "use masks: auto or label_only"
            )


def build_supervised(
    config: SupervisedConfig,
    image_size: SizeLike,
    backbone_cache_dir: str | Path | None = None,
    *,
    for_loading: bool = False,
) -> torch.nn.Module:
    """An unfitted `SupervisedSupersimplenet` with offline weights and raw outputs.

    ``for_loading``: a random-weight scaffold (every tensor is then replaced from a saved state).
    """
    import lightning.pytorch as pl

    cache = Path(backbone_cache_dir) if backbone_cache_dir else backbone_cache()
    architecture = config.architecture()
    if for_loading:
        backbone = random_local_dir(architecture, cache)
    else:
        backbone, _ = prepare_backbone(WeightsSource.parse(config.weights), architecture, True, cache / "pretrained")
    model_class: Any = _supervised_class()
    kwargs = dict(config.model, backbone=backbone)
    size = ImageSize.parse(image_size).hw
    kwargs.update(
        pre_processor=model_class.configure_pre_processor(image_size=size),
        post_processor=False,
        evaluator=False,
        visualizer=False,
    )
    pl.seed_everything(config.seed, workers=True, verbose=False)
    return model_class(**kwargs)


def fit_supervised(
    config: SupervisedConfig,
    items: Sequence[TrainImage],
    image_size: SizeLike,
    device: str = "cpu",
    backbone_cache_dir: str | Path | None = None,
) -> torch.nn.Module:
    """Train on good + bad images and return the model in eval mode on ``device``.

    Deterministic per ``config.seed`` (initialisation, shuffling, anomalib's Perlin noise) on CPU.
    Raises SupervisedConfigError when there is no bad (or no good) image.
    """
    import lightning.pytorch as pl
    from anomalib.data import ImageBatch

    check_training_set(items, config.masks)
    n_good = sum(int(i.label) == 0 for i in items)
    bad = [i for i in items if int(i.label) == 1]
    repeat = config.bad_repeat or max(1, n_good // (2 * len(bad)))
    data = SupervisedImages([*(i for i in items if int(i.label) == 0), *bad * repeat], image_size, config.masks)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    model: Any = build_supervised(config, image_size, backbone_cache_dir)
    _check_feature_size(model, image_size)
    model.unknown_mask_paths = data.unknown_mask_paths
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=config.train_batch_size,
        shuffle=True,
        num_workers=config.num_workers,
        collate_fn=ImageBatch.collate,
        generator=torch.Generator().manual_seed(config.seed),
    )
    arguments = {k: v for k, v in model.trainer_arguments.items() if k not in ("devices", "num_sanity_val_steps")}
    arguments.update(config.trainer)
    arguments.setdefault("max_epochs", 1)
    use_cuda = torch_device(device).type == "cuda"
    with tempfile.TemporaryDirectory() as scratch, quiet_lightning():
        trainer = pl.Trainer(
            accelerator="gpu" if use_cuda else "cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=scratch,
            **arguments,
        )
        logger.info(
            "%s: training on %d good + %d bad images (%d label-only, bad x%d per epoch)",
            NAME,
            n_good,
            len(bad),
            len(data.unknown_mask_paths),
            repeat,
        )
        trainer.fit(model, train_dataloaders=loader)
    model.unknown_mask_paths = frozenset()
    model.to(torch_device(device))
    model.eval()
    return model


def _check_feature_size(model: Any, image_size: SizeLike) -> None:
    """anomalib's Perlin noise draws scales up to 32: the feature map must be >= 32 px a side."""
    with torch.no_grad():
        side = min(model.model.feature_extractor(torch.zeros(1, 3, *ImageSize.parse(image_size).hw)).shape[-2:])
    if side < 32:
        raise SupervisedConfigError(
            f"{NAME}: feature map of {side} px at image_size {image_size} (2x the first layer's); anomalib's "
            "Perlin noise needs >= 32: use a larger image_size or an earlier first layer (e.g. blocks.1)"
        )


def torch_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------------------------- prediction


def predict_supervised(model: torch.nn.Module, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(maps float32 (B, H, W), scores float32 (B,))`` of float images (B, 3, H, W) in [0, 1]:
    the model's raw ``anomaly_map`` and ``pred_score``, no normalisation."""
    device = next(model.parameters()).device
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(x.shape)}")
    model.eval()
    with torch.inference_mode():
        output = model(x.to(device))
    anomaly_map = output.anomaly_map
    if anomaly_map.ndim == 4:
        anomaly_map = anomaly_map[:, 0]
    score = output.pred_score.reshape(-1)
    return anomaly_map.float().cpu().numpy(), score.float().cpu().numpy()


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], image_size: SizeLike) -> None:
        self.paths, self.image_size = [str(p) for p in paths], ImageSize.parse(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, torch.from_numpy(read_image(self.paths[index], self.image_size))


def iter_supervised(
    model: torch.nn.Module,
    paths: Sequence[str],
    image_size: SizeLike,
    batch_size: int = 16,
    num_workers: int = 0,
) -> Iterator[tuple[int, np.ndarray, float]]:
    """Yield ``(index into paths, float32 (S, S) map, pred_score)``."""
    loader = torch.utils.data.DataLoader(_Images(paths, image_size), batch_size=batch_size, num_workers=num_workers)
    for indices, images in loader:
        maps, scores = predict_supervised(model, images)
        for i, m, s in zip(indices.tolist(), maps, scores, strict=True):
            yield i, m, float(s)
