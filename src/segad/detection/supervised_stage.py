"""The supervised SuperSimpleNet in the anomaly-map stage: cross-fitted maps and scores, no leak.

Which images train what, per (category, split_seed):

- the *full* model trains on the split's detector_train good images plus every brf_train bad
  image (with its mask, or label-only; `segad.detection.supervised`); it scores the test rows;
- the brf_train rows (good and bad) and synthetic rows are dealt into K folds
  (``cross_fit_folds``, at most the number of bad images; stratified by label, shuffled with
  the split seed and the detector seed); fold model k trains on the detector_train goods plus
  the brf_train bad images *outside* fold k and scores the rows of fold k.

So no brf_train row gets a map or a score from a model that saw it, and the BRF learns from
rows scored the way test rows are (by a model that did not see them). Cost: K + 1 fits per
(category, split_seed) instead of 1. A fold model's key covers its own training set (good
images, bad images, their masks), so fits are cached and reused like the other detectors'.

The map index has the usual columns plus ``pred_score`` (the model's image score); which model
scored a row is its ``model_key`` (`plan_supervised` gives each fold's). Scores are cached per model in ``<model_root>/_scores/<model_key>.json``.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from segad.detection.stage import MAP_INDEX_COLUMNS, MapRunStats
from segad.detection.supervised import build_supervised, fit_supervised, iter_supervised, torch_device
from segad.detection.supervised_config import (
    FORMAT_VERSION,
    NAME,
    SupervisedConfig,
    SupervisedConfigError,
    TrainImage,
    supervised_model_key,
)
from segad.storage.files import atomic_path, file_sha256
from segad.storage.images import ImageSize, SizeLike
from segad.storage.persistence import read_model_folder, write_model_folder
from segad.storage.weights import store_backbone_cache

if TYPE_CHECKING:
    import pandas as pd

    from segad.storage.map_store import MapStore

logger = logging.getLogger(__name__)

FULL = -1
#: The map index of this detector: the stage's columns plus the model's own image score.
INDEX_COLUMNS = (*MAP_INDEX_COLUMNS, "pred_score")


@dataclass
class SupervisedFit:
    """One model to fit: its key, training images, and the (image_id, split_seed) rows it scores."""

    key: str
    fold: int
    items: list[TrainImage]
    rows: list[tuple[str, int]]


def assign_folds(image_ids: list[str], labels: list[int], folds: int, seed: int) -> dict[str, int]:
    """Stratified fold of each image: per label (1 first, so every fold gets a real bad image
    when folds <= n_bad), sorted ids shuffled with ``seed``, dealt round-robin."""
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    for label in sorted({int(lab) for lab in labels}, key=lambda lab: (lab != 1, lab)):
        ids = sorted(i for i, lab in zip(image_ids, labels, strict=True) if int(lab) == label)
        for rank, index in enumerate(rng.permutation(len(ids))):
            out[ids[index]] = rank % folds
    return out


def plan_supervised(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame | None,
    config: SupervisedConfig,
    image_size: SizeLike,
) -> list[SupervisedFit]:
    """The cross-fitting plan (module docstring): K fold models + the full model per (category, seed).

    Raises SupervisedConfigError when a (category, split_seed) has fewer than 2 brf_train bad
    images, ValueError when a detector_train image is bad or absent from the index.
    """
    indexed = image_index.set_index("image_id")
    masks = indexed["mask_path"] if "mask_path" in indexed.columns else None
    unknown = sorted(set(splits["image_id"]) - set(indexed.index))
    if unknown:
        raise ValueError(f"splits: images not in image_index: {unknown[:5]}")
    table = splits.assign(
        category=splits["image_id"].map(indexed["category"]).astype(str),
        label=splits["image_id"].map(indexed["label"]).astype(int),
        path=splits["image_id"].map(indexed["path"]).astype(str),
    )
    synthetic = synthetic_index if synthetic_index is not None else None
    plan: list[SupervisedFit] = []
    for (category, seed), rows in table.groupby(["category", "split_seed"], sort=True):
        where = f"category {category!r}, split_seed {seed}"
        goods = rows[rows["role"] == "detector_train"]
        if (goods["label"] != 0).any():
            raise ValueError(f"splits: detector_train holds bad images ({where})")
        brf = rows[rows["role"] == "brf_train"]
        bad = brf[brf["label"] == 1]
        if len(bad) < 2:
            raise SupervisedConfigError(
                f"{NAME}: {len(bad)} brf_train bad images ({where}); its cross-fitting needs >= 2 (a bad image "
                "must be left out of the model that scores it). Use a regime with real bad training images "
                "(high_shot, low_shot, visa_supervised, kfold) or the unsupervised supersimplenet"
            )
        good_items = [TrainImage(p, 0) for p in sorted(goods["path"])]

        def bad_item(image_id: str) -> TrainImage:
            mask = masks.get(image_id) if masks is not None else None
            return TrainImage(
                str(indexed.at[image_id, "path"]), 1, str(mask) if isinstance(mask, str) and mask else None
            )

        scored = list(zip(brf["image_id"], brf["label"], strict=True))
        if synthetic is not None and len(synthetic):
            mine = synthetic[(synthetic["split_seed"] == seed) & (synthetic["category"].astype(str) == category)]
            scored += [(i, 2) for i in mine["image_id"]]  # a stratum of their own: never training images
        folds = min(config.cross_fit_folds, len(bad))
        fold_of = assign_folds(
            [i for i, _ in scored],
            [lab for _, lab in scored],
            folds,
            zlib.crc32(f"{category}/{int(seed)}/{config.seed}".encode()),
        )
        for fold in [*range(folds), FULL]:
            items = good_items + [bad_item(i) for i in sorted(bad["image_id"]) if fold == FULL or fold_of[i] != fold]
            if fold == FULL:
                targets = sorted(rows.loc[rows["role"] == "test", "image_id"])
            else:
                targets = sorted(i for i, _ in scored if fold_of[i] == fold)
            key = supervised_model_key(config, image_size, items)
            plan.append(SupervisedFit(key, fold, items, [(i, int(seed)) for i in targets]))
    return plan


def compute_supervised_maps(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame | None,
    config: SupervisedConfig,
    image_size: SizeLike,
    device: str,
    map_store: MapStore,
    model_root: str | Path,
) -> tuple[pd.DataFrame, MapRunStats]:
    """Fit (or reuse) every model of `plan_supervised`, store each row's raw map, collect pred_score.

    Returns the map index (`INDEX_COLUMNS`) and the run's `MapRunStats`.
    """
    import pandas as pd

    from segad.storage.map_store import MapStoreError

    paths = image_index.set_index("image_id")["path"].astype(str).to_dict()
    if synthetic_index is not None and len(synthetic_index):
        paths.update(synthetic_index.set_index("image_id")["path"].astype(str).to_dict())
    plan = plan_supervised(image_index, splits, synthetic_index, config, image_size)
    model_root = Path(model_root)
    stats = MapRunStats()
    hashes: dict[str, str] = {}
    records = []
    for fit in plan:
        scores = _read_scores(model_root, fit.key)
        todo: dict[str, str] = {}
        for image_id, _ in fit.rows:
            path = paths[image_id]
            digest = hashes.setdefault(path, file_sha256(path)[:32])
            map_key = f"{fit.key}/{digest}"
            try:
                ok = map_store.read(map_key).shape == ImageSize.parse(image_size).hw and digest in scores
            except MapStoreError:
                ok = False
            if not ok:
                todo[map_key] = path
        stats.maps_cached += len({f"{fit.key}/{hashes[paths[i]]}" for i, _ in fit.rows}) - len(todo)
        if todo:
            model = _fitted(config, fit, image_size, device, model_root, stats)
            start = time.perf_counter()
            keys = list(todo)
            for index, anomaly_map, score in iter_supervised(
                model, [todo[k] for k in keys], image_size, config.batch_size, config.num_workers
            ):
                map_store.write(keys[index], anomaly_map)
                scores[keys[index].rsplit("/", 1)[1]] = score
            _write_scores(model_root, fit.key, scores)
            stats.maps_computed += len(todo)
            stats.predict_seconds += time.perf_counter() - start
        elif (model_root / fit.key / "detector.json").is_file():
            stats.models_reused += 1
        for image_id, seed in fit.rows:
            digest = hashes[paths[image_id]]
            stored = map_store.read(f"{fit.key}/{digest}")
            records.append(
                (
                    image_id,
                    NAME,
                    seed,
                    fit.key,
                    f"{fit.key}/{digest}",
                    float(stored.max()),
                    stored.shape[0],
                    stored.shape[1],
                    float(scores[digest]),
                )
            )
    index = pd.DataFrame.from_records(records, columns=list(INDEX_COLUMNS))
    index = index.astype(
        {
            "split_seed": "int64",
            "max_score": "float64",
            "height": "int32",
            "width": "int32",
            "pred_score": "float64",
            "image_id": str,
            "detector": str,
            "model_key": str,
            "map_key": str,
        }
    )
    return index.sort_values(["split_seed", "image_id"]).reset_index(drop=True), stats


def _fitted(
    config: SupervisedConfig,
    fit: SupervisedFit,
    image_size: SizeLike,
    device: str,
    model_root: Path,
    stats: MapRunStats,
) -> torch.nn.Module:
    directory, backbones = model_root / fit.key, store_backbone_cache(model_root)
    if (directory / "detector.json").is_file():
        try:
            model, _, _ = load_supervised(directory, device, backbones)
            stats.models_reused += 1
            return model
        except SupervisedLoadError as error:
            logger.warning("refitting damaged %s model: %s", NAME, error)
    start = time.perf_counter()
    model = fit_supervised(config, fit.items, image_size, device, backbones)
    save_supervised(model, config, image_size, directory)
    stats.models_fitted += 1
    stats.fit_seconds += time.perf_counter() - start
    return model


def _scores_path(model_root: Path, key: str) -> Path:
    return model_root / "_scores" / f"{key}.json"


def _read_scores(model_root: Path, key: str) -> dict[str, float]:
    path = _scores_path(model_root, key)
    try:
        values = json.loads(path.read_text())
        return {str(k): float(v) for k, v in values.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError, TypeError) as error:
        logger.warning("%s: damaged score cache, recomputing (%s)", path, error)
        return {}


def _write_scores(model_root: Path, key: str, scores: dict[str, float]) -> None:
    with atomic_path(_scores_path(model_root, key)) as temporary:
        temporary.write_text(json.dumps(dict(sorted(scores.items()))))


# ------------------------------------------------------------------------------- saving, loading


class SupervisedLoadError(RuntimeError):
    """A saved supervised model folder is missing, incomplete or damaged."""


def save_supervised(
    model: torch.nn.Module, config: SupervisedConfig, image_size: SizeLike, directory: str | Path
) -> Path:
    """Write ``detector.json`` + ``state_dict.pt`` atomically (`segad.storage.persistence.write_model_folder`)."""
    meta = {
        "format": FORMAT_VERSION,
        "detector": NAME,
        "image_size": ImageSize.parse(image_size).to_json(),
        "config": config.to_dict(),
    }
    return write_model_folder(model, meta, directory, "save_supervised")


def load_supervised(
    directory: str | Path, device: str = "cpu", backbone_cache_dir: str | Path | None = None
) -> tuple[torch.nn.Module, SupervisedConfig, ImageSize]:
    """Reload a saved model: random-weight scaffold + strict ``load_state_dict`` (weights_only)."""
    directory = Path(directory)
    try:
        meta, state = read_model_folder(directory, NAME)
        config = SupervisedConfig.from_dict(meta["config"])
        image_size = ImageSize.parse(meta["image_size"])
    except Exception as error:  # noqa: BLE001
        raise SupervisedLoadError(str(error)) from error
    model = build_supervised(config, image_size, backbone_cache_dir, for_loading=True)
    model.load_state_dict(state, strict=True)
    model.to(torch_device(device))
    model.eval()
    return model, config, image_size
