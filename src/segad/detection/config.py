"""Detector settings: which anomalib models segad supports and how one is configured.

Owns `DetectorSpec`/`SPECS` (what segad must know about each anomalib class), the detector
settings, each one's type, range and default defined once (`FitSettings`, `DetectorSettings`,
`SupervisedSettings`), the classes built from them (`DetectorConfig`: one anomalib detector,
validated; `DetectorParams`: the ``anomaly_maps.<name>`` block of any detector) and `resolve_device`. Kept apart
from fitting and inference so that reading, validating and hashing settings (`identity`, part of
model_key) never builds a model.

Supported detectors (anomalib 2.7 class): patchcore (Patchcore), padim (Padim), fastflow
(Fastflow), reverse_distillation (ReverseDistillation), efficient_ad (EfficientAd),
supersimplenet (Supersimplenet), stfpm (Stfpm). Backbone weights: see `segad.storage.weights`.

Example:
    >>> from segad.detection.config import DetectorConfig
    >>> DetectorConfig.from_dict("padim", {"model": {"n_features": 32}}).model
    {'n_features': 32}
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field, ValidationError
from pydantic.dataclasses import dataclass as params_dataclass

from segad.config import PARAMS, describe
from segad.storage.files import file_sha256
from segad.storage.weights import HUB, WeightsSource, weights_fingerprint
from segad.vocabulary import Backend, Coreset, MaskPolicy, TrainingRole


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


#: Default cap of PatchCore's memory bank (`DetectorConfig.coreset_max_bank`): above the banks of
#: the default fits (demo: 100 images x 1024 patches -> 1024; ELPV poly: 345 -> 3532), so those
#: are unchanged; a larger training set gets this many rows (docs/anomaly_maps.md, "PatchCore settings").
CORESET_MAX_BANK = 4096


class DetectorConfigError(ValueError):
    """A detector configuration is invalid; the message names the setting."""


@params_dataclass(config=PARAMS)
class FitSettings:
    """The settings of every fitted detector (the supervised SuperSimpleNet's too): each one's type,
    range and default are defined here only.

    Attributes:
        model: keyword arguments of the anomalib model class (``backbone`` is a timm architecture
            name; segad sets pre/post-processing itself).
        weights: ``hub`` | ``packaged:efficientnet_lite0`` | path of a weights file (`segad.storage.weights`).
        trainer: Lightning ``Trainer`` arguments for fitting (``max_epochs``, ``max_steps``, ...).
        train_batch_size: images per training step (EfficientAD requires 1).
        batch_size: images per inference batch.
        num_workers: DataLoader worker processes for image decoding (0 = in the main process).
        seed: seed of torch/numpy/random before fitting (coreset sampling, PaDiM feature choice,
            initialisation): a detector is a deterministic function of its config and images.

    Counts, seed and switches are strict (``batch_size: "8"`` or ``amp: yes`` fail; ``--params``
    values are YAML-typed).
    """

    model: dict[str, Any] = field(default_factory=dict)
    weights: str = HUB
    trainer: dict[str, Any] = field(default_factory=dict)
    train_batch_size: Annotated[int, Field(strict=True, ge=1)] = 8
    batch_size: Annotated[int, Field(strict=True, ge=1)] = 16
    num_workers: Annotated[int, Field(strict=True, ge=0)] = 0
    seed: Annotated[int, Field(strict=True)] = 0


@params_dataclass(config=PARAMS)
class DetectorSettings(FitSettings):
    """The settings of an anomalib detector (`SPECS`), besides `FitSettings`: defined here only.

    Attributes:
        pretrained: False = random backbone weights, only when set explicitly.
        amp: float16 autocast for inference on CUDA (ignored on CPU).
        channels_last: CPU inference in channels_last memory format (measured per detector in
            docs/anomaly_maps.md: faster for PatchCore, slower for PaDiM).
        teacher_weights: EfficientAD: local file of the pretrained PDN teacher
            (anomalib's ``pretrained_teacher_<size>.pth``).
        imagenet_dir: EfficientAD: local ImageNet-style folder (``<dir>/<class>/<image>``) for its
            penalty loss.
        quantiles_from: EfficientAD: images its map-normalisation quantiles (q90, q99.5 of the
            student and autoencoder maps) come from: ``detector_train`` (its training goods) or
            ``brf_train`` (the good images of the brf_train role, held out from fitting, as the
            SegAD reference does). The anomalib constructor's ``pad_maps`` goes in ``model``.
        coreset: PatchCore: how the memory bank's coreset is selected, ``anomalib`` (its
            ``KCenterGreedy``) or ``fast`` (the same greedy algorithm and random draws, vectorised:
            `segad.detection.coreset`). Part of model_key.
        coreset_max_bank: PatchCore with ``coreset: fast``: the memory bank's cap, bank =
            min(int(ratio x N patches), cap), None = no cap. A capped bank is the first ``cap``
            centres of the uncapped selection; it makes the coreset (and inference against the
            bank) linear in the number of training images. Part of model_key (fast only).
        coreset_chunk: PatchCore with ``coreset: fast``: patches per greedy selection; above it,
            merge and reduce (equal runs of consecutive patches each select their share, the
            union is reduced to the cap), so the fit grows linearly with the training images;
            at or below it the selection is anomalib's. None (default) = one selection: runs of
            100 images cost ELPV accuracy (docs/anomaly_maps.md, "PatchCore settings"). Part of
            model_key when set.
        backend: CPU inference backend (`segad.vocabulary.BACKENDS`; `segad.storage.backends`,
            same maps within its TOLERANCE, docs/journal.md); runtime only, not part of model_key.
    """

    pretrained: Annotated[bool, Field(strict=True)] = True
    amp: Annotated[bool, Field(strict=True)] = False
    channels_last: Annotated[bool, Field(strict=True)] = False
    teacher_weights: str | None = None
    imagenet_dir: str | None = None
    quantiles_from: TrainingRole = "detector_train"
    coreset: Coreset = "anomalib"
    coreset_max_bank: Annotated[int, Field(strict=True, ge=1)] | None = CORESET_MAX_BANK
    coreset_chunk: Annotated[int, Field(strict=True, ge=1)] | None = None
    backend: Backend = "eager"


@params_dataclass(config=PARAMS)
class SupervisedSettings(FitSettings):
    """The settings of the supervised SuperSimpleNet (`segad.detection.supervised_config`), besides
    `FitSettings`: defined here only.

    Attributes:
        masks: ``auto`` (a bad image's mask where it has one, label-only where not) | ``masks``
            (every bad image must have one) | ``label_only`` (masks ignored).
        bad_repeat: how often each bad image appears per epoch (0 = about half as many bad as
            good presentations: ``max(1, n_good // (2 n_bad))``).
        cross_fit_folds: K of the brf_train cross-fitting (`segad.detection.supervised_stage`).
    """

    masks: MaskPolicy = "auto"
    bad_repeat: Annotated[int, Field(strict=True, ge=0)] = 0
    cross_fit_folds: Annotated[int, Field(strict=True, ge=2)] = 3


@params_dataclass(config=PARAMS)
class DetectorConfig(DetectorSettings):
    """One anomalib detector's settings (the namespaced ``anomaly_maps.<name>`` parameters), checked:
    the `DetectorSettings` (types, ranges, word lists and defaults defined there) and ``name``.

    Attributes:
        name: detector name in anomalib's snake case (`SUPPORTED_DETECTORS`); keyword only.
    """

    _: KW_ONLY
    name: str

    #: settings that change neither the fitted model nor its maps
    RUNTIME_ONLY: ClassVar[tuple[str, ...]] = ("batch_size", "num_workers", "channels_last", "backend")
    #: settings added after models were cached: left out of model_key at None (their default, the
    #: behaviour from before they existed), so the keys and caches of earlier runs still hold
    KEYED_WHEN_SET: ClassVar[tuple[str, ...]] = ("coreset_chunk",)

    @classmethod
    def from_dict(cls, name: str, values: DetectorParams | dict[str, Any] | None) -> DetectorConfig:
        """Build from a parameters mapping or block; DetectorConfigError for an unknown name or setting,
        a value that `DetectorSettings` refuses (type, range, word list: defined there only) or a
        per-detector rule broken."""
        if isinstance(values, DetectorParams):
            values = values.settings()
        if name not in SPECS:
            raise DetectorConfigError(
                f"unknown detector {name!r}; supported: {', '.join(SUPPORTED_DETECTORS)} "
                "(or `kind: external` for maps computed by another tool, `segad.detection.external`)"
            )
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DetectorConfigError(f"detector {name}: unknown settings {unknown}; known: {sorted(known)}")
        values["model"] = dict(values.get("model") or {})
        values["trainer"] = dict(values.get("trainer") or {})
        try:
            config = cls(name=name, **values)
        except ValidationError as error:
            raise DetectorConfigError(f"detector {name}: {describe(error, '')}") from None
        if name == "efficient_ad" and config.train_batch_size != 1:
            raise DetectorConfigError("detector efficient_ad: train_batch_size must be 1 (anomalib requires it)")
        for reserved in ("pre_processor", "post_processor", "evaluator", "visualizer", "pre_trained", "imagenet_dir"):
            if reserved in config.model:
                raise DetectorConfigError(
                    f"detector {name}: model.{reserved} is set by segad (raw maps, weights from "
                    "`weights`/`pretrained`, EfficientAD's folder from `imagenet_dir`)"
                )
        if config.quantiles_from != _DEFAULT.quantiles_from and name != "efficient_ad":
            raise DetectorConfigError(f"detector {name}: quantiles_from applies to efficient_ad only")
        if config.coreset != _DEFAULT.coreset and name != "patchcore":
            raise DetectorConfigError(f"detector {name}: coreset applies to patchcore only")
        for setting in ("coreset_max_bank", "coreset_chunk"):
            if getattr(config, setting) != getattr(_DEFAULT, setting) and config.coreset != "fast":
                raise DetectorConfigError(f"detector {name}: {setting} applies to patchcore with coreset: fast only")
        return config

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain JSON-able values (the inverse of `from_dict`, without ``name``)."""
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
        default = inspect.signature(anomalib_class(self.name)).parameters["backbone"].default
        return str(default)

    def identity(self) -> dict[str, Any]:
        """Everything that changes the fitted model or its maps (hashed into model_key)."""
        values = self.to_dict()
        for key in self.RUNTIME_ONLY:
            values.pop(key, None)
        for key in self.KEYED_WHEN_SET:
            if values.get(key) is None:
                values.pop(key, None)
        source = WeightsSource.parse(self.weights)
        values["weights"] = (
            weights_fingerprint(source, self.pretrained) if SPECS[self.name].backbone != "none" else None
        )
        if self.teacher_weights and self.pretrained and Path(self.teacher_weights).is_file():
            values["teacher_weights"] = "sha256:" + file_sha256(self.teacher_weights)[:16]
        return {"detector": self.name, **values}


#: the defaults of `DetectorSettings` (the per-detector rules compare with them)
_DEFAULT = DetectorSettings()


@params_dataclass(config=PARAMS)
class DetectorParams(DetectorSettings, SupervisedSettings):
    """The ``anomaly_maps.<detector>`` block as Kedro checks it before any node runs.

    One class for every detector (the namespaced anomaly_maps pipelines share one node): the
    settings of `DetectorSettings` and `SupervisedSettings` (types, ranges and defaults defined
    there), the external kind's ``kind``/``folder``/``suffix`` (`segad.detection.external`) and
    ``distribute``. The detector-specific ``model`` arguments are checked against the anomalib
    constructor by `DetectorConfig.from_dict`, and the per-detector rules (EfficientAD's
    ``train_batch_size`` 1, ``quantiles_from`` for efficient_ad only) there too. `settings` gives
    only the keys that differ from their default, so a block and the plain mapping it came from
    build the same `DetectorConfig` (model_key).
    """

    #: external maps (`segad.detection.external`): ``kind: external``, their folder and suffix
    kind: Literal["external"] | None = None
    folder: str | None = None
    suffix: str | None = None
    #: sharding of the map stage (`segad.detection.distribute.ShardOptions`); None = off
    distribute: dict[str, Any] | None = None

    def settings(self) -> dict[str, Any]:
        """The settings that differ from their default, as a plain mapping (for `DetectorConfig.from_dict`
        and `segad.detection.external.ExternalConfig.from_dict`, which name a setting their kind lacks)."""
        defaults = DetectorParams()
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) != getattr(defaults, f.name)
        }


def anomalib_class(name: str) -> type:
    """The anomalib model class of detector ``name`` (imports anomalib on first use)."""
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
