"""Benchmarks of the anomaly-map stage (not timed tests). Prints tables; numbers go to docs/anomaly_maps.md.

Four parts:

``--backends patchcore,padim``  inference images/s per detector and CPU backend (eager with the
    conf's channels_last, openvino, onnxruntime) on the same fitted model and images, best of
    ``--repeats``, side by side in one process; the largest map difference to eager (relative to
    the eager map range); and the pipeline's own per-image costs next to them: decoding an image
    (`segad.storage.images.read_image`) and writing its map (`MapStore`, float32). Table in docs/journal.md.

``--detectors patchcore,padim``  fit time, inference images/s and peak RSS per detector on CPU
    (each detector in its own subprocess, so peak memory is its own), plus the ratio of
    channels_last vs default memory format for inference.
``--store``  map-store layouts for 1000 maps of 256 x 256: one npz per map vs shards of 100,
    float32 vs float16, plain vs compressed: write and read maps/s and MB per 1000 maps.
``--float16``  how far the SegAD statistics (q995, skew, kurtosis, mean per segment) move when
    real maps are stored as float16 (needs the demo data and its segmentation map).

Run (from the repository root):
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_anomaly_maps.py --backends patchcore,padim \
        --train 50 --images 64 --size 256 --repeats 3
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_anomaly_maps.py --detectors patchcore,padim \
        --train 50 --images 64 --size 256
    .venv/bin/python benchmarks/bench_anomaly_maps.py --store
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_anomaly_maps.py --float16 --images 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "01_raw" / "demo"


def _params(name: str) -> dict:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env="base")
    return loader["parameters"]["anomaly_maps"][name]


def _demo_paths(kind: str, n: int) -> list[str]:
    folder = DEMO / ("train/good" if kind == "train" else "test")
    paths = sorted(str(p) for p in folder.rglob("*.png"))[:n]
    if len(paths) < n:
        raise SystemExit(f"need {n} demo images under {folder} (run the ingestion pipeline first)")
    return paths


def bench_one(name: str, n_train: int, n_images: int, size: int, batch_size: int) -> dict:
    """Fit + predict one detector in this process; peak RSS of this process."""
    import torch

    from segad.detection.config import DetectorConfig
    from segad.detection.fit import fit_detector
    from segad.detection.inference import iter_maps

    config = DetectorConfig.from_dict(name, {**_params(name), "batch_size": batch_size})
    start = time.perf_counter()
    model = fit_detector(config, _demo_paths("train", n_train), size, backbone_cache_dir=tempfile.mkdtemp())
    fit_s = time.perf_counter() - start
    paths = _demo_paths("test", n_images)
    rates = {}
    for label, fmt in (("default", torch.contiguous_format), ("channels_last", torch.channels_last)):
        model.to(memory_format=fmt)
        cl = fmt == torch.channels_last
        list(iter_maps(model, paths[:batch_size], size, batch_size, channels_last=cl))  # warm-up
        start = time.perf_counter()
        for _ in iter_maps(model, paths, size, batch_size, channels_last=cl):
            pass
        rates[label] = len(paths) / (time.perf_counter() - start)
    return {
        "detector": name,
        "fit_s": fit_s,
        "img_per_s": rates["default"],
        "img_per_s_channels_last": rates["channels_last"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def bench_detectors(names: list[str], n_train: int, n_images: int, size: int, batch_size: int) -> None:
    print(f"CPU, {size} px, fit on {n_train} demo train/good, predict {n_images} demo test images, batch {batch_size}")
    print(f"{'detector':<22}{'fit s':>8}{'img/s':>8}{'img/s CL':>10}{'CL/default':>12}{'peak RSS MB':>13}")
    for name in names:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                name,
                "--train",
                str(n_train),
                "--images",
                str(n_images),
                "--size",
                str(size),
                "--batch-size",
                str(batch_size),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if not line:
            print(f"{name:<22} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(line[-1][7:])
        print(
            f"{name:<22}{r['fit_s']:>8.1f}{r['img_per_s']:>8.2f}{r['img_per_s_channels_last']:>10.2f}"
            f"{r['img_per_s_channels_last'] / r['img_per_s']:>12.2f}{r['peak_rss_mb']:>13.0f}"
        )


def bench_backends(names: list[str], n_train: int, n_images: int, size: int, batch_size: int, repeats: int) -> None:
    """img/s per detector and backend on one fitted model each, best of `repeats`; decode and write costs."""
    import importlib.util

    import torch

    from segad.detection.config import DetectorConfig
    from segad.detection.fit import fit_detector
    from segad.detection.inference import predict_maps
    from segad.storage.backends import BACKENDS, backend_info
    from segad.storage.images import read_image
    from segad.storage.map_store import MapStore

    available = [b for b in BACKENDS if b == "eager" or importlib.util.find_spec(b)]
    paths = _demo_paths("test", n_images)
    start = time.perf_counter()
    x = np.stack([read_image(p, size) for p in paths])
    decode = n_images / (time.perf_counter() - start)
    load = os.getloadavg()
    print(
        f"CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}), {size} px, fit on {n_train} demo train/good, "
        f"{n_images} demo test images in batches of {batch_size}, best of {repeats}"
    )
    versions = {k: v for b in available for k, v in backend_info(b).items()}
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    header = "".join(f"{b + ' img/s':>18}" for b in available) + "".join(
        f"{b[:4] + '/eager':>12}{'max diff/range':>16}" for b in available if b != "eager"
    )
    print(f"{'detector':<12}{'map range':>16}" + header)
    rows = []
    for name in names:
        config = DetectorConfig.from_dict(name, _params(name))
        model = fit_detector(config, _demo_paths("train", n_train), size, backbone_cache_dir=tempfile.mkdtemp())
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        cache = tempfile.mkdtemp(prefix="segad-bench-backends-")
        rates, maps = {}, {}
        for backend in available:
            run = [
                predict_maps(model, x[i : i + batch_size], backend=backend, cache_root=cache)
                for i in range(0, n_images, batch_size)
            ]  # warm-up: converts, compiles, checks once
            maps[backend] = np.concatenate(run)
        for _ in range(repeats):  # interleaved, so load changes hit every backend alike
            for backend in available:
                start = time.perf_counter()
                for i in range(0, n_images, batch_size):
                    predict_maps(model, x[i : i + batch_size], backend=backend, cache_root=cache)
                rates[backend] = max(rates.get(backend, 0.0), n_images / (time.perf_counter() - start))
        ref = maps["eager"]
        scale = float(ref.max() - ref.min())
        line = f"{name:<12}{f'{ref.min():.3g}..{ref.max():.3g}':>16}" + "".join(f"{rates[b]:>18.2f}" for b in available)
        for b in available:
            if b != "eager":
                line += f"{rates[b] / rates['eager']:>12.2f}{float(np.abs(maps[b] - ref).max()) / scale:>16.1e}"
        print(line, flush=True)
        rows.append(maps["eager"])
    with tempfile.TemporaryDirectory() as tmp:
        store = MapStore(tmp, "float32")
        start = time.perf_counter()
        for i, m in enumerate(np.concatenate(rows)):
            store.write(f"m/{i:05d}", m)
        write = len(np.concatenate(rows)) / (time.perf_counter() - start)
    print(
        f"pipeline overhead per image: decode (read_image, {size} px) {decode:.0f} img/s; "
        f"write map (MapStore float32 npz) {write:.0f} maps/s"
    )


def bench_store(n: int = 1000, size: int = 256, shard: int = 100) -> None:
    from segad.storage.map_store import MapStore

    rng = np.random.default_rng(0)
    # smooth, PatchCore-like maps: upsampled low-resolution noise plus an offset
    low = rng.normal(size=(n, size // 8, size // 8)).astype(np.float32)
    maps = 18 + 2 * np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)
    maps += rng.normal(scale=0.05, size=maps.shape).astype(np.float32)
    print(f"{n} maps of {size}x{size}")
    print(f"{'layout':<34}{'write maps/s':>14}{'read maps/s':>13}{'MB / 1000 maps':>16}")
    for dtype in ("float32", "float16"):
        with tempfile.TemporaryDirectory() as tmp:
            store = MapStore(tmp, dtype)
            start = time.perf_counter()
            for i in range(n):
                store.write(f"m/{i:05d}", maps[i])
            write = n / (time.perf_counter() - start)
            os.sync()
            start = time.perf_counter()
            for i in range(n):
                store.read(f"m/{i:05d}")
            read = n / (time.perf_counter() - start)
            print(
                f"{'one npz per map, ' + dtype:<34}{write:>14.0f}{read:>13.0f}{store.size_bytes() / 1e6 * 1000 / n:>16.1f}"
            )
        for compressed in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                save = np.savez_compressed if compressed else np.savez
                start = time.perf_counter()
                for s in range(0, n, shard):
                    save(
                        Path(tmp) / f"shard{s:05d}.npz",
                        **{f"m{i:05d}": maps[i].astype(dtype) for i in range(s, s + shard)},
                    )
                write = n / (time.perf_counter() - start)
                start = time.perf_counter()
                for s in range(0, n, shard):
                    with np.load(Path(tmp) / f"shard{s:05d}.npz") as z:
                        for i in range(s, s + shard):
                            z[f"m{i:05d}"].astype(np.float32)
                read = n / (time.perf_counter() - start)
                mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6 * 1000 / n
                label = f"shards of {shard}, {dtype}{', zip' if compressed else ''}"
                print(f"{label:<34}{write:>14.0f}{read:>13.0f}{mb:>16.1f}")


def bench_float16(names: list[str], n_images: int, size: int) -> None:
    """Max deviation of the SegAD statistics when real maps are stored as float16."""
    from PIL import Image

    from segad.detection.config import DetectorConfig
    from segad.detection.fit import fit_detector
    from segad.detection.inference import iter_maps
    from segad.segments.reference import reference_segment_statistics

    labels = np.asarray(Image.open(DEMO / "segmentation.png").resize((size, size), Image.NEAREST)).astype(np.int64)
    n_segments = int(labels.max()) + 1
    print(f"float16 storage vs float32, {n_images} demo test images, {n_segments} segments, {size} px")
    print(
        f"{'detector':<12}{'map range':>20}{'q995 rel':>11}{'mean rel':>11}{'skew abs':>11}{'kurt abs':>11}{'max rel':>10}"
    )
    for name in names:
        config = DetectorConfig.from_dict(name, _params(name))
        model = fit_detector(config, _demo_paths("train", 50), size, backbone_cache_dir=tempfile.mkdtemp())
        worst = np.zeros(4)
        lo, hi = np.inf, -np.inf
        max_rel = 0.0
        for _, m in iter_maps(model, _demo_paths("test", n_images), size, 16):
            lo, hi = min(lo, m.min()), max(hi, m.max())
            ref = reference_segment_statistics(m, labels, n_segments)
            half = reference_segment_statistics(m.astype(np.float16).astype(np.float32), labels, n_segments)
            scale = np.abs(ref) + 1e-12
            dev = np.abs(half - ref)
            worst = np.maximum(
                worst,
                [
                    np.nanmax(dev[:, 0] / scale[:, 0]),
                    np.nanmax(dev[:, 3] / scale[:, 3]),
                    np.nanmax(dev[:, 1]),
                    np.nanmax(dev[:, 2]),
                ],
            )
            max_rel = max(max_rel, abs(float(m.astype(np.float16).max()) - float(m.max())) / abs(float(m.max())))
        print(
            f"{name:<12}{f'{lo:.3g}..{hi:.3g}':>20}{worst[0]:>11.2e}{worst[1]:>11.2e}{worst[2]:>11.2e}{worst[3]:>11.2e}{max_rel:>10.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="")
    parser.add_argument("--backends", default="")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", default="")
    parser.add_argument("--store", action="store_true")
    parser.add_argument("--float16", action="store_true")
    parser.add_argument("--train", type=int, default=50)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.one:
        print("RESULT " + json.dumps(bench_one(args.one, args.train, args.images, args.size, args.batch_size)))
        return
    if args.detectors:
        bench_detectors(args.detectors.split(","), args.train, args.images, args.size, args.batch_size)
    if args.backends:
        bench_backends(args.backends.split(","), args.train, args.images, args.size, args.batch_size, args.repeats)
    if args.store:
        bench_store()
    if args.float16:
        bench_float16(["patchcore", "padim"], args.images, args.size)


if __name__ == "__main__":
    main()
