"""Build and fit anomalib detectors so that they give SegAD *raw* anomaly maps.

SegAD (Baitieva et al., CVPR 2024) reads per-segment statistics (q995, skew, kurtosis, mean) of
*raw* anomaly maps. anomalib's defaults would destroy them: its PostProcessor min-max normalises
and clamps maps with validation statistics, and its datamodules use the test set as validation
set. So every model here is built with ``post_processor=False`` (no evaluator, no visualizer), fitted
with a plain Lightning ``Trainer`` on a data module that holds the detector_train good images
only and no validation loader, and EfficientAD's map quantiles (its only "validation" statistic)
are computed on those same training images. Building (weights, EfficientAD's local folders) and
fitting share this module because fitting is the only caller that needs real weights.

Example (offline, tiny and cheap):
    >>> import numpy as np
    >>> from segad.detection.config import DetectorConfig
    >>> from segad.detection.fit import fit_detector
    >>> from segad.detection.inference import predict_maps
    >>> config = DetectorConfig.from_dict("padim", {
    ...     "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"],
    ...               "n_features": 32},
    ...     "weights": "packaged:efficientnet_lite0"})
    >>> model = fit_detector(config, train_paths, image_size=64)  # doctest: +SKIP
    >>> predict_maps(model, np.zeros((2, 3, 64, 64), np.float32)).shape  # doctest: +SKIP
    (2, 64, 64)
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from segad.detection.config import (
    SPECS,
    DetectorConfig,
    DetectorConfigError,
    DetectorSpec,
    anomalib_class,
    resolve_device,
)
from segad.detection.inference import ImageFiles
from segad.logs import is_terminal
from segad.storage.images import IMAGE_SUFFIXES, ImageSize, SizeLike
from segad.storage.weights import (
    HUB,
    WeightsError,
    WeightsSource,
    backbone_cache,
    hub_hint,
    prepare_backbone,
    read_state_dict,
    write_timm_local_dir,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------- building


def _efficient_ad_class() -> type:
    from anomalib.models import EfficientAd

    class LocalTeacherEfficientAd(EfficientAd):
        """EfficientAd that loads its teacher from a local file (or keeps it random) and never downloads."""

        teacher_file: str | None = None

        def prepare_pretrained_model(self) -> None:
            if self.teacher_file is None:
                logger.warning("efficient_ad: random teacher weights (pretrained: false)")
                return
            state = torch.load(self.teacher_file, map_location=self.device, weights_only=True)
            self.model.teacher.load_state_dict(state)

    return LocalTeacherEfficientAd


def _check_imagenet_dir(path: str | None) -> Path:
    hint = (
        "efficient_ad needs a local ImageNet-style folder for its penalty loss: set the detector's "
        "`imagenet_dir` to a folder laid out as <dir>/<class>/<image>.jpg (e.g. Imagenette from "
        "https://github.com/fastai/imagenette, unpacked); nothing is downloaded at run time"
    )
    if not path:
        raise DetectorConfigError(hint)
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DetectorConfigError(f"{folder}: no such folder. {hint}")
    has_images = any(
        p.suffix.lower() in IMAGE_SUFFIXES for sub in folder.iterdir() if sub.is_dir() for p in sub.iterdir()
    )
    if not has_images:
        raise DetectorConfigError(f"{folder}: no <class>/<image> files inside. {hint}")
    return folder.resolve()


def build_detector(
    config: DetectorConfig,
    image_size: SizeLike,
    backbone_cache_dir: str | Path | None = None,
    *,
    for_loading: bool = False,
) -> torch.nn.Module:
    """An unfitted anomalib model that outputs raw maps of shape (B, 1, height, width).

    Args:
        config: the detector's settings.
        image_size: the input images' and maps' (height, width) in pixels (an int N: N x N); the
            pre-processor resizes to it.
        backbone_cache_dir: where local/packaged weights are unpacked as timm local-dir folders
            (default: `segad.storage.weights.backbone_cache`, in the system temp dir).
        for_loading: build the bare architecture with random weights (every tensor is then
            replaced by `load_detector`): no weights file or download is needed.

    Raises:
        WeightsError: requested pretrained weights are not available (says how to supply them).
        DetectorConfigError: invalid settings (e.g. ``pretrained: false`` where anomalib
            hard-codes a pretrained backbone, or EfficientAD without its local folders).
    """
    spec = SPECS[config.name]
    size = ImageSize.parse(image_size).hw
    cache = Path(backbone_cache_dir) if backbone_cache_dir else backbone_cache()
    kwargs = dict(config.model)
    model_class: Any = anomalib_class(config.name)
    state_to_load: dict[str, torch.Tensor] | None = None

    if config.coreset == "fast":  # PatchCore: same coreset algorithm, vectorised
        from segad.detection.coreset import fast_coreset_patchcore_class

        model_class = fast_coreset_patchcore_class()
    if spec.backbone == "none":  # EfficientAD
        model_class = _efficient_ad_class()
        teacher = None
        if not for_loading:
            if config.pretrained:
                if not config.teacher_weights or not Path(config.teacher_weights).is_file():
                    raise WeightsError(
                        f"efficient_ad teacher weights not found ({config.teacher_weights!r}). Download "
                        "anomalib's efficientad_pretrained_weights.zip once (see anomalib's EfficientAd "
                        "docs), unpack it and set the detector's `teacher_weights` to "
                        "pretrained_teacher_<small|medium>.pth, or set `pretrained: false` for a random teacher"
                    )
                teacher = str(Path(config.teacher_weights).resolve())
            kwargs["imagenet_dir"] = str(_check_imagenet_dir(config.imagenet_dir))
    else:
        architecture = config.architecture()
        assert architecture is not None, "every detector with a backbone has an architecture"
        source = WeightsSource.parse(config.weights)
        pretrained = config.pretrained and not for_loading
        if not config.pretrained and not spec.has_pre_trained_arg:
            raise DetectorConfigError(
                f"detector {config.name}: anomalib always builds it with a pretrained backbone, so "
                "`pretrained: false` is not possible; supply weights with `weights: "
                "packaged:efficientnet_lite0` (model.backbone: tf_efficientnet_lite0) or a local file"
            )
        if for_loading and not spec.has_pre_trained_arg:
            # a scaffold the constructor can "load"; strict load_state_dict replaces every tensor
            backbone = random_local_dir(architecture, cache)
        elif spec.backbone == "resnet" and pretrained and source.kind != HUB:
            if source.kind == "packaged":
                raise WeightsError(
                    f"detector {config.name} accepts only ResNet backbones; packaged:{source.value} is not "
                    "one. Use `weights: <local resnet .pth>`, `weights: hub` (internet) or `pretrained: false`"
                )
            state_to_load = read_state_dict(source.value)
            backbone, pretrained = architecture, False
        else:
            backbone, pretrained = prepare_backbone(source, architecture, pretrained, cache / "pretrained")
        kwargs["backbone"] = backbone
        if spec.has_pre_trained_arg:
            kwargs["pre_trained"] = pretrained

    kwargs.update(
        pre_processor=model_class.configure_pre_processor(image_size=size),
        post_processor=False,
        evaluator=False,
        visualizer=False,
    )
    # Seed right before the constructor: some models draw in it (PaDiM's channel subset), and
    # preparing the backbone may or may not have drawn, depending on what the cache held.
    import lightning.pytorch as pl

    pl.seed_everything(config.seed, workers=True, verbose=False)
    try:
        model = model_class(**kwargs)
    except Exception as error:  # noqa: BLE001 - hub failures surface as many exception types
        if spec.backbone != "none" and WeightsSource.parse(config.weights).kind == HUB and config.pretrained:
            if _looks_like_download_failure(error):
                raise WeightsError(hub_hint(config.architecture() or "")) from error
        raise
    if config.coreset == "fast":
        model.coreset_max_bank = config.coreset_max_bank
        model.coreset_chunk = config.coreset_chunk
    if spec.backbone == "none" and not for_loading:
        model.teacher_file = teacher
    if state_to_load is not None:
        _load_backbone_file(model, spec, state_to_load, config.weights)
    return model


def _looks_like_download_failure(error: BaseException) -> bool:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    names = " ".join(type(e).__name__ + " " + str(e) for e in chain).lower()
    return any(w in names for w in ("hub", "offline", "connection", "download", "urlopen", "entrynotfound", "resolve"))


def random_local_dir(architecture: str, cache: Path) -> str:
    import timm

    directory = cache / "scaffold" / architecture
    if not (directory / "model.safetensors").is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            state = timm.create_model(architecture, pretrained=False).state_dict()
        write_timm_local_dir(state, architecture, directory)
    return f"local-dir:{directory.resolve()}"


def _load_backbone_file(model: torch.nn.Module, spec: DetectorSpec, state: dict, weights: str) -> None:
    module = model
    for part in (spec.feature_module or "").split("."):
        module = getattr(module, part)
    result = module.load_state_dict(state, strict=False)
    own = set(module.state_dict())
    loaded = own - set(result.missing_keys)
    if result.missing_keys or not loaded:
        raise WeightsError(
            f"{weights}: does not fit the {spec.class_name} backbone (missing {result.missing_keys[:5]}); "
            "supply a timm state dict of the configured model.backbone"
        )


# ---------------------------------------------------------------------------------------- fitting


class _GoodImageItems(ImageFiles):
    """The same images as anomalib ``ImageItem`` objects labelled good (for Lightning training)."""

    def __getitem__(self, index: int):  # noqa: ANN204
        from anomalib.data import ImageItem
        from torchvision.tv_tensors import Image, Mask

        _, image = super().__getitem__(index)
        return ImageItem(
            image=Image(image),
            gt_label=torch.tensor(0),
            gt_mask=Mask(torch.zeros(image.shape[-2:], dtype=torch.bool)),
            image_path=self.paths[index],
        )


def _train_loader(paths: Sequence[str | Path], config: DetectorConfig, image_size: SizeLike, shuffle: bool):
    from anomalib.data import ImageBatch

    generator = torch.Generator().manual_seed(config.seed)
    return torch.utils.data.DataLoader(
        _GoodImageItems(paths, image_size),
        batch_size=config.train_batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        collate_fn=ImageBatch.collate,
        generator=generator,
    )


def _datamodule(paths: Sequence[str | Path], config: DetectorConfig, image_size: SizeLike):
    import lightning.pytorch as pl

    class GoodImagesDataModule(pl.LightningDataModule):
        """Training images only: no validation or test loader exists, so none can leak."""

        def __init__(self) -> None:
            super().__init__()
            self.train_batch_size = config.train_batch_size

        def train_dataloader(self):  # noqa: ANN202
            return _train_loader(paths, config, image_size, shuffle=True)

    return GoodImagesDataModule()


def fit_detector(
    config: DetectorConfig,
    train_paths: Sequence[str | Path],
    image_size: SizeLike,
    device: str = "cpu",
    work_dir: str | Path | None = None,
    backbone_cache_dir: str | Path | None = None,
    quantile_paths: Sequence[str | Path] | None = None,
) -> torch.nn.Module:
    """Fit a detector on good images only and return it in eval mode on ``device``.

    Lightning runs the model's own training (memory bank, Gaussian fit, student training, ...)
    with ``config.trainer`` over the model's defaults, without validation; EfficientAD's map
    quantiles are then computed (anomalib's ``map_norm_quantiles``) on ``train_paths``, or on
    ``quantile_paths`` (good images held out from fitting) with ``quantiles_from: brf_train``.
    Nothing else is read.
    """
    import lightning.pytorch as pl

    if not train_paths:
        raise ValueError(f"detector {config.name}: no detector_train images to fit on")
    if config.quantiles_from == "brf_train" and not quantile_paths:
        raise ValueError(f"detector {config.name}: quantiles_from: brf_train needs good brf_train images (none given)")
    torch_device = resolve_device(device)
    # Seed first: some models draw randomness in their constructor (PaDiM's channel subset).
    pl.seed_everything(config.seed, workers=True, verbose=False)
    model: Any = build_detector(config, image_size, backbone_cache_dir)  # an anomalib AnomalibModule
    arguments = {
        k: v
        for k, v in model.trainer_arguments.items()
        if k not in ("devices", "val_check_interval", "num_sanity_val_steps")
    }
    arguments.update(config.trainer)
    if "max_epochs" not in arguments and "max_steps" not in arguments:
        arguments["max_epochs"] = 1
    # Lightning's bar redraws in place: on a terminal only (a log file gets segad's own lines)
    arguments.setdefault("enable_progress_bar", is_terminal(sys.stderr))

    class _FitStarted(pl.Callback):
        # logged inside `Trainer.fit`, after Lightning has set its own signal handlers
        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            logger.info("%s: fit started on %d images", config.name, len(train_paths))

    arguments["callbacks"] = [_FitStarted(), *(arguments.get("callbacks") or [])]
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch, quiet_lightning():
        trainer = pl.Trainer(
            accelerator="gpu" if torch_device.type == "cuda" else "cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=scratch,
            **arguments,
        )
        trainer.fit(model, datamodule=_datamodule(train_paths, config, image_size))
    model.to(torch_device)
    model.eval()
    if config.name == "efficient_ad":
        quantile_images = quantile_paths if config.quantiles_from == "brf_train" else train_paths
        loader = _train_loader(quantile_images or train_paths, config, image_size, shuffle=False)
        model.model.quantiles.update(model.map_norm_quantiles(loader))
    return model


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    import warnings

    names = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=".*(does not have many workers|val_dataloader|GPU available|LeafSpec|in eval mode at the start|no logger configured|infer the .batch_size.).*",
        )
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)
