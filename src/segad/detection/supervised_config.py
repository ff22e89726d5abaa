"""Settings, identity and cache key of the supervised SuperSimpleNet detector
(`segad.detection.supervised`): what its ``anomaly_maps.supersimplenet_supervised`` block may
hold, and which images (with or without masks) make a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError
from pydantic.dataclasses import dataclass as params_dataclass

from segad.config import PARAMS, describe
from segad.detection.config import SupervisedSettings
from segad.storage.files import file_sha256
from segad.storage.images import ImageSize, SizeLike
from segad.storage.weights import WeightsSource, weights_fingerprint
from segad.versions import package_versions
from segad.vocabulary import MAP_LIBRARIES

#: The detector name in ``detectors:`` and the method name of its own image score.
NAME = "supersimplenet_supervised"
#: Bump when this module changes what a saved model, a map or a score means (part of model_key).
FORMAT_VERSION = 1
_RESERVED = ("supervised", "pre_processor", "post_processor", "evaluator", "visualizer", "backbone_weights")


def is_supervised(name: str) -> bool:
    """Whether the ``detectors`` entry ``name`` is the supervised SuperSimpleNet."""
    return name == NAME


class SupervisedConfigError(ValueError):
    """A supervised detector setting is invalid, or the training images cannot train it."""


@params_dataclass(config=PARAMS)
class SupervisedConfig(SupervisedSettings):
    """Settings of ``anomaly_maps.supersimplenet_supervised``, checked: `SupervisedSettings` (each
    setting's type, range and default defined there). ``model`` holds ``Supersimplenet`` arguments
    (``backbone``, ``layers``, ``perlin_threshold``, ``adapt_cls_features``; ``supervised`` and the
    processors are set here); ``trainer``'s ``max_epochs`` (default 1) also places anomalib's LR
    milestones (80 % and 90 % of it).
    """

    #: settings that change neither a fitted model nor its outputs
    RUNTIME_ONLY: ClassVar[tuple[str, ...]] = ("batch_size", "num_workers", "cross_fit_folds")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> SupervisedConfig:
        """Build from a parameters mapping; SupervisedConfigError naming a bad or unknown setting."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SupervisedConfigError(f"detector {NAME}: unknown settings {unknown}; known: {sorted(known)}")
        values["model"] = dict(values.get("model") or {})
        values["trainer"] = dict(values.get("trainer") or {})
        try:
            config = cls(**values)
        except ValidationError as error:
            raise SupervisedConfigError(f"detector {NAME}: {describe(error, '')}") from None
        reserved = sorted(set(config.model) & set(_RESERVED))
        if reserved:
            raise SupervisedConfigError(f"detector {NAME}: model.{reserved[0]} is set by segad")
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able settings (inverse of `from_dict`)."""
        return dataclasses.asdict(self)

    def architecture(self) -> str:
        """``model.backbone`` or anomalib's default."""
        if "backbone" in self.model:
            return str(self.model["backbone"])
        from anomalib.models import Supersimplenet

        return str(inspect.signature(Supersimplenet).parameters["backbone"].default)

    def identity(self) -> dict[str, Any]:
        """Everything that changes a fitted model (hashed into its model_key)."""
        values = self.to_dict()
        for key in self.RUNTIME_ONLY:
            values.pop(key)
        values["weights"] = weights_fingerprint(WeightsSource.parse(self.weights), True)
        return {"detector": NAME, **values}


@dataclass(frozen=True)
class TrainImage:
    """One training image: ``label`` 0 good / 1 bad; ``mask_path`` of a bad image's pixel mask or None."""

    path: str
    label: int
    mask_path: str | None = None


def training_identity(items: Sequence[TrainImage], masks: str) -> list[str]:
    """Content identity of a training set under a mask policy (part of model_key): one string per
    image, ``good:<sha>`` / ``bad:<sha>:mask:<sha of mask>`` / ``bad:<sha>:label_only``."""
    out = []
    for item in items:
        image = file_sha256(item.path)[:32]
        if int(item.label) == 0:
            out.append(f"good:{image}")
        elif _uses_mask(item, masks):
            out.append(f"bad:{image}:mask:{file_sha256(str(item.mask_path))[:32]}")
        else:
            out.append(f"bad:{image}:label_only")
    return sorted(out)


def supervised_model_key(config: SupervisedConfig, image_size: SizeLike, items: Sequence[TrainImage]) -> str:
    """16-hex hash of config identity, image size, training set (good and bad, with masks),
    `FORMAT_VERSION` and library versions."""
    payload = {
        "format": FORMAT_VERSION,
        "libraries": package_versions(MAP_LIBRARIES),
        "config": config.identity(),
        "image_size": ImageSize.parse(image_size).to_json(),
        "train": training_identity(items, config.masks),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _uses_mask(item: TrainImage, masks: str) -> bool:
    return int(item.label) == 1 and masks != "label_only" and item.mask_path is not None
