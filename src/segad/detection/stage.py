"""The anomaly-map stage of one detector: plan models, fit or reuse them, store every needed map.

Owns the map index (`MAP_INDEX_COLUMNS`: one row per needed (image, split_seed), read by the
feature stage) and the cache logic: a map is stored under ``<model_key>/<image content hash>``
and a fitted detector under ``<model_root>/<model_key>/``, so a rerun computes only what is
missing or damaged. Orchestration only; the model work is in `fit`, `saved`, `inference`,
imported inside the functions so that `MAP_INDEX_COLUMNS` can be imported (by the feature stage)
without torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segad.detection.plan import ModelPlan
from segad.schemas import MapIndex, columns
from segad.storage.images import ImageSize, SizeLike
from segad.storage.weights import store_backbone_cache
from segad.vocabulary import FEATURE_ROLES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from segad.detection.config import DetectorConfig
    from segad.detection.distribute import ShardOptions
    from segad.storage.map_store import MapStore

logger = logging.getLogger(__name__)


@dataclass
class MapRunStats:
    """What one detector's map run did: models fitted/reused, maps computed/cached, seconds."""

    models_fitted: int = 0
    models_reused: int = 0
    maps_computed: int = 0
    maps_cached: int = 0
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    fit_tasks: int = 0  # sharded runs (`segad.detection.distribute`): tasks and the workers that ran them
    map_tasks: int = 0
    workers: tuple[str, ...] = ()

    def images_per_second(self) -> float:
        return self.maps_computed / self.predict_seconds if self.predict_seconds else float("nan")


# ------------------------------------------------------------------------------ the map stage run


#: The map index columns every detector writes (optional ones of `segad.schemas.MapIndex` left out).
MAP_INDEX_COLUMNS = columns(MapIndex)


def plan_models(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    config: DetectorConfig,
    image_size: SizeLike,
    hashes: dict[str, str],
) -> dict[tuple[str, int], ModelPlan]:
    """``{(category, split_seed): ModelPlan}``: model_key, detector_train paths and, with
    EfficientAD's ``quantiles_from: brf_train``, the good brf_train paths of its map quantiles.

    One-class detectors are fitted per category (a product), never on several categories mixed;
    seeds whose detector_train (and quantile) sets are equal share a key. Raises ValueError when a
    detector_train image is not good (label != 0) or not in the index, or when a category has no
    detector_train image (or no good brf_train image for quantiles) for a seed.
    """
    from segad.detection.saved import model_key

    indexed = image_index.set_index("image_id")
    paths, labels, categories = indexed["path"], indexed["label"], indexed["category"]
    plan: dict[tuple[str, int], ModelPlan] = {}
    train = splits[splits["role"] == "detector_train"]
    missing = sorted(set(train["image_id"]) - set(paths.index))
    if missing:
        raise ValueError(f"splits: detector_train images not in image_index: {missing[:5]}")
    train = train.assign(category=train["image_id"].map(categories))
    held_out = splits[(splits["role"] == "brf_train") & splits["image_id"].isin(paths.index)]
    held_out = held_out[held_out["image_id"].map(labels).astype(int) == 0]
    held_out = held_out.assign(category=held_out["image_id"].map(categories))
    for seed in sorted(splits["split_seed"].unique()):
        for category in sorted(categories.unique()):
            ids = sorted(train.loc[(train["split_seed"] == seed) & (train["category"] == category), "image_id"])
            if not ids:
                raise ValueError(f"splits: category {category!r} has no detector_train image for split_seed {seed}")
            bad = [i for i in ids if int(labels[i]) != 0]
            if bad:
                raise ValueError(f"splits: detector_train holds bad images for split_seed {seed}: {bad[:5]}")
            train_paths = [str(paths[i]) for i in ids]
            quantile_paths: list[str] | None = None
            if config.quantiles_from == "brf_train":
                chosen = (held_out["split_seed"] == seed) & (held_out["category"] == category)
                quantile_paths = [str(paths[i]) for i in sorted(held_out.loc[chosen, "image_id"])]
                if not quantile_paths:
                    raise ValueError(
                        f"splits: category {category!r} has no good brf_train image for split_seed {seed} "
                        f"(detector {config.name}: quantiles_from: brf_train)"
                    )
            key = model_key(
                config,
                image_size,
                [hashes[p] for p in train_paths],
                None if quantile_paths is None else [hashes[p] for p in quantile_paths],
            )
            plan[(str(category), int(seed))] = ModelPlan(key, train_paths, quantile_paths)
    return plan


def compute_anomaly_maps(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame | None,
    config: DetectorConfig,
    image_size: SizeLike,
    device: str,
    map_store: MapStore,
    model_root: str | Path,
    progress: bool = True,
    shards: ShardOptions | None = None,
) -> tuple[pd.DataFrame, MapRunStats]:
    """Fit (or reuse) one detector per distinct detector_train set and store every needed raw map.

    Needed maps: images with role brf_train or test in ``splits`` and every row of
    ``synthetic_index`` (synthetic defects), per split_seed. A map is cached under
    ``<model_key>/<image content hash>``: a second run reads it back instead of computing it; a
    damaged file is recomputed. Fitted detectors live in ``<model_root>/<model_key>/`` and are
    reused when valid. With ``shards.chunk_size`` the fits and chunks of maps run as tasks on the
    current Dask cluster, or one after the other here without one (`segad.detection.distribute`):
    same maps, same map index.

    Returns:
        The map index (`MAP_INDEX_COLUMNS`, one row per needed (image, split_seed)) and run stats.
    """
    from segad.detection.config import DetectorConfigError
    from segad.detection.inference import iter_maps
    from segad.storage.persistence import content_hash

    image_size = ImageSize.parse(image_size)
    if config.name == "efficient_ad" and min(image_size.hw) < 256:
        raise DetectorConfigError(
            f"efficient_ad needs image_size >= 256 on both sides (its autoencoder), got {image_size}"
        )
    needed = needed_maps(image_index, splits, synthetic_index)
    paths = image_index.set_index("image_id")["path"].astype(str)

    train_ids = splits.loc[splits["role"] == "detector_train", "image_id"]
    all_paths = sorted(set(needed["path"]) | set(paths[paths.index.isin(train_ids)]))
    hashes = {p: content_hash(p) for p in _progress(all_paths, progress, f"{config.name}: hashing images")}
    plan = plan_models(image_index, splits, config, image_size, hashes)
    wanted = set(zip(needed["category"], needed["split_seed"]))
    unplanned = sorted(wanted - set(plan))
    if unplanned:
        raise ValueError(f"synthetic_index: (category, split_seed) {unplanned[:5]} not in splits / image_index")
    needed["model_key"] = [plan[(c, int(s))].key for c, s in zip(needed["category"], needed["split_seed"])]
    needed["map_key"] = needed["model_key"] + "/" + needed["path"].map(hashes)

    stats = MapRunStats()
    max_scores: dict[str, float] = {}
    shapes: dict[str, tuple[int, int]] = {}
    model_root = Path(model_root)
    if shards is not None and shards.chunk_size is not None:
        _run_sharded(needed, plan, config, image_size, device, map_store, model_root, shards, stats, max_scores, shapes)
        return map_index_table(needed, config.name, max_scores, shapes), stats
    for key in sorted(needed["model_key"].unique()):
        model_plan = next(p for p in plan.values() if p.key == key)
        todo = _missing_maps(needed, key, map_store, image_size, stats, max_scores, shapes)
        model = _fitted_model(config, model_plan, image_size, device, model_root, stats, need_model=bool(todo))
        if not todo:
            continue
        start = time.perf_counter()
        label = f"{config.name} maps [{key[:8]}]" if progress else None
        assert model is not None, "a model is loaded or fitted whenever maps are to be computed"
        for index, anomaly_map in iter_maps(
            model,
            [p for _, p in todo],
            image_size,
            config.batch_size,
            config.num_workers,
            config.amp,
            label,
            config.channels_last,
            backend=config.backend,
            cache_key=key,
        ):
            map_key = todo[index][0]
            map_store.write(map_key, anomaly_map)
            stored = map_store.read(map_key)  # what downstream stages will read (float16 if so stored)
            max_scores[map_key], shapes[map_key] = float(stored.max()), stored.shape
        stats.maps_computed += len(todo)
        stats.predict_seconds += time.perf_counter() - start
        del model

    return map_index_table(needed, config.name, max_scores, shapes), stats


def _missing_maps(
    needed: pd.DataFrame,
    key: str,
    map_store: MapStore,
    image_size: SizeLike,
    stats: MapRunStats,
    max_scores: dict[str, float],
    shapes: dict[str, tuple[int, int]],
) -> list[tuple[str, str]]:
    """(map_key, path) of model ``key``'s maps to compute, in inference order; the cached ones
    go into ``max_scores``/``shapes`` and are counted in ``stats``."""
    rows = needed[needed["model_key"] == key].drop_duplicates("map_key")
    todo: list[tuple[str, str]] = []
    for map_key, path in zip(rows["map_key"], rows["path"], strict=True):
        stored = cached_map(map_store, map_key, image_size)
        if stored is None:
            todo.append((map_key, path))
            continue
        max_scores[map_key], shapes[map_key] = float(stored.max()), stored.shape
        stats.maps_cached += 1
    return todo


def _run_sharded(
    needed: pd.DataFrame,
    plan: dict[tuple[str, int], ModelPlan],
    config: DetectorConfig,
    image_size: SizeLike,
    device: str,
    map_store: MapStore,
    model_root: Path,
    shards: ShardOptions,
    stats: MapRunStats,
    max_scores: dict[str, float],
    shapes: dict[str, tuple[int, int]],
) -> None:
    """The sharded run: the same cache decisions as the loop, work by `distribute.run_shards`."""
    from segad.detection.distribute import chunk_tasks, run_shards, saved_detector_ok

    todo: dict[str, list[tuple[str, str]]] = {}
    fits: list[ModelPlan] = []
    for key in sorted(needed["model_key"].unique()):
        todo[key] = _missing_maps(needed, key, map_store, image_size, stats, max_scores, shapes)
        directory = model_root / key
        if saved_detector_ok(directory):  # verified before reuse, also when no map is missing
            stats.models_reused += 1
        else:
            if directory.exists():
                logger.warning("refitting damaged detector: %s", directory)
            fits.append(next(p for p in plan.values() if p.key == key))
    tasks = chunk_tasks({k: v for k, v in todo.items() if v}, int(shards.chunk_size or 1), config.batch_size)
    done = run_shards(config, fits, tasks, image_size, device, model_root, map_store, shards)
    max_scores.update(done.max_scores)
    shapes.update(done.shapes)
    stats.models_fitted += len(fits)
    stats.maps_computed += sum(len(t.items) for t in tasks)
    stats.fit_seconds += done.fit_seconds
    stats.predict_seconds += done.predict_seconds
    stats.fit_tasks, stats.map_tasks, stats.workers = done.fit_tasks, done.map_tasks, tuple(sorted(done.workers))


def needed_maps(image_index: pd.DataFrame, splits: pd.DataFrame, synthetic_index: pd.DataFrame | None) -> pd.DataFrame:
    """The maps a run needs: ``image_id, split_seed, path, category`` per brf_train/test row of
    ``splits`` and per row of ``synthetic_index``; ValueError naming the table for missing columns
    or images."""
    import pandas as pd

    for name, table, needed in (
        ("image_index", image_index, ("image_id", "path", "label", "category")),
        ("splits", splits, ("image_id", "split_seed", "role")),
    ):
        absent = [c for c in needed if c not in table.columns]
        if absent:
            raise ValueError(f"{name}: missing columns {absent}")
    synthetic = synthetic_index if synthetic_index is not None else pd.DataFrame()
    if len(synthetic):
        absent = [c for c in ("image_id", "split_seed", "path", "category") if c not in synthetic.columns]
        if absent:
            raise ValueError(f"synthetic_index: missing columns {absent}")

    paths = image_index.set_index("image_id")["path"].astype(str)
    needed = splits[splits["role"].isin(FEATURE_ROLES)][["image_id", "split_seed"]].copy()
    unknown = sorted(set(needed["image_id"]) - set(paths.index))
    if unknown:
        raise ValueError(f"splits: images not in image_index: {unknown[:5]}")
    needed["path"] = needed["image_id"].map(paths)
    needed["category"] = needed["image_id"].map(image_index.set_index("image_id")["category"])
    if len(synthetic):
        needed = pd.concat([needed, synthetic[["image_id", "split_seed", "path", "category"]].astype({"path": str})])
    needed["split_seed"] = needed["split_seed"].astype("int64")
    needed["category"] = needed["category"].astype(str)
    return needed


def cached_map(map_store: MapStore, map_key: str, image_size: SizeLike) -> np.ndarray | None:
    """The stored (height, width) map of ``map_key`` at ``image_size``, or None when absent, damaged
    (logged) or of another size: then it is to be (re)computed."""
    from segad.storage.map_store import MapStoreError

    try:
        stored = map_store.read(map_key)
    except MapStoreError as error:
        if map_store.path(map_key).exists():
            logger.warning("recomputing damaged map: %s", error)
        return None
    return stored if stored.shape == ImageSize.parse(image_size).hw else None


def map_index_table(
    needed: pd.DataFrame,
    detector: str,
    max_scores: dict[str, float],
    shapes: dict[str, tuple[int, int]],
    extra: Sequence[str] = (),
) -> pd.DataFrame:
    """The map index (`MAP_INDEX_COLUMNS`, then the ``extra`` columns of ``needed``; sorted by
    split_seed, image_id) of ``needed`` rows that carry ``model_key`` and ``map_key``;
    ``max_scores``/``shapes`` are per map_key, of the stored maps (height, width in pixels)."""
    index = needed.assign(
        detector=detector,
        max_score=needed["map_key"].map(max_scores).astype("float64"),
        height=needed["map_key"].map(lambda k: shapes[k][0]).astype("int32"),
        width=needed["map_key"].map(lambda k: shapes[k][1]).astype("int32"),
    )
    index = index[[*MAP_INDEX_COLUMNS, *extra]].sort_values(["split_seed", "image_id"]).reset_index(drop=True)
    return index.astype({"image_id": str, "detector": str, "model_key": str, "map_key": str})


def _fitted_model(
    config: DetectorConfig,
    plan: ModelPlan,
    image_size: SizeLike,
    device: str,
    model_root: Path,
    stats: MapRunStats,
    need_model: bool,
) -> torch.nn.Module | None:
    """Load the saved detector of ``plan.key`` if valid, else fit and save it (always kept on disk).

    A saved detector is reused only when its ``state_dict.pt`` matches its recorded checksum,
    also when no map is missing (the bundle copies it later): a damaged one is refitted, and the
    log says so."""
    from segad.detection.fit import fit_detector
    from segad.detection.saved import load_detector, save_detector
    from segad.storage.persistence import DetectorLoadError, model_folder_problem

    key, train_paths = plan.key, plan.train_paths
    directory = model_root / key
    backbones = store_backbone_cache(model_root)
    if directory.exists():
        problem = model_folder_problem(directory)
        if problem is not None:
            logger.warning("refitting damaged detector: %s", problem)
        elif not need_model:
            stats.models_reused += 1
            return None
        else:
            try:
                model, _, _ = load_detector(directory, device, backbones)
                stats.models_reused += 1
                return model
            except DetectorLoadError as error:
                logger.warning("refitting damaged detector: %s", error)
    start = time.perf_counter()
    logger.info("fitting %s [%s] on %d detector_train images", config.name, key, len(train_paths))
    model = fit_detector(
        config,
        train_paths,
        image_size,
        device,
        work_dir=None,
        backbone_cache_dir=backbones,
        quantile_paths=plan.quantile_paths,
    )
    save_detector(model, config, image_size, directory)
    stats.models_fitted += 1
    stats.fit_seconds += time.perf_counter() - start
    return model


def _progress(items: Sequence, enabled: bool, desc: str):  # noqa: ANN202
    from segad.logs import progress

    return progress(items, desc=desc, unit="img", disable=not enabled or len(items) < 200, leave=False)
