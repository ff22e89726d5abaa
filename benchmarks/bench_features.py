"""Speed and memory of the per-segment feature computation (segad.segments.features).

Compares, on the same maps:
- reference: the straightforward loop of the SegAD reference code, one image at a time:
  boolean mask per segment, numpy.quantile, scipy.stats.skew / kurtosis, mean;
- segad.segments.features: `segment_statistics` (the compiled kernel of segad.segments.kernels) on batches
  of maps with the static label map, on one thread and on every CPU (`--threads`);
- per-image labels: the general (N, H, W) label path;
- torch: `segment_statistics_torch` on CPU tensors, and on CUDA when available;
and reports features/s (one feature vector = all segments x 4 statistics of one map), the ratio
to the reference, and the peak traced memory (tracemalloc) of streaming N maps from a real
`MapStore` in batches, for growing N (should stay flat).

Maps: float32 gamma noise with a few bright blobs at 256 x 256 (independent pixel noise: the
hardest case for the candidate search, whose candidates are then spread over every row); labels:
the demo's 6-segment static map (`segad.ingestion.demo.segmentation_map`). With ``--map-store FOLDER``
(repeatable, e.g. data/03_primary/patchcore/maps after `make run`) the reference loop and the
static path are also timed on up to ``--maps`` real stored maps of that size.

With ``--compare-segmentations`` it instead measures, on the project's own run (image_index,
splits and anomaly maps under data/, e.g. the demo), the test AUROC (mean +- std over seeds) of
the BRF with the configured static map, the automatic k-means map (several segment counts) and a
single segment, for every detector alone and all together.

Usage:
    .venv/bin/python benchmarks/bench_features.py                   # defaults below
    .venv/bin/python benchmarks/bench_features.py --map-store data/03_primary/patchcore/maps \
        --map-store data/03_primary/padim/maps                      # + the demo run's real maps
    .venv/bin/python benchmarks/bench_features.py --ref-maps 32 --maps 512 --stream 256 1024
    .venv/bin/python benchmarks/bench_features.py --compare-segmentations --auto-segments 4 6
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc

import numpy as np

from segad.ingestion.demo import segmentation_map
from segad.segments.features import stream_statistics
from segad.segments.features_torch import segment_statistics_torch
from segad.segments.reference import reference_segment_statistics
from segad.segments.statistics import SegmentMap, default_threads, segment_statistics


def make_maps(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    maps = (rng.gamma(2.0, 1.0, (n, size, size)) * 2.0 + 15.0).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        for _ in range(3):
            cy, cx, r = rng.integers(0, size, 2).tolist() + [rng.uniform(3, 12)]
            maps[i] += (8.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))).astype(np.float32)
    return maps


def read_store(folder: str, n: int, shape: tuple[int, int]) -> np.ndarray | None:
    """Up to `n` stored maps of `shape` from a MapStore folder, float32 (N, H, W)."""
    from pathlib import Path

    from segad.storage.map_store import MapStore

    store = MapStore(folder)
    keys = sorted(str(p.relative_to(folder))[: -len(".npz")] for p in Path(folder).rglob("*.npz"))
    maps = [m for m in (store.read(k) for k in keys[: 4 * n]) if m.shape == shape][:n]
    return np.stack(maps) if maps else None


def timed(fn, repeat: int = 1) -> float:
    fn()  # warm-up
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ref-maps", type=int, default=32, help="maps timed with the reference loop")
    parser.add_argument("--maps", type=int, default=256, help="maps timed with the vectorised paths")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--stream", type=int, nargs="*", default=[128, 512], help="N for the memory test")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=None,
        help="thread counts for the static path (default: 1 and every CPU)",
    )
    parser.add_argument("--map-store", action="append", default=[], help="folder of stored .npz maps")
    parser.add_argument("--compare-segmentations", action="store_true")
    parser.add_argument("--auto-segments", type=int, nargs="*", default=[4, 6])
    args = parser.parse_args()
    if args.compare_segmentations:
        compare_segmentations(args.auto_segments)
        return

    labels = segmentation_map(args.size).astype(np.int64)
    n_segments = int(labels.max()) + 1
    segment_map = SegmentMap.from_labels(labels, n_segments)
    maps = make_maps(max(args.maps, args.ref_maps), args.size)
    print(
        f"maps {args.size}x{args.size} float32, {n_segments} segments (pixels per segment "
        f"{segment_map.counts.tolist()}), batch {args.batch_size}"
    )

    ref_maps = maps[: args.ref_maps]
    t_ref = timed(lambda: [reference_segment_statistics(m, labels, n_segments) for m in ref_maps], args.repeat)
    rate_ref = len(ref_maps) / t_ref

    vec_maps = maps[: args.maps]

    threads = args.threads or sorted({1, default_threads()})

    def vectorised(maps_, n_threads):
        def run():
            for s in range(0, len(maps_), args.batch_size):
                segment_statistics(maps_[s : s + args.batch_size], segment_map, threads=n_threads)

        return run

    rates_vec = {t: len(vec_maps) / timed(vectorised(vec_maps, t), args.repeat) for t in threads}

    per_image = np.broadcast_to(labels, (args.batch_size, *labels.shape)).copy()

    def per_image_path(n_threads):
        def run():
            for s in range(0, len(vec_maps), args.batch_size):
                batch = vec_maps[s : s + args.batch_size]
                segment_statistics(batch, per_image[: len(batch)], n_segments, threads=n_threads)

        return run

    rates_per_image = {t: len(vec_maps) / timed(per_image_path(t), args.repeat) for t in threads}

    rows = [("reference loop (numpy/scipy, 1 image at a time)", rate_ref)]
    rows += [
        (f"segad.segments.features, static labels, {t} thread{'s' * (t > 1)}", rate) for t, rate in rates_vec.items()
    ]
    rows += [
        (f"segad.segments.features, per-image labels, {t} thread{'s' * (t > 1)}", rate)
        for t, rate in rates_per_image.items()
    ]

    try:
        import torch

        t_maps = torch.from_numpy(vec_maps)
        t_labels = torch.from_numpy(labels)

        def torch_path(device):
            def run():
                for s in range(0, len(t_maps), args.batch_size):
                    segment_statistics_torch(t_maps[s : s + args.batch_size].to(device), t_labels, n_segments)
                if device == "cuda":
                    torch.cuda.synchronize()

            return run

        rows.append(("torch, CPU tensors", len(vec_maps) / timed(torch_path("cpu"), 1)))
        if torch.cuda.is_available():
            on_gpu = t_maps.cuda()

            def gpu_resident():
                for s in range(0, len(on_gpu), args.batch_size):
                    segment_statistics_torch(on_gpu[s : s + args.batch_size], t_labels, n_segments)
                torch.cuda.synchronize()

            rows.append(
                (f"torch, maps on {torch.cuda.get_device_name()}", len(vec_maps) / timed(gpu_resident, args.repeat))
            )
    except ImportError:
        pass

    # check the paths agree before printing speeds
    check = segment_statistics(maps[:8], segment_map)
    ref = np.stack([reference_segment_statistics(m.astype(np.float64), labels, n_segments) for m in maps[:8]])
    rel = np.nanmax(np.abs(check - ref) / np.maximum(np.abs(ref), 1e-300))
    print(f"max relative difference segad.segments.features vs reference (float64): {rel:.2e}\n")

    print(f"{'path':52s} {'maps/s':>10s} {'x reference':>12s}")
    for name, rate in rows:
        print(f"{name:52s} {rate:10.1f} {rate / rate_ref:12.1f}")

    for folder in args.map_store:
        real = read_store(folder, max(args.maps, args.ref_maps), labels.shape)
        if real is None:
            print(f"\n{folder}: no stored {labels.shape} maps")
            continue
        t_ref = timed(
            lambda real=real: [reference_segment_statistics(m, labels, n_segments) for m in real[: args.ref_maps]],
            args.repeat,
        )
        ref_rate = min(len(real), args.ref_maps) / t_ref
        print(f"\n{len(real)} stored maps of {folder}")
        print(f"  {'reference loop':50s} {ref_rate:10.1f} {1.0:12.1f}")
        for t in threads:
            rate = len(real) / timed(vectorised(real, t), args.repeat)
            print(f"  {f'static labels, {t} thread' + 's' * (t > 1):50s} {rate:10.1f} {rate / ref_rate:12.1f}")

    if args.stream:
        print(f"\nstreaming from a MapStore (batch {args.batch_size}): peak traced memory")
        from segad.storage.map_store import MapStore

        with tempfile.TemporaryDirectory() as folder:
            store = MapStore(folder)
            top = max(args.stream)
            keys = [f"bench/{i:06d}" for i in range(top)]
            for i, key in enumerate(keys):
                store.write(key, maps[i % len(maps)])
            for n in args.stream:
                start = time.perf_counter()
                stream_statistics(keys[:n], store.read, labels, n_segments, args.batch_size)
                elapsed = time.perf_counter() - start  # timed without tracemalloc, which slows reads
                tracemalloc.start()
                stream_statistics(keys[:n], store.read, labels, n_segments, args.batch_size)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                print(f"  N = {n:6d}: peak {peak / 2**20:7.1f} MiB, {n / elapsed:7.1f} maps/s (incl. reading npz)")


def compare_segmentations(auto_segments: list[int]) -> None:
    """Test AUROC of the BRF per segmentation on the project's data (run from the project root)."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from segad.evaluation.metrics import auroc
    from segad.meta.brf import BRFConfig, run_brf
    from segad.segments.features import build_feature_table, feature_rows
    from segad.segments.resolve import resolve_segmentation
    from segad.segments.segment_maps import SegmentMapConfig

    loader = OmegaConfigLoader("conf", base_env="base", default_run_env="local", env="local")
    params, catalog = loader["parameters"], DataCatalog.from_config(loader["catalog"])
    detectors = list(params["detectors"])
    index, splits = catalog.load("image_index"), catalog.load("splits")
    synthetic = catalog.load("synthetic_index") if catalog.exists("synthetic_index") else None
    map_indexes = {d: catalog.load(f"{d}.map_index") for d in detectors}
    stores = {d: catalog.load(f"{d}.map_store") for d in detectors}
    rows = feature_rows(index, splits, synthetic)
    goods = index[(index["split"] == "train") & (index["label"] == 0)]
    paths = goods.groupby("category")["path"].apply(list).to_dict()
    configured = SegmentMapConfig(**params["segmentation"]).for_dataset(
        params["dataset"]["layout"], params["dataset"]["root"]
    )
    configs = {f"{configured.method} (configured)": configured, "single segment": SegmentMapConfig(method="single")}
    for k in auto_segments:
        configs[f"auto k-means, {k} segments"] = SegmentMapConfig(method="auto", auto_segments=k)
    config = BRFConfig(**params["brf"]["model"])
    labels = index.set_index("image_id")["label"]
    print(
        f"{'segmentation':30s} {'method':28s} AUROC (%) mean +- sample std over seeds {sorted(int(s) for s in splits.split_seed.unique())}"
    )
    for name, seg_config in configs.items():
        segmentation = resolve_segmentation(seg_config, sorted(index["category"].unique()), params["image_size"], paths)
        table = build_feature_table(rows, map_indexes, {d: stores[d].read for d in detectors}, segmentation)
        _, scores = run_brf(table, detectors, config)
        scores = scores.assign(label=labels.reindex(scores["image_id"]).to_numpy())
        for method, group in scores.groupby("method", sort=False):
            per_seed = [auroc(g["label"], g["score"]) for _, g in group.groupby("split_seed")]
            print(f"{name:30s} {method:28s} {100 * np.mean(per_seed):6.2f} +- {100 * np.std(per_seed, ddof=1):5.2f}")


if __name__ == "__main__":
    main()
