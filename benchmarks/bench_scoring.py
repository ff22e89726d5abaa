"""End-to-end scoring throughput of a SegAD bundle, and how the time splits between stages.

Builds a demo dataset (segad.ingestion.demo) in a temporary folder, fits the detectors on a few good
images, trains the BRF with the paper's settings (2000 trees) and its out-of-fold operating
point, writes and loads a bundle, then scores the demo's test images with `segad.production.batch`
(the same code the score pipeline runs). Prints images/s, milliseconds per image per stage,
the SegAD stage (features + BRF score) relative to the detector time, and peak memory.

    .venv/bin/python benchmarks/bench_scoring.py                       # CPU, 256 px, patchcore+padim
    .venv/bin/python benchmarks/bench_scoring.py --workdir /tmp/bw --explain all   # keep/reuse the setup
    .venv/bin/python benchmarks/bench_scoring.py --detectors patchcore --n-score 128 --device cuda

Wall and process-CPU milliseconds per image are both printed: on a shared machine the wall
time of the detector swings with the load, the CPU time much less.

Detector settings come from conf/base/parameters_anomaly_maps.yml when it defines them, else
from DEFAULT_DETECTORS below (packaged EfficientNet-Lite0, offline).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from segad.columns import feature_columns
from segad.detection.config import DetectorConfig  # noqa: E402
from segad.detection.fit import fit_detector  # noqa: E402
from segad.detection.inference import predict_maps  # noqa: E402
from segad.detection.saved import save_detector  # noqa: E402
from segad.ingestion.demo import DemoConfig, write_demo  # noqa: E402
from segad.meta.brf import BRFConfig, fit_brf  # noqa: E402
from segad.production.batch import STAGES, score_images  # noqa: E402
from segad.production.bundle import load_bundle  # noqa: E402
from segad.production.inputs import input_spec_from_paths  # noqa: E402
from segad.production.operating_point import choose_operating_point, out_of_fold_scores  # noqa: E402
from segad.production.writer import write_bundle  # noqa: E402
from segad.segments.label_maps import read_label_map
from segad.segments.statistics import SegmentMap, feature_matrix, segment_statistics  # noqa: E402
from segad.storage.images import read_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DETECTORS = {
    "patchcore": {
        "model": {
            "backbone": "tf_efficientnet_lite0",
            "layers": ["blocks.1", "blocks.2"],
            "coreset_sampling_ratio": 0.1,
        },
        "weights": "packaged:efficientnet_lite0",
    },
    "padim": {
        "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 64},
        "weights": "packaged:efficientnet_lite0",
    },
}


def detector_settings(names: list[str]) -> dict[str, dict]:
    """Per-detector settings: the project's parameters_anomaly_maps.yml where present."""
    settings = {}
    conf = ROOT / "conf" / "base" / "parameters_anomaly_maps.yml"
    project = yaml.safe_load(conf.read_text()) if conf.is_file() else {}
    project = (project or {}).get("anomaly_maps", project or {})
    for name in names:
        values = project.get(name) if isinstance(project.get(name), dict) else None
        settings[name] = dict(values) if values else DEFAULT_DETECTORS[name]
        settings[name] = {
            k: v for k, v in settings[name].items() if k in {f for f in DetectorConfig.__dataclass_fields__} - {"name"}
        }
    return settings


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detectors", default="patchcore,padim")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--n-fit", type=int, default=20, help="good images that fit the detectors")
    parser.add_argument(
        "--n-brf",
        type=int,
        default=48,
        help="good and bad images each that train the BRF (its trees grow with the rows)",
    )
    parser.add_argument("--n-score", type=int, default=96, help="test images scored")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--explain", default="rejected", choices=["rejected", "all", "none"])
    parser.add_argument("--repeats", type=int, default=2, help="timed scoring passes (best is reported)")
    parser.add_argument(
        "--workdir", default=None, help="keep the demo, detectors and bundle here and reuse them on the next run"
    )
    args = parser.parse_args(argv)
    names = [n for n in args.detectors.split(",") if n]
    size = args.image_size

    import torch

    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, device {args.device}")
    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as scratch:
        tmp = Path(args.workdir) if args.workdir else Path(scratch)
        if not (tmp / "bundle" / "manifest.json").is_file():
            setup(args, names, size, tmp)
        else:
            print(f"reusing the bundle in {tmp / 'bundle'}")
        measure(args, names, size, tmp)


def setup(args, names: list[str], size: int, tmp: Path) -> None:
    """Demo data, detectors, BRF, operating point and bundle under `tmp`."""
    n_test_bad = max(4, args.n_score // 4)
    demo = write_demo(
        tmp / "demo",
        DemoConfig(
            n_train_good=args.n_fit + args.n_brf,
            n_train_bad=args.n_brf,
            n_test_good=args.n_score - n_test_bad,
            n_test_bad=n_test_bad,
            n_test_unseen=0,
            image_size=size,
            unseen_defects=(),
        ),
    )
    goods = sorted((demo / "train" / "good").glob("*.png"))
    bads = sorted((demo / "train" / "bad").glob("*.png"))
    fit_paths, brf_paths = goods[: args.n_fit], goods[args.n_fit :] + bads
    labels = np.r_[np.zeros(len(goods) - args.n_fit, int), np.ones(len(bads), int)]  # brf rows
    segments = read_label_map(demo / "segmentation.png", size=size)
    n_segments = int(segments.max()) + 1
    segment_map = SegmentMap.from_labels(segments, n_segments)

    t0 = time.perf_counter()
    images = np.stack([read_image(p, size) for p in brf_paths])
    dirs, stats, maxima = {}, [], []
    for name, values in detector_settings(names).items():
        config = DetectorConfig.from_dict(name, values)
        model = fit_detector(config, fit_paths, image_size=size, device=args.device, work_dir=tmp)
        dirs[name] = save_detector(model, config, size, tmp / "detectors" / name)
        maps = np.concatenate([predict_maps(model, images[i : i + 16]) for i in range(0, len(images), 16)])
        stats.append(segment_statistics(maps, segment_map))
        maxima.append(maps.reshape(len(maps), -1).max(axis=1))
    features = feature_matrix(stats, maxima)
    brf = fit_brf(features, labels, BRFConfig(), seed=0)
    held_out = out_of_fold_scores(features, labels, BRFConfig(), seed=0, n_folds=3)
    op = choose_operating_point(labels, held_out, 0.02, source="3-fold out-of-fold")
    write_bundle(
        tmp / "bundle",
        detector_dirs=dirs,
        segments=segments,
        brf=brf,
        feature_columns=feature_columns(names, n_segments),
        operating_point=op,
        input_spec=input_spec_from_paths(goods + bads, size),
        config={"benchmark": True},
    )
    print(
        f"setup (demo, fit {len(names)} detectors on {args.n_fit} images, BRF on {len(labels)} rows, bundle): "
        f"{time.perf_counter() - t0:.1f} s"
    )


def measure(args, names: list[str], size: int, tmp: Path) -> None:
    """Score the demo's test images with the bundle; print throughput and the stage split."""
    demo = tmp / "demo"
    bundle = load_bundle(tmp / "bundle")
    models = bundle.load_detectors(args.device)
    paths = sorted((demo / "test").rglob("*.png"))
    score_images(
        paths[: args.batch_size], bundle, models, batch_size=args.batch_size, explain=args.explain, progress=False
    )  # warm-up (first-call allocations)
    best = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = score_images(paths, bundle, models, batch_size=args.batch_size, explain=args.explain, progress=False)
        total = time.perf_counter() - start
        if best is None or total < best[0]:
            best = (total, result)
    total, result = best
    n = len(paths)
    counts = result.table["decision"].value_counts().to_dict()
    print(
        f"\nscored {n} images of {size} px with {'+'.join(names)}, batch {args.batch_size}, "
        f"explain={args.explain}: {counts}"
    )
    print(f"end to end: {n / total:.2f} images/s ({1000 * total / n:.1f} ms/image wall)")
    print(f"{'stage':<10} {'wall ms/img':>12} {'CPU ms/img':>11} {'wall share':>11}")
    for stage in STAGES:
        print(
            f"{stage:<10} {1000 * result.seconds[stage] / n:>12.2f} "
            f"{1000 * result.cpu_seconds[stage] / n:>11.2f} {result.seconds[stage] / total:>11.1%}"
        )
    for clock, label in ((result.seconds, "wall"), (result.cpu_seconds, "CPU")):
        segad = clock["features"] + clock["brf"]
        print(
            f"SegAD stage (features + BRF score) / detector, {label} time: {segad / clock['detector']:.2%}"
            f"  (with explanations of {args.explain} rows: "
            f"{(segad + clock['explain']) / clock['detector']:.2%})"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
