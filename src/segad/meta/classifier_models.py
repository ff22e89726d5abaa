"""The trained classifier models g(I) of a run, kept so that a production bundle can score with them.

`segad.meta.classifier_protocol` trains, per split seed, one model (``cross_fit_folds: 0``) or K
models (``K >= 2``; a test row's score is the mean of their logits). With a models folder it keeps
them under the seed's scores key (`classifier/seed_<s>/<digest>`, the ``model_key`` column of the
scores table)::

    <root>/classifier/seed_0/<digest>/model_0/   detector.json + state_dict.pt
                                      model_1/   (K >= 2: one folder per fold)

Each folder is written by `segad.storage.persistence.write_model_folder` (atomic; the state's
sha256 in ``detector.json``, whose ``detector`` is ``classifier``). Every tensor of the model is
saved, the frozen stem included, so reloading needs no weights file and downloads nothing: the
architecture is built with random weights (the caller's random state untouched) and restored with
``weights_only=True`` and ``strict=True``. A frozen-mode model on packaged weights reloads with its
stem / tail split, so `combined_logits` runs the shared stem once per image on the model's
backend (as training did) and each model's tail; any other reloads as the whole network. Size: 13 747 963 bytes per
EfficientNet-Lite0 model (float32; measured in the run of tests/test_bundle_per_image.py).

Example:
    >>> from segad.meta.classifier_models import model_folders
    >>> [p.as_posix() for p in model_folders("models", "classifier/seed_0/abc", 2)]
    ['models/classifier/seed_0/abc/model_0', 'models/classifier/seed_0/abc/model_1']
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segad.meta.classifier import ClassifierConfig, build_model
from segad.storage.images import ImageSize, SizeLike

log = logging.getLogger(__name__)

#: bump when segad's code changes what a kept classifier model means
FORMAT_VERSION = 1
NAME = "classifier"


def model_folders(root: str | Path, key: str, count: int) -> list[Path]:
    """The folders of the `count` models kept under the scores `key`."""
    return [Path(root) / key / f"model_{k}" for k in range(count)]


def models_kept(root: str | Path, key: str, count: int) -> bool:
    """Whether all `count` models of `key` are kept and intact: each folder's ``state_dict.pt``
    matches the checksum its ``detector.json`` records. A damaged one is logged (the caller
    trains the models again)."""
    from segad.storage.persistence import model_folder_problem

    for folder in model_folders(root, key, count):
        if not folder.exists():
            return False
        problem = model_folder_problem(folder)
        if problem is not None:
            log.warning("classifier: damaged kept model, trained again: %s", problem)
            return False
    return True


def kept_folders(root: str | Path, key: str) -> list[Path]:
    """The folders of every model kept under `key` (their count is recorded in model_0), each
    verified against its recorded checksum; ValueError naming the folder when one is missing or
    damaged."""
    import json

    first = Path(root) / key / "model_0" / "detector.json"
    try:
        count = int(json.loads(first.read_text())["n_models"])
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{first.parent}: no kept classifier model ({error}); run the classifier pipeline again to keep it"
        ) from error
    from segad.storage.persistence import model_folder_problem

    folders = model_folders(root, key, count)
    problems = [problem for problem in map(model_folder_problem, folders) if problem is not None]
    if problems:
        raise ValueError(
            f"{Path(root) / key}: {count} classifier models were kept, {len(problems)} missing or damaged "
            f"({problems[0]}); run the features pipeline again to train them again"
        )
    return folders


def save_classifiers(
    models: Sequence, config: ClassifierConfig, image_size: SizeLike, root: str | Path, key: str
) -> None:
    """Keep the models of one seed under `key` (model k = fold k; one model for protocol 0)."""
    from segad.storage.persistence import write_model_folder
    from segad.versions import jsonable

    meta = {
        "format": FORMAT_VERSION,
        "detector": NAME,
        "image_size": ImageSize.parse(image_size).to_json(),
        "config": jsonable(config),
        "cross_fit_folds": int(config.cross_fit_folds),
        "n_models": len(models),
    }
    for k, (model, folder) in enumerate(zip(models, model_folders(root, key, len(models)))):
        write_model_folder(model, {**meta, "fold": k}, folder, "the classifier")


def load_classifier(directory: str | Path, device: str = "cpu"):
    """Reload a kept model on `device` (cpu | cuda | auto): ``(model in eval mode, its
    ClassifierConfig, its ImageSize)``.

    `segad.storage.persistence.DetectorLoadError` naming the folder when it is missing, damaged
    or holds something else."""
    import torch

    from segad.detection.config import resolve_device
    from segad.storage.persistence import DetectorLoadError, read_model_folder

    directory = Path(directory)
    meta, state = read_model_folder(directory, detector=NAME)
    try:
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')}, this segad reads {FORMAT_VERSION}")
        config = ClassifierConfig(**meta["config"])
        size = ImageSize.parse(meta["image_size"])
        # a frozen-mode model on packaged weights reloads with its stem / tail split (the stem then
        # runs once for all K models, on config.backend, as in training); others as the whole network
        frozen = config.mode == "frozen" and config.weights.startswith("packaged:")
        with torch.random.fork_rng(devices=[]):  # the random init must not move the caller's RNG
            if frozen:
                model = build_model(dataclasses.replace(config, cache_dir=None))  # the temp backbone cache
            else:
                model = build_model(dataclasses.replace(config, mode="full", pretrained=False))
        model.load_state_dict(state, strict=True)
        model.stem_backend = config.backend if frozen else "eager"
    except Exception as error:  # noqa: BLE001 - any problem becomes a named folder error
        raise DetectorLoadError(f"{directory}: damaged saved classifier ({error})") from error
    model.to(resolve_device(device))
    model.eval()
    return model, config, size


_STEMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def keep_converted_stem(models: Sequence, cache_root: str | Path | None, batch_size: int = 32) -> None:
    """Make `combined_logits` of these loaded models keep their converted stem under `cache_root`
    (e.g. beside a bundle, so a restarted scorer finds it) instead of the temp-dir cache."""
    from segad.meta.classifier_stem import ActivationCache

    if models and models[0] not in _STEMS:
        _STEMS[models[0]] = ActivationCache(batch_size, getattr(models[0], "stem_backend", "eager"), cache_root)


def combined_logits(models: Sequence, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """float64 (N,) scores of float32 (N, 3, H, W) images in [0, 1], as the protocol gives test rows:
    the single model's logit, or the mean of the K cross-fitted models' logits; rounded to float32
    as the scores are stored (`segad.meta.classifier_protocol`). Frozen-mode models sharing one
    stem run it once per image, on their ``stem_backend`` (`load_classifier`), then each tail."""
    import torch

    from segad.meta.classifier_stem import ActivationCache

    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    total = np.zeros(len(x))
    shared = len({getattr(m, "stem_key", None) for m in models}) == 1 and all(
        getattr(m, "frozen_blocks", None) is not None for m in models
    )
    with torch.no_grad():
        if shared and len(x):
            device = next(models[0].parameters()).device
            if models[0] not in _STEMS:  # one converted, checked stem per loaded model, not per call
                _STEMS[models[0]] = ActivationCache(batch_size, getattr(models[0], "stem_backend", "eager"))
            stem = _STEMS[models[0]]
            size = ImageSize(*x.shape[-2:])
            for start in range(0, len(x), batch_size):
                h = stem.stem_output(models[0], x[start : start + batch_size], size, device.type).to(device)
                for model in models:
                    model.eval()
                    total[start : start + len(h)] += model.tail(h)[:, 0].double().cpu().numpy()
        else:
            for model in models:
                device = next(model.parameters()).device
                model.eval()
                logits = [
                    model(x[start : start + batch_size].to(device))[:, 0].double().cpu().numpy()
                    for start in range(0, len(x), batch_size)
                ]
                total += np.concatenate(logits) if logits else np.zeros(0)
    if len(models) > 1:
        total = total / len(models)
    return total.astype(np.float32).astype(np.float64)
