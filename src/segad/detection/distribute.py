"""Sharding of one detector's map stage into fit tasks and image-chunk map tasks (Dask or in-process).

`segad.detection.stage.compute_anomaly_maps` plans the run (which models, which maps are
missing); with `ShardOptions.chunk_size` set it hands the work to `run_shards` instead of its own
loop:

* one **fit task** per model_key whose saved detector is missing or damaged: fits the detector
  on its detector_train images and saves it into the detector store (``<model_root>/<key>/``,
  atomically, `save_detector`);
* one **map task** per chunk of ``chunk_size`` missing maps of one model: loads the saved
  detector (`load_detector`), computes the chunk's maps and writes each straight into the map
  store (`MapStore.write`: temp file + rename), returning only (map_key, max, shape) rows. A map
  task waits on its model's fit task; fits of different (category, split_seed) run at once.

Where the tasks run: on the `dask.distributed` cluster of the calling code when there is one (the
node runs inside a Dask worker under `segad.runner.DaskRunner`: `worker_client`; or a `Client`
is current in the driver), else one after the other in this process. Both give the same maps:
chunks are cut at multiples of ``batch_size`` so every inference batch holds the same images as
in an unsharded run, and ``torch_threads`` pins torch's intra-op thread count inside each task
(float32 reductions depend on it; Dask workers start with ``OMP_NUM_THREADS=1``).

Workers read images, the map store and the detector store by path: these must be one shared
filesystem mounted at the same path everywhere (docs/operations.md, Dask). Paths are made absolute
before tasks leave the caller, and a map task checks each image's content hash against its
map_key, so a worker that sees another file at the same path fails instead of storing a wrong map.
No Kedro here; the Dask plumbing (which client, thread pinning, gathering) is `segad.cluster`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segad.cluster import cluster_client, gather_all, torch_threads, worker_name

if TYPE_CHECKING:
    import torch

    from segad.detection.config import DetectorConfig
    from segad.detection.plan import ModelPlan
    from segad.storage.images import SizeLike
    from segad.storage.map_store import MapStore


@dataclass(frozen=True)
class ShardOptions:
    """The ``distribute`` setting of a detector block (``anomaly_maps.<d>.distribute``).

    Attributes:
        chunk_size: missing maps per map task (rounded up to a multiple of the detector's
            ``batch_size``); None = no sharding, the stage runs as one loop inside its node.
        torch_threads: torch intra-op threads inside every fit and map task (None = leave as is).
            Set it for bitwise-equal maps between runs on different machines/worker settings.
        resources: Dask worker resources every fit and map task needs, e.g. ``{GPU: 1}``.
    """

    chunk_size: int | None = None
    torch_threads: int | None = None
    resources: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ShardOptions:
        """Validated options; ValueError naming the setting."""
        values = dict(values or {})
        unknown = sorted(set(values) - {"chunk_size", "torch_threads", "resources"})
        if unknown:
            raise ValueError(f"distribute: unknown settings {unknown}; known: chunk_size, torch_threads, resources")
        for key in ("chunk_size", "torch_threads"):
            value = values.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"distribute.{key} must be a positive integer or null, got {value!r}")
        resources = {str(k): float(v) for k, v in dict(values.get("resources") or {}).items()}
        return cls(values.get("chunk_size"), values.get("torch_threads"), resources)


@dataclass(frozen=True)
class MapTask:
    """One chunk of missing maps of one model: ``items`` are (map_key, absolute image path)."""

    key: str
    chunk: int
    items: tuple[tuple[str, str], ...]


@dataclass
class ShardResult:
    """What `run_shards` did: per map_key its max score and shape; task counts and seconds."""

    max_scores: dict[str, float] = field(default_factory=dict)
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    fit_tasks: int = 0
    map_tasks: int = 0
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    workers: set[str] = field(default_factory=set)


def chunk_tasks(todo: dict[str, list[tuple[str, str]]], chunk_size: int, batch_size: int) -> list[MapTask]:
    """Map tasks per model_key (sorted) of ``todo`` ({key: [(map_key, path)]} in inference order):
    consecutive chunks of ``chunk_size`` rounded up to a multiple of ``batch_size``."""
    size = -(-int(chunk_size) // int(batch_size)) * int(batch_size)
    tasks = []
    for key in sorted(todo):
        items = [(map_key, str(Path(path).absolute())) for map_key, path in todo[key]]
        tasks += [MapTask(key, i // size, tuple(items[i : i + size])) for i in range(0, len(items), size)]
    return tasks


def saved_detector_ok(directory: Path) -> bool:
    """Whether ``directory`` holds a saved detector whose state file matches its checksum
    (`segad.storage.persistence.model_folder_problem`)."""
    from segad.storage.persistence import model_folder_problem

    return model_folder_problem(directory) is None


def fit_task(
    config: DetectorConfig, plan: ModelPlan, image_size: SizeLike, device: str, model_root: str, threads: int | None
) -> tuple[float, str]:
    """Fit and save the detector of ``plan`` under ``<model_root>/<plan.key>``: (seconds, worker)."""
    from segad.detection.fit import fit_detector
    from segad.detection.saved import save_detector
    from segad.storage.weights import store_backbone_cache

    start = time.perf_counter()
    with torch_threads(threads):
        model = fit_detector(
            config,
            plan.train_paths,
            image_size,
            device,
            work_dir=None,
            backbone_cache_dir=store_backbone_cache(model_root),
            quantile_paths=plan.quantile_paths,
        )
    save_detector(model, config, image_size, Path(model_root) / plan.key)
    return time.perf_counter() - start, worker_name()


def map_task(
    config: DetectorConfig,
    task: MapTask,
    image_size: SizeLike,
    device: str,
    model_root: str,
    map_store: MapStore,
    threads: int | None,
    *after: Any,
) -> tuple[list[tuple[str, float, tuple[int, int]]], float, str]:
    """Compute and store the maps of one chunk: ([(map_key, max, shape)], seconds, worker).

    ``after`` only orders the task after its model's fit task. Raises ValueError when an image's
    content hash is not the one in its map_key (the file at that path is another image here).
    """
    from segad.detection.inference import iter_maps
    from segad.storage.persistence import content_hash
    from segad.storage.weights import store_backbone_cache

    start = time.perf_counter()
    for map_key, path in task.items:
        if content_hash(path) != map_key.rsplit("/", 1)[-1]:
            raise ValueError(
                f"{path}: content differs from the image planned for map {map_key} "
                "(workers must see the caller's files at the same paths)"
            )
    rows = []
    with torch_threads(threads):
        model = _load_model(Path(model_root) / task.key, device, store_backbone_cache(model_root))
        for index, anomaly_map in iter_maps(
            model,
            [p for _, p in task.items],
            image_size,
            config.batch_size,
            config.num_workers,
            config.amp,
            None,
            config.channels_last,
            backend=config.backend,
            cache_key=task.key,
        ):
            map_key = task.items[index][0]
            map_store.write(map_key, anomaly_map)
            stored = map_store.read(map_key)  # what downstream stages will read (float16 if so stored)
            rows.append((map_key, float(stored.max()), (int(stored.shape[0]), int(stored.shape[1]))))
    return rows, time.perf_counter() - start, worker_name()


def run_shards(
    config: DetectorConfig,
    fits: Sequence[ModelPlan],
    maps: Sequence[MapTask],
    image_size: SizeLike,
    device: str,
    model_root: str | Path,
    map_store: MapStore,
    options: ShardOptions,
) -> ShardResult:
    """Run the fit tasks, then the map tasks (each after its model's fit) on the current Dask
    cluster, or in this process when there is none; failures propagate (other tasks cancelled)."""
    from segad.storage.map_store import MapStore

    root = str(Path(model_root).absolute())
    store = MapStore(Path(map_store.root).absolute(), map_store.dtype)
    fits = [
        replace(
            p,
            train_paths=_absolute(p.train_paths),
            quantile_paths=None if p.quantile_paths is None else _absolute(p.quantile_paths),
        )
        for p in fits
    ]
    threads = options.torch_threads
    result = ShardResult(fit_tasks=len(fits), map_tasks=len(maps))
    with cluster_client() as client:
        if client is None:
            fitted = [fit_task(config, p, image_size, device, root, threads) for p in fits]
            mapped = [map_task(config, t, image_size, device, root, store, threads) for t in maps]
        else:
            fitted, mapped = _on_cluster(client, config, fits, maps, image_size, device, root, store, options)
    for seconds, worker in fitted:
        result.fit_seconds += seconds
        result.workers.add(worker)
    for rows, seconds, worker in mapped:
        result.predict_seconds += seconds
        result.workers.add(worker)
        for map_key, top, shape in rows:
            result.max_scores[map_key], result.shapes[map_key] = top, shape
    return result


def _on_cluster(
    client: Any,
    config: DetectorConfig,
    fits: Sequence[ModelPlan],
    maps: Sequence[MapTask],
    image_size: SizeLike,
    device: str,
    root: str,
    store: MapStore,
    options: ShardOptions,
) -> tuple[list, list]:
    token = uuid.uuid4().hex[:8]
    resources = options.resources or None
    threads = options.torch_threads
    fit_futures = {
        p.key: client.submit(
            fit_task,
            config,
            p,
            image_size,
            device,
            root,
            threads,
            pure=False,
            key=f"segad-fit-{config.name}-{p.key}-{token}",
            resources=resources,
        )
        for p in fits
    }
    map_futures = [
        client.submit(
            map_task,
            config,
            t,
            image_size,
            device,
            root,
            store,
            threads,
            *([fit_futures[t.key]] if t.key in fit_futures else []),
            pure=False,
            key=f"segad-maps-{config.name}-{t.key}-{t.chunk:05d}-{token}",
            resources=resources,
        )
        for t in maps
    ]
    fitted, mapped = gather_all(client, list(fit_futures.values()), map_futures)
    return fitted, mapped


_LOADED: dict[tuple[str, str, str], torch.nn.Module] = {}


def _load_model(directory: Path, device: str, backbones: Path) -> torch.nn.Module:
    """`load_detector` of ``directory``, kept for the next chunk of the same saved model in this
    process (one model at a time; keyed by its state checksum, so a refit is reloaded)."""
    from segad.detection.saved import load_detector

    digest = json.loads((directory / "detector.json").read_text()).get("state_sha256", "")
    cache_key = (str(directory), str(digest), device)
    if cache_key not in _LOADED:
        _LOADED.clear()
        _LOADED[cache_key] = load_detector(directory, device, backbones)[0]
    return _LOADED[cache_key]


def _absolute(paths: Sequence[str]) -> list[str]:
    return [str(Path(p).absolute()) for p in paths]
