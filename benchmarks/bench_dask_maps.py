"""Benchmark of the sharded map stage on a dask.distributed LocalCluster (not a timed test).

Builds a demo dataset (`segad.ingestion.demo`), its image index and high_shot splits, then runs
one detector's map stage (`segad.detection.stage.compute_anomaly_maps` with
``ShardOptions(chunk_size, torch_threads=1)``) from scratch (empty map and detector stores) on a
LocalCluster of 1 and of 2 worker processes (1 thread each). Worker processes import the model
code (segad, anomalib, Lightning) before the clock starts, so the times are fits + maps, not interpreter start-up. Prints wall
time, speed-up against 1 worker, task counts and the peak RSS of each worker process, and checks
that both runs stored the same map bytes. Numbers go to docs/operations.md (Dask).

Run (from the repository root):
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dask_maps.py --detector padim --size 64 \\
        --train-good 40 --test 40 --seeds 0,1 --chunk-size 16 --workers 1,2
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # cheap offline detectors (packaged EfficientNet-Lite0)
    "padim": {
        "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 32},
        "weights": "packaged:efficientnet_lite0",
        "trainer": {"max_epochs": 1},
        "batch_size": 8,
    },
    "patchcore": {
        "model": {
            "backbone": "tf_efficientnet_lite0",
            "layers": ["blocks.2", "blocks.4"],
            "coreset_sampling_ratio": 0.01,
            "num_neighbors": 9,
        },
        "weights": "packaged:efficientnet_lite0",
        "trainer": {"max_epochs": 1},
        "batch_size": 8,
    },
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_up() -> None:
    import anomalib.models  # noqa: F401  (imported lazily by the first fit otherwise)
    import lightning.pytorch  # noqa: F401

    import segad.detection.fit  # noqa: F401
    import segad.detection.inference  # noqa: F401


def build_inputs(workdir: Path, size: int, train_good: int, test: int, seeds: tuple[int, ...]):
    from segad.ingestion.demo import DemoConfig, write_demo
    from segad.ingestion.layouts import build_index
    from segad.ingestion.splits import SplitConfig, make_splits

    n_bad = max(2, test // 2)
    demo = DemoConfig(
        n_train_good=train_good,
        n_train_bad=n_bad,
        n_test_good=test - test // 2,
        n_test_bad=test // 2,
        n_test_unseen=0,
        image_size=size,
        unseen_defects=(),
    )
    root = write_demo(workdir / "demo", demo)
    index, _ = build_index("demo", root)
    return index, make_splits(index, SplitConfig(benchmark="high_shot", seeds=seeds))


def run_once(workers: int, args, index, splits, workdir: Path) -> dict:
    from distributed import Client, LocalCluster

    from segad.detection.config import DetectorConfig
    from segad.detection.distribute import ShardOptions
    from segad.detection.stage import compute_anomaly_maps
    from segad.storage.map_store import MapStore

    out = workdir / f"run{workers}"
    shutil.rmtree(out, ignore_errors=True)
    config = DetectorConfig.from_dict(args.detector, SETTINGS[args.detector])
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_up)
        start = time.perf_counter()
        map_index, stats = compute_anomaly_maps(
            index,
            splits,
            None,
            config,
            args.size,
            "cpu",
            MapStore(out / "maps"),
            out / "models",
            progress=False,
            shards=ShardOptions(chunk_size=args.chunk_size, torch_threads=1),
        )
        wall = time.perf_counter() - start
        rss = sorted(client.run(_peak_rss_mb).values())
    maps = {key: (out / "maps" / f"{key}.npz").read_bytes() for key in map_index["map_key"].unique()}
    return {"workers": workers, "wall": wall, "stats": stats, "rss": rss, "maps": maps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="padim", choices=sorted(SETTINGS))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train-good", type=int, default=40)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dask_maps_"))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    index, splits = build_inputs(workdir, args.size, args.train_good, args.test, seeds)
    print(
        f"demo: {len(index)} images at {args.size} px, seeds {list(seeds)}, {args.detector}, "
        f"chunk_size {args.chunk_size}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    runs = [run_once(int(n), args, index, splits, workdir) for n in args.workers.split(",")]
    base = runs[0]["wall"]
    print(
        f"{'workers':>7} {'wall s':>8} {'speed-up':>8} {'fits':>4} {'map tasks':>9} {'maps':>5} "
        f"{'fit s (sum)':>11} {'map s (sum)':>11}  peak RSS per worker (MB)"
    )
    for run in runs:
        s = run["stats"]
        print(
            f"{run['workers']:>7} {run['wall']:>8.1f} {base / run['wall']:>8.2f} {s.models_fitted:>4} "
            f"{s.map_tasks:>9} {s.maps_computed:>5} {s.fit_seconds:>11.1f} {s.predict_seconds:>11.1f}  "
            + ", ".join(f"{r:.0f}" for r in run["rss"])
        )
    same = all(run["maps"] == runs[0]["maps"] for run in runs)
    print(f"map bytes identical across worker counts: {same}; load average now {os.getloadavg()[0]:.1f}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
