"""anomalib detectors for SegAD: build from configuration, fit on good images, batched raw maps.

SegAD (Baitieva et al., CVPR 2024) reads per-segment statistics (q995, skew, kurtosis, mean) of
*raw* anomaly maps. anomalib's defaults would destroy them: its PostProcessor min-max normalises
and clamps maps with validation statistics, and its datamodules use the test set as validation
set. So every model here is built with ``post_processor=False`` (no evaluator, no visualizer), fitted
with a plain Lightning ``Trainer`` on a data module that holds the detector_train good images
only and no validation loader, and EfficientAD's map quantiles (its only "validation" statistic)
are computed on those same training images. Maps come from ``model(x)`` on float images in
[0, 1] at ``image_size``: ``(B, H, W)`` raw scores, higher = more anomalous.

Supported detectors (anomalib 2.7 class): patchcore (Patchcore), padim (Padim), fastflow
(Fastflow), reverse_distillation (ReverseDistillation), efficient_ad (EfficientAd),
supersimplenet (Supersimplenet), stfpm (Stfpm). Backbone weights: see `segad.detection.weights`.

A fitted detector is saved as a folder: ``detector.json`` (its configuration) and
``state_dict.pt`` (every tensor of the module, reloaded with ``torch.load(weights_only=True)``
and ``load_state_dict(strict=True)`` into a freshly built, randomly initialised architecture, so
reloading downloads nothing and needs no backbone file).

Example (offline, tiny and cheap):
    >>> import numpy as np
    >>> from segad.detection.detectors import DetectorConfig, fit_detector, predict_maps
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
import dataclasses
import hashlib
import inspect
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segad.detection.weights import (
    HUB,
    WeightsError,
    WeightsSource,
    hub_hint,
    prepare_backbone,
    read_state_dict,
    weights_fingerprint,
    write_timm_local_dir,
)
from segad.files import check_owned, file_sha256, replace_folder
from segad.images import IMAGE_SUFFIXES, ImageReadError, read_image
from segad.versions import package_versions

if TYPE_CHECKING:
    import pandas as pd

    from segad.detection.map_store import MapStore

logger = logging.getLogger(__name__)

#: Bump when segad's own code changes what a saved detector or a map means (part of model_key).
#: 2: model_key also holds the versions of the libraries that compute the maps.
#: 3: the seed is set right before the model is constructed (PaDiM's channel subset no longer
#:    depends on whether the backbone cache existed), so format-2 PaDiM models are refitted.
FORMAT_VERSION = 3
#: Libraries whose exact installed version is part of model_key: a new release may fit or
#: score differently, so its maps are not reused.
MAP_LIBRARIES = ("anomalib", "torch", "torchvision", "timm")


@dataclass(frozen=True)
class DetectorSpec:
    """What segad needs to know about one anomalib model.

    Attributes:
        class_name: the class in ``anomalib.models``.
        backbone: ``timm`` (any timm CNN, weights via timm local-dir), ``resnet`` (a timm registry
            name only: FastFlow, Reverse Distillation) or ``none`` (EfficientAD's own PDN teacher).
        has_pre_trained_arg: whether the constructor takes ``pre_trained`` (else a pretrained
            backbone is hard-coded: STFPM's teacher, SuperSimpleNet).
        feature_module: dotted path of the timm backbone module inside the Lightning module, for
            loading a local weights file into ``resnet`` backbones.
    """

    class_name: str
    backbone: str
    has_pre_trained_arg: bool
    feature_module: str | None = None


SPECS: dict[str, DetectorSpec] = {
    "patchcore": DetectorSpec("Patchcore", "timm", True),
    "padim": DetectorSpec("Padim", "timm", True),
    "fastflow": DetectorSpec("Fastflow", "resnet", True, "model.feature_extractor"),
    "reverse_distillation": DetectorSpec("ReverseDistillation", "resnet", True, "model.encoder.feature_extractor"),
    "efficient_ad": DetectorSpec("EfficientAd", "none", False),
    "supersimplenet": DetectorSpec("Supersimplenet", "timm", False),
    "stfpm": DetectorSpec("Stfpm", "timm", False),
}
SUPPORTED_DETECTORS = tuple(SPECS)


class DetectorConfigError(ValueError):
    """A detector configuration is invalid; the message names the setting."""


@dataclass(frozen=True)
class DetectorConfig:
    """One detector's settings (the namespaced ``anomaly_maps.<name>`` parameters).

    Attributes:
        name: detector name in anomalib's snake case (`SUPPORTED_DETECTORS`).
        model: keyword arguments of the anomalib model class (``backbone`` is a timm architecture
            name; segad sets pre/post-processing itself).
        weights: ``hub`` | ``packaged:efficientnet_lite0`` | path of a weights file (`segad.detection.weights`).
        pretrained: False = random backbone weights, only when set explicitly.
        trainer: Lightning ``Trainer`` arguments for fitting (``max_epochs``, ``max_steps``, ...).
        train_batch_size: images per training step (EfficientAD requires 1).
        batch_size: images per inference batch.
        num_workers: DataLoader worker processes for image decoding (0 = in the main process).
        seed: seed of torch/numpy/random before fitting (coreset sampling, PaDiM feature choice,
            initialisation): a detector is a deterministic function of its config and images.
        amp: float16 autocast for inference on CUDA (ignored on CPU).
        channels_last: CPU inference in channels_last memory format (measured per detector in
            docs/anomaly_maps.md: faster for PatchCore, slower for PaDiM).
        teacher_weights: EfficientAD: local file of the pretrained PDN teacher
            (anomalib's ``pretrained_teacher_<size>.pth``).
        imagenet_dir: EfficientAD: local ImageNet-style folder (``<dir>/<class>/<image>``) for its
            penalty loss.
    """

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    weights: str = HUB
    pretrained: bool = True
    trainer: dict[str, Any] = field(default_factory=dict)
    train_batch_size: int = 8
    batch_size: int = 16
    num_workers: int = 0
    seed: int = 0
    amp: bool = False
    channels_last: bool = False
    teacher_weights: str | None = None
    imagenet_dir: str | None = None

    # settings that change neither the fitted model nor its maps
    RUNTIME_ONLY = ("batch_size", "num_workers", "channels_last")

    @classmethod
    def from_dict(cls, name: str, values: dict[str, Any] | None) -> DetectorConfig:
        """Build from a parameters mapping; DetectorConfigError for unknown names or settings."""
        if name not in SPECS:
            raise DetectorConfigError(
                f"unknown detector {name!r}; supported: {', '.join(SUPPORTED_DETECTORS)}"
            )
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DetectorConfigError(f"detector {name}: unknown settings {unknown}; known: {sorted(known)}")
        values["model"] = dict(values.get("model") or {})
        values["trainer"] = dict(values.get("trainer") or {})
        config = cls(name=name, **values)
        for key, kind in (("train_batch_size", int), ("batch_size", int), ("num_workers", int), ("seed", int),
                          ("pretrained", bool), ("amp", bool), ("channels_last", bool)):
            value = getattr(config, key)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise DetectorConfigError(f"detector {name}: {key} must be {kind.__name__}, got {value!r}")
        for key in ("train_batch_size", "batch_size"):
            if int(getattr(config, key)) < 1:
                raise DetectorConfigError(f"detector {name}: {key} must be >= 1")
        if name == "efficient_ad" and config.train_batch_size != 1:
            raise DetectorConfigError("detector efficient_ad: train_batch_size must be 1 (anomalib requires it)")
        for reserved in ("pre_processor", "post_processor", "evaluator", "visualizer", "pre_trained", "imagenet_dir"):
            if reserved in config.model:
                raise DetectorConfigError(
                    f"detector {name}: model.{reserved} is set by segad (raw maps, weights from "
                    "`weights`/`pretrained`, EfficientAD's folder from `imagenet_dir`)"
                )
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able settings (inverse of `from_dict`, without ``name``)."""
        values = dataclasses.asdict(self)
        values.pop("name")
        return values

    def architecture(self) -> str | None:
        """The backbone architecture: ``model.backbone`` or the anomalib default."""
        spec = SPECS[self.name]
        if spec.backbone == "none":
            return None
        if "backbone" in self.model:
            return str(self.model["backbone"])
        default = inspect.signature(_model_class(self.name)).parameters["backbone"].default
        return str(default)

    def identity(self) -> dict[str, Any]:
        """Everything that changes the fitted model or its maps (hashed into model_key)."""
        values = self.to_dict()
        for key in self.RUNTIME_ONLY:
            values.pop(key)
        source = WeightsSource.parse(self.weights)
        values["weights"] = (
            weights_fingerprint(source, self.pretrained) if SPECS[self.name].backbone != "none" else None
        )
        if self.teacher_weights and self.pretrained and Path(self.teacher_weights).is_file():
            values["teacher_weights"] = "sha256:" + file_sha256(self.teacher_weights)[:16]
        return {"detector": self.name, **values}


def _model_class(name: str) -> type:
    import anomalib.models

    return getattr(anomalib.models, SPECS[name].class_name)


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU) | ``cpu`` | ``cuda`` -> torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was requested but torch sees no CUDA device; use auto or cpu")
        return torch.device("cuda")
    raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")


def content_hash(path: str | Path) -> str:
    """32-hex SHA-256 of an image file's bytes: the cache identity of an image."""
    if not Path(path).is_file():
        raise ImageReadError(f"{path}: no such image file")
    return file_sha256(path)[:32]


def library_versions() -> dict[str, str]:
    """Installed versions of `MAP_LIBRARIES` ('missing' when absent)."""
    return package_versions(MAP_LIBRARIES)


def model_key(config: DetectorConfig, image_size: int, train_hashes: Sequence[str]) -> str:
    """16-hex hash of the detector's identity, image size, training set (content hashes), segad's
    `FORMAT_VERSION` and the `library_versions` that compute the maps."""
    payload = {
        "format": FORMAT_VERSION,
        "libraries": library_versions(),
        "config": config.identity(),
        "image_size": int(image_size),
        "train": sorted(train_hashes),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    image_size: int,
    backbone_cache_dir: str | Path | None = None,
    *,
    for_loading: bool = False,
) -> torch.nn.Module:
    """An unfitted anomalib model that outputs raw maps of shape (B, 1, image_size, image_size).

    Args:
        config: the detector's settings.
        image_size: side of the square input images and maps, in pixels.
        backbone_cache_dir: where local/packaged weights are unpacked as timm local-dir folders
            (default: a ``segad-backbones`` folder in the system temp dir).
        for_loading: build the bare architecture with random weights (every tensor is then
            replaced by `load_detector`): no weights file or download is needed.

    Raises:
        WeightsError: requested pretrained weights are not available (says how to supply them).
        DetectorConfigError: invalid settings (e.g. ``pretrained: false`` where anomalib
            hard-codes a pretrained backbone, or EfficientAD without its local folders).
    """
    spec = SPECS[config.name]
    size = (int(image_size), int(image_size))
    cache = Path(backbone_cache_dir or Path(tempfile.gettempdir()) / "segad-backbones")
    kwargs = dict(config.model)
    model_class: Any = _model_class(config.name)
    state_to_load: dict[str, torch.Tensor] | None = None

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
            backbone = _random_local_dir(architecture, cache)
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


def _random_local_dir(architecture: str, cache: Path) -> str:
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


class ImageFiles(torch.utils.data.Dataset):
    """Images read with `segad.images.read_image` as float32 (3, S, S) in [0, 1], with their index."""

    def __init__(self, paths: Sequence[str | Path], image_size: int) -> None:
        self.paths = [str(p) for p in paths]
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, torch.from_numpy(read_image(self.paths[index], self.image_size))


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


def _train_loader(paths: Sequence[str | Path], config: DetectorConfig, image_size: int, shuffle: bool):
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


def _datamodule(paths: Sequence[str | Path], config: DetectorConfig, image_size: int):
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
    image_size: int,
    device: str = "cpu",
    work_dir: str | Path | None = None,
    backbone_cache_dir: str | Path | None = None,
) -> torch.nn.Module:
    """Fit a detector on good images only and return it in eval mode on ``device``.

    Lightning runs the model's own training (memory bank, Gaussian fit, student training, ...)
    with ``config.trainer`` over the model's defaults, without validation; EfficientAD's map
    quantiles are then computed on ``train_paths``. Nothing else is read.
    """
    import lightning.pytorch as pl

    if not train_paths:
        raise ValueError(f"detector {config.name}: no detector_train images to fit on")
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
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        trainer = pl.Trainer(
            accelerator="gpu" if torch_device.type == "cuda" else "cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=True,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=scratch,
            **arguments,
        )
        with _quiet_lightning():
            trainer.fit(model, datamodule=_datamodule(train_paths, config, image_size))
    model.to(torch_device)
    model.eval()
    if config.name == "efficient_ad":
        loader = _train_loader(train_paths, config, image_size, shuffle=False)
        model.model.quantiles.update(model.map_norm_quantiles(loader))
    return model


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    import warnings

    names = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|val_dataloader|GPU available|LeafSpec).*")
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


# ------------------------------------------------------------------------------- saving, loading


def save_detector(model: torch.nn.Module, config: DetectorConfig, image_size: int, directory: str | Path) -> Path:
    """Write ``detector.json`` + ``state_dict.pt`` into ``directory`` atomically (temp dir, rename)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, staging / "state_dict.pt")
        meta = {
            "format": FORMAT_VERSION,
            "detector": config.name,
            "image_size": int(image_size),
            "config": config.to_dict(),
            "state_sha256": file_sha256(staging / "state_dict.pt"),
        }
        (staging / "detector.json").write_text(json.dumps(meta, indent=2, default=str))
        owned = ["detector.json", "state_dict.pt"] if (directory / "detector.json").is_file() else None
        check_owned(directory, owned, "save_detector")
        replace_folder(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


class DetectorLoadError(RuntimeError):
    """A saved detector folder is missing, incomplete or damaged."""


def load_detector(
    directory: str | Path, device: str = "cpu", backbone_cache_dir: str | Path | None = None
) -> tuple[torch.nn.Module, DetectorConfig, int]:
    """Reload a saved detector: ``(model in eval mode, its config, image_size)``.

    The architecture is rebuilt with random weights (no download, no weights file) and every
    tensor is restored from ``state_dict.pt`` with ``weights_only=True`` and ``strict=True``.
    """
    directory = Path(directory)
    meta_path, state_path = directory / "detector.json", directory / "state_dict.pt"
    if not meta_path.is_file() or not state_path.is_file():
        raise DetectorLoadError(f"{directory}: not a saved detector (needs detector.json and state_dict.pt)")
    try:
        meta = json.loads(meta_path.read_text())
        if file_sha256(state_path) != meta["state_sha256"]:
            raise DetectorLoadError(f"{state_path}: checksum mismatch (damaged file)")
        config = DetectorConfig.from_dict(meta["detector"], meta["config"])
        image_size = int(meta["image_size"])
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except DetectorLoadError:
        raise
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


# -------------------------------------------------------------------------------------- inference


def predict_maps(model: torch.nn.Module, images: np.ndarray | torch.Tensor, amp: bool = False) -> np.ndarray:
    """Raw anomaly maps of a batch.

    Args:
        model: a fitted detector (`fit_detector` / `load_detector`).
        images: float32 (B, 3, H, W) in [0, 1], H = W = the detector's image_size.
        amp: float16 autocast on CUDA (ignored on CPU).

    Returns:
        float32 (B, H, W): raw scores, higher = more anomalous (no normalisation).
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(x.shape)}")
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
    image_size: int,
    batch_size: int = 16,
    num_workers: int = 0,
    amp: bool = False,
    progress: str | None = None,
    channels_last: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index into paths, float32 (S, S) map)``, decoding images in DataLoader workers.

    A tqdm bar named ``progress`` shows images/s when given. With ``channels_last`` on CPU the
    model is switched to channels_last memory format first (same maps up to float rounding;
    measured 1.4x faster for EfficientNet-Lite0 PatchCore, 0.75x for PaDiM: docs/anomaly_maps.md).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    if device.type == "cpu" and channels_last:
        model.to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, image_size),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    bar = tqdm(total=len(paths), desc=progress, unit="img", disable=progress is None, smoothing=0.1)
    try:
        for indices, images in loader:
            maps = predict_maps(model, images, amp=amp)
            yield from zip(indices.tolist(), maps, strict=True)
            bar.update(len(indices))
    finally:
        bar.close()


@dataclass
class MapRunStats:
    """What one detector's map run did: models fitted/reused, maps computed/cached, seconds."""

    models_fitted: int = 0
    models_reused: int = 0
    maps_computed: int = 0
    maps_cached: int = 0
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0

    def images_per_second(self) -> float:
        return self.maps_computed / self.predict_seconds if self.predict_seconds else float("nan")


# ------------------------------------------------------------------------------ the map stage run

MAP_INDEX_COLUMNS = ("image_id", "detector", "split_seed", "model_key", "map_key", "max_score", "height", "width")
MAP_ROLES = ("brf_train", "test")


def plan_models(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    config: DetectorConfig,
    image_size: int,
    hashes: dict[str, str],
) -> dict[tuple[str, int], tuple[str, list[str]]]:
    """``{(category, split_seed): (model_key, detector_train image paths)}``.

    One-class detectors are fitted per category (a product), never on several categories mixed;
    seeds whose detector_train sets are equal share a key. Raises ValueError when a
    detector_train image is not good (label != 0) or not in the index, or when a category has no
    detector_train image for a seed.
    """
    indexed = image_index.set_index("image_id")
    paths, labels, categories = indexed["path"], indexed["label"], indexed["category"]
    plan: dict[tuple[str, int], tuple[str, list[str]]] = {}
    train = splits[splits["role"] == "detector_train"]
    missing = sorted(set(train["image_id"]) - set(paths.index))
    if missing:
        raise ValueError(f"splits: detector_train images not in image_index: {missing[:5]}")
    train = train.assign(category=train["image_id"].map(categories))
    for seed in sorted(splits["split_seed"].unique()):
        for category in sorted(categories.unique()):
            ids = sorted(train.loc[(train["split_seed"] == seed) & (train["category"] == category), "image_id"])
            if not ids:
                raise ValueError(f"splits: category {category!r} has no detector_train image for split_seed {seed}")
            bad = [i for i in ids if int(labels[i]) != 0]
            if bad:
                raise ValueError(f"splits: detector_train holds bad images for split_seed {seed}: {bad[:5]}")
            train_paths = [str(paths[i]) for i in ids]
            key = model_key(config, image_size, [hashes[p] for p in train_paths])
            plan[(str(category), int(seed))] = (key, train_paths)
    return plan


def compute_anomaly_maps(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame | None,
    config: DetectorConfig,
    image_size: int,
    device: str,
    map_store: MapStore,
    model_root: str | Path,
    progress: bool = True,
) -> tuple[pd.DataFrame, MapRunStats]:
    """Fit (or reuse) one detector per distinct detector_train set and store every needed raw map.

    Needed maps: images with role brf_train or test in ``splits`` and every row of
    ``synthetic_index`` (one_class regime), per split_seed. A map is cached under
    ``<model_key>/<image content hash>``: a second run reads it back instead of computing it; a
    damaged file is recomputed. Fitted detectors live in ``<model_root>/<model_key>/`` and are
    reused when valid.

    Returns:
        The map index (`MAP_INDEX_COLUMNS`, one row per needed (image, split_seed)) and run stats.
    """
    import pandas as pd

    from segad.detection.map_store import MapStoreError

    if config.name == "efficient_ad" and image_size < 256:
        raise DetectorConfigError(f"efficient_ad needs image_size >= 256 (its autoencoder), got {image_size}")
    for name, table, columns in (
        ("image_index", image_index, ("image_id", "path", "label", "category")),
        ("splits", splits, ("image_id", "split_seed", "role")),
    ):
        absent = [c for c in columns if c not in table.columns]
        if absent:
            raise ValueError(f"{name}: missing columns {absent}")
    synthetic = synthetic_index if synthetic_index is not None else pd.DataFrame()
    if len(synthetic):
        absent = [c for c in ("image_id", "split_seed", "path", "category") if c not in synthetic.columns]
        if absent:
            raise ValueError(f"synthetic_index: missing columns {absent}")

    paths = image_index.set_index("image_id")["path"].astype(str)
    needed = splits[splits["role"].isin(MAP_ROLES)][["image_id", "split_seed"]].copy()
    unknown = sorted(set(needed["image_id"]) - set(paths.index))
    if unknown:
        raise ValueError(f"splits: images not in image_index: {unknown[:5]}")
    needed["path"] = needed["image_id"].map(paths)
    needed["category"] = needed["image_id"].map(image_index.set_index("image_id")["category"])
    if len(synthetic):
        needed = pd.concat([needed, synthetic[["image_id", "split_seed", "path", "category"]].astype({"path": str})])
    needed["split_seed"] = needed["split_seed"].astype("int64")
    needed["category"] = needed["category"].astype(str)

    train_ids = splits.loc[splits["role"] == "detector_train", "image_id"]
    all_paths = sorted(set(needed["path"]) | set(paths[paths.index.isin(train_ids)]))
    hashes = {p: content_hash(p) for p in _progress(all_paths, progress, f"{config.name}: hashing images")}
    plan = plan_models(image_index, splits, config, image_size, hashes)
    wanted = set(zip(needed["category"], needed["split_seed"]))
    unplanned = sorted(wanted - set(plan))
    if unplanned:
        raise ValueError(f"synthetic_index: (category, split_seed) {unplanned[:5]} not in splits / image_index")
    needed["model_key"] = [plan[(c, int(s))][0] for c, s in zip(needed["category"], needed["split_seed"])]
    needed["map_key"] = needed["model_key"] + "/" + needed["path"].map(hashes)

    stats = MapRunStats()
    max_scores: dict[str, float] = {}
    shapes: dict[str, tuple[int, int]] = {}
    model_root = Path(model_root)
    for key in sorted(needed["model_key"].unique()):
        train_paths = next(p for k, p in plan.values() if k == key)
        rows = needed[needed["model_key"] == key].drop_duplicates("map_key")
        todo: list[tuple[str, str]] = []
        for map_key, path in zip(rows["map_key"], rows["path"], strict=True):
            try:
                stored = map_store.read(map_key)
            except MapStoreError as error:
                if map_store.path(map_key).exists():
                    logger.warning("recomputing damaged map: %s", error)
                todo.append((map_key, path))
                continue
            if stored.shape != (image_size, image_size):
                todo.append((map_key, path))
                continue
            max_scores[map_key], shapes[map_key] = float(stored.max()), stored.shape
            stats.maps_cached += 1
        model = _fitted_model(config, key, train_paths, image_size, device, model_root, stats, need_model=bool(todo))
        if not todo:
            continue
        start = time.perf_counter()
        label = f"{config.name} maps [{key[:8]}]" if progress else None
        assert model is not None, "a model is loaded or fitted whenever maps are to be computed"
        for index, anomaly_map in iter_maps(
            model, [p for _, p in todo], image_size, config.batch_size, config.num_workers, config.amp, label,
            config.channels_last,
        ):
            map_key = todo[index][0]
            map_store.write(map_key, anomaly_map)
            stored = map_store.read(map_key)  # what downstream stages will read (float16 if so stored)
            max_scores[map_key], shapes[map_key] = float(stored.max()), stored.shape
        stats.maps_computed += len(todo)
        stats.predict_seconds += time.perf_counter() - start
        del model

    index = needed.assign(
        detector=config.name,
        max_score=needed["map_key"].map(max_scores).astype("float64"),
        height=needed["map_key"].map(lambda k: shapes[k][0]).astype("int32"),
        width=needed["map_key"].map(lambda k: shapes[k][1]).astype("int32"),
    )
    index = index[list(MAP_INDEX_COLUMNS)].sort_values(["split_seed", "image_id"]).reset_index(drop=True)
    return index.astype({"image_id": str, "detector": str, "model_key": str, "map_key": str}), stats


def _fitted_model(
    config: DetectorConfig,
    key: str,
    train_paths: list[str],
    image_size: int,
    device: str,
    model_root: Path,
    stats: MapRunStats,
    need_model: bool,
) -> torch.nn.Module | None:
    """Load the saved detector of ``key`` if valid, else fit and save it (always kept on disk)."""
    directory = model_root / key
    backbones = model_root / "_backbones"
    if (directory / "detector.json").is_file():
        if not need_model:
            stats.models_reused += 1
            return None
        try:
            model, _, _ = load_detector(directory, device, backbones)
            stats.models_reused += 1
            return model
        except DetectorLoadError as error:
            logger.warning("refitting damaged detector: %s", error)
    start = time.perf_counter()
    logger.info("fitting %s [%s] on %d detector_train images", config.name, key, len(train_paths))
    model = fit_detector(config, train_paths, image_size, device, work_dir=None, backbone_cache_dir=backbones)
    save_detector(model, config, image_size, directory)
    stats.models_fitted += 1
    stats.fit_seconds += time.perf_counter() - start
    return model


def _progress(items: Sequence, enabled: bool, desc: str):  # noqa: ANN202
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="img", disable=not enabled or len(items) < 200, leave=False)
