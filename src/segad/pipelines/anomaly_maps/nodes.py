"""Nodes of the anomaly-map stage: thin wrappers over `segad.detection.stage`."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from segad.detection.config import DetectorConfig, DetectorParams
from segad.detection.distribute import ShardOptions
from segad.detection.external import ExternalConfig, compute_external_maps, is_external
from segad.detection.stage import compute_anomaly_maps
from segad.detection.supervised_config import SupervisedConfig, is_supervised
from segad.detection.supervised_stage import compute_supervised_maps
from segad.storage.images import resolve_image_size
from segad.storage.map_store import MapStore

logger = logging.getLogger(__name__)


def make_anomaly_maps(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame | None,
    detector: DetectorParams,
    image_size: int | list[int] | str,
    device: str,
    map_store: MapStore,
    detector_store: Path,
    *,
    detector_name: str,
) -> pd.DataFrame:
    """Fit ``detector_name`` per distinct detector_train set and store raw maps; return its map_index.

    ``detector`` is the namespaced parameter block ``anomaly_maps.<detector_name>`` (typed: Kedro
    checks it before any node runs; the model arguments are checked by `DetectorConfig`); a missing or
    empty ``synthetic_index`` means no synthetic images. ``image_size`` is the parameter (an int,
    ``[height, width]`` or ``auto``, resolved from ``image_index``: `segad.storage.images.resolve_image_size`).
    Maps go into ``map_store``, fitted
    detectors into ``detector_store/<model_key>/`` (both handles come from the catalog). An
    external detector (`segad.detection.external.is_external`) reads its maps and fits nothing;
    ``supersimplenet_supervised`` trains on detector_train goods plus brf_train bad images,
    cross-fitted over brf_train (`segad.detection.supervised_stage`); its map_index adds ``pred_score``.
    The block's ``distribute`` entry (`ShardOptions`: chunk_size, torch_threads, resources) shards
    the work into fit and map tasks, on the Dask cluster when the node runs under
    `segad.runner.DaskRunner`, in this process otherwise; it changes neither the maps nor model_key.
    """
    synthetic = synthetic_index if synthetic_index is not None and len(synthetic_index) else None
    size = resolve_image_size(image_size, image_index)
    settings = detector.settings()
    if is_external(detector_name, settings):
        external = ExternalConfig.from_dict(detector_name, settings)
        map_index, stats = compute_external_maps(image_index, splits, synthetic, external, size, map_store)
    elif is_supervised(detector_name):  # trained on good + bad images, cross-fitted (docs/anomaly_maps.md)
        supervised = SupervisedConfig.from_dict(settings)
        map_index, stats = compute_supervised_maps(
            image_index, splits, synthetic, supervised, size, str(device), map_store, detector_store
        )
    else:
        shards = ShardOptions.from_dict(settings.pop("distribute", None))
        config = DetectorConfig.from_dict(detector_name, settings)
        map_index, stats = compute_anomaly_maps(
            image_index,
            splits,
            synthetic,
            config,
            size,
            str(device),
            map_store,
            detector_store,
            shards=shards,
        )
    rate = f" ({stats.images_per_second():.1f} img/s)" if stats.maps_computed else ""
    logger.info(
        "%s: %d models fitted (%.1f s), %d reused; %d maps computed%s, %d from cache",
        detector_name,
        stats.models_fitted,
        stats.fit_seconds,
        stats.models_reused,
        stats.maps_computed,
        rate,
        stats.maps_cached,
    )
    if stats.fit_tasks or stats.map_tasks:
        logger.info(
            "%s: sharded into %d fit tasks and %d map tasks on %d workers (%s)",
            detector_name,
            stats.fit_tasks,
            stats.map_tasks,
            len(stats.workers),
            ", ".join(stats.workers),
        )
    return map_index
