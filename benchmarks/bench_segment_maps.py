"""Which automatic segment map helps SegAD: single segment vs static k-means vs per-image k-means.

For each dataset variant the script writes a demo (segad.ingestion.demo) in a temporary folder,
fits one detector (default patchcore, packaged EfficientNet-Lite0, offline) on `--n-fit` good
training images, computes the raw maps of every other image once, then for each segmentation
method and each seed:

- splits the remaining images (good and bad, stratified, seeded) into brf_train / test halves,
- builds the feature table (`segad.segments.features.build_feature_table`, the pipeline's code),
- fits the BRF (paper settings, `segad.meta.brf`) on brf_train and scores the test half,

and prints test AUROC and PG2 (`segad.evaluation.metrics`), mean +- sample std over seeds, plus
the detector alone (max of the map) as a reference. Segmentations are fitted on the detector's
fit images only (never on brf_train or test images).

Variants: ``aligned`` (the demo, jitter 3 px), ``shifted`` (jitter 40 px, rotation +-180 deg,
scale 1 +- 0.2: unaligned parts) and ``elpv`` (real aligned solar cells of the installed
`elpv-dataset`, cell types `--elpv-types` (default mono and poly) in one category: a fixed random
subset of `--n-fit + --n-good` good and `--n-bad` defective cells, drawn from all cells of those
types, resized to `--image-size`). Methods: ``single``, ``auto`` (static k-means of per-pixel
mean / std over the fit images), ``auto_per_image`` (shared centres of EfficientNet-Lite0
features, assigned per image; one row per `--per-image` setting ``layers[:pca[:smooth]]``, e.g.
``blocks.2+blocks.4:0:0.02``), and for the aligned demo ``static`` (the demo's own shipped map),
for ELPV its built-in map. The alignment of the fit images (`segad.segments.alignment`) and the
method ``auto_select`` would pick at the configured threshold are printed per variant.

    .venv/bin/python benchmarks/bench_segment_maps.py                          # defaults
    .venv/bin/python benchmarks/bench_segment_maps.py --variants shifted --seeds 7 \
        --per-image blocks.2+blocks.4 blocks.2+blocks.4:0:0.02 blocks.1+blocks.2   # choosing settings

Peak memory: about 8 GB RSS per variant on CPU at 128 px (detector fit and inference); run one
variant per process (``--variants aligned``, then ``shifted``, then ``elpv``) on a small machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from segad.detection.config import DetectorConfig  # noqa: E402
from segad.detection.fit import fit_detector  # noqa: E402
from segad.detection.inference import predict_maps  # noqa: E402
from segad.evaluation.metrics import auroc, pg  # noqa: E402
from segad.images import read_image  # noqa: E402
from segad.ingestion.demo import DemoConfig, write_demo  # noqa: E402
from segad.meta.brf import BRFConfig, brf_scores, fit_brf  # noqa: E402
from segad.segments.alignment import alignment, choose_method  # noqa: E402
from segad.segments.columns import feature_columns  # noqa: E402
from segad.segments.features import build_feature_table  # noqa: E402
from segad.segments.segment_maps import SegmentMapConfig, resolve_segmentation  # noqa: E402

DETECTORS = {
    "patchcore": {
        "model": {
            "backbone": "tf_efficientnet_lite0",
            "layers": ["blocks.1", "blocks.2"],
            "coreset_sampling_ratio": 0.01,
            "num_neighbors": 9,
        },
        "weights": "packaged:efficientnet_lite0",
    },
    "padim": {
        "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 64},
        "weights": "packaged:efficientnet_lite0",
    },
}
VARIANTS = {"aligned": {}, "shifted": {"jitter_px": 40.0, "rotation_deg": 180.0, "scale_jitter": 0.2}, "elpv": {}}


class _Maps:
    """A map store in memory: read(key) -> float32 (H, W)."""

    def __init__(self, maps: dict[str, np.ndarray]) -> None:
        self.maps = maps

    def read(self, key: str) -> np.ndarray:
        return self.maps[key]


def variant_images(variant: str, args, tmp: Path) -> tuple[Path, list[Path], list[Path]]:
    """(root, good paths, bad paths) of a variant: a demo written under `tmp`, or ELPV mono cells."""
    if variant == "elpv":
        from segad.ingestion.layouts import build_index

        index, _ = build_index("elpv", None)
        index = index[index.category.isin(args.elpv_types)]
        rng = np.random.default_rng(0)  # a fixed random subset of the cells
        goods = sorted(rng.permutation(index[index.label == 0].path.to_numpy())[: args.n_fit + args.n_good])
        bads = sorted(rng.permutation(index[index.label == 1].path.to_numpy())[: args.n_bad])
        root = Path(index.path.iloc[0]).parents[1]
        return root, [Path(p) for p in goods], [Path(p) for p in bads]
    demo = write_demo(
        tmp / variant,
        DemoConfig(
            n_train_good=args.n_fit + args.n_good,
            n_train_bad=args.n_bad,
            n_test_good=0,
            n_test_bad=0,
            n_test_unseen=0,
            image_size=args.image_size,
            unseen_defects=(),
            **VARIANTS[variant],
        ),
    )
    return demo, sorted((demo / "train" / "good").glob("*.png")), sorted((demo / "train" / "bad").glob("*.png"))


def run_variant(variant: str, args, tmp: Path) -> list[dict]:
    size = args.image_size
    root, goods, bads = variant_images(variant, args, tmp)
    fit_paths, pool = goods[: args.n_fit], goods[args.n_fit :] + bads
    ids = [p.relative_to(root).as_posix() for p in pool]
    labels = np.r_[np.zeros(len(pool) - len(bads), int), np.ones(len(bads), int)]

    t0 = time.perf_counter()
    config = DetectorConfig.from_dict(args.detector, DETECTORS[args.detector])
    (tmp / "work").mkdir(parents=True, exist_ok=True)
    model = fit_detector(config, fit_paths, image_size=size, device="cpu", work_dir=tmp / "work")
    images = np.stack([read_image(p, size) for p in pool])
    maps = np.concatenate([predict_maps(model, images[i : i + 16]) for i in range(0, len(images), 16)])
    print(
        f"[{variant}] {args.detector} fitted on {len(fit_paths)} images, {len(pool)} maps of {size} px: "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    del model, images  # the detector's memory is not needed for the BRF part
    gc.collect()
    store = _Maps({f"{args.detector}/{i}": m for i, m in zip(ids, maps)})
    map_index = pd.DataFrame(
        {
            "image_id": ids,
            "detector": args.detector,
            "model_key": args.detector,
            "map_key": [f"{args.detector}/{i}" for i in ids],
            "max_score": maps.reshape(len(maps), -1).max(1),
            "height": size,
            "width": size,
        }
    )

    fit_images = np.stack([read_image(p, size) for p in fit_paths])
    value = alignment(fit_images)
    print(
        f"[{variant}] alignment of the {len(fit_paths)} fit images {value:.2f}: auto_select picks "
        f"{choose_method(value, SegmentMapConfig().alignment_threshold)}",
        flush=True,
    )
    methods = {
        "single": SegmentMapConfig(method="single"),
        "auto (static k-means)": SegmentMapConfig(method="auto", auto_segments=args.segments),
    }
    for spec in args.per_image:
        layers, pca, smooth = (spec.split(":") + ["0", "0"])[:3]
        name = "auto_per_image" + ("" if len(args.per_image) == 1 else f" {spec}")
        methods[name] = SegmentMapConfig(
            method="auto_per_image",
            auto_segments=args.segments,
            auto_layers=layers.split("+"),
            auto_pca=int(pca),
            auto_smooth=float(smooth),
        )
    if variant == "aligned":
        methods["static (demo map)"] = SegmentMapConfig(method="static", path=str(root / "segmentation.png"))
    if variant == "elpv":
        methods["elpv (built-in map)"] = SegmentMapConfig(method="elpv")
    results = []
    rng_rows = pd.DataFrame({"image_id": ids, "source_image_id": ids, "category": "demo", "label": labels})
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(ids))
        train = np.zeros(len(ids), bool)
        for cls in (0, 1):
            members = order[labels[order] == cls]
            train[members[: len(members) // 2]] = True
        results.append(
            {
                "variant": variant,
                "method": f"{args.detector} alone (map max)",
                "seed": seed,
                "auroc": auroc(labels[~train], maps[~train].reshape((~train).sum(), -1).max(1)),
                "pg2": pg(labels[~train], maps[~train].reshape((~train).sum(), -1).max(1)),
            }
        )
        for name, seg_config in methods.items():
            t1 = time.perf_counter()
            seg_config = SegmentMapConfig(**{**seg_config.__dict__, "seed": seed})
            segmentation = resolve_segmentation(
                seg_config,
                ["demo"],
                size,
                {"demo": [str(p) for p in fit_paths]},
                image_paths={i: str(p) for i, p in zip(ids, pool)},
            )
            rows = rng_rows.assign(
                split_seed=seed, role=np.where(train, "brf_train", "test"), defect_type=None, unseen=False
            )
            table = build_feature_table(
                rows, {args.detector: map_index.assign(split_seed=seed)}, {args.detector: store.read}, segmentation
            )
            columns = feature_columns([args.detector], segmentation.n_segments["demo"])
            x = table[columns].to_numpy(np.float64)
            is_train = (table["role"] == "brf_train").to_numpy()
            y = table["label"].to_numpy()
            brf = fit_brf(x[is_train], y[is_train], BRFConfig(), seed=seed)
            scores = brf_scores(brf, x[~is_train])
            results.append(
                {
                    "variant": variant,
                    "method": name,
                    "seed": seed,
                    "auroc": auroc(y[~is_train], scores),
                    "pg2": pg(y[~is_train], scores),
                    "seconds": time.perf_counter() - t1,
                }
            )
        for row in results[-len(methods) - 1 :]:  # printed as they come: a killed run keeps its rows
            print(
                f"[{variant}] seed {seed} {row['method']:40s} AUROC {100 * row['auroc']:6.2f} "
                f"PG2 {100 * row['pg2']:6.2f}",
                flush=True,
            )
    return results


def alignment_only(args, tmp: Path) -> None:
    """Print the alignment (`segad.segments.alignment`) of the good images of each variant, per ELPV type."""
    sets = []
    for variant in args.variants:
        types = [[t] for t in args.elpv_types] if variant == "elpv" else [args.elpv_types]
        for elpv_types in types:
            _, goods, _ = variant_images(variant, argparse.Namespace(**{**vars(args), "elpv_types": elpv_types}), tmp)
            name = f"{variant} {'+'.join(elpv_types)}" if variant == "elpv" else variant
            sets.append((name, np.stack([read_image(p, args.image_size) for p in goods])))
    threshold = SegmentMapConfig().alignment_threshold
    for name, images in sets:
        values = {n: alignment(images[:n]) for n in (16, 32, 64, len(images))}
        print(
            f"{name:12s} alignment of the first "
            + ", ".join(f"{n}: {v:.2f}" for n, v in values.items())
            + f" good images ({args.image_size} px); auto_select at {threshold:g} picks "
            + choose_method(values[len(images)], threshold),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", default=["aligned", "shifted"], choices=list(VARIANTS))
    parser.add_argument("--detector", default="patchcore", choices=list(DETECTORS))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--n-fit", type=int, default=30, help="good images that fit the detector and the segments")
    parser.add_argument("--n-good", type=int, default=100, help="good images split into brf_train / test")
    parser.add_argument("--n-bad", type=int, default=80, help="bad images (seen defects) split into brf_train / test")
    parser.add_argument("--segments", type=int, default=4, help="auto / auto_per_image clusters")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--per-image", nargs="*", default=["blocks.2+blocks.4:8:0"], help="layers[:pca[:smooth]]")
    parser.add_argument("--elpv-types", nargs="*", default=["mono", "poly"], choices=["mono", "poly"])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--alignment-only", action="store_true", help="only print the alignment of each variant")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; {args}")
    with tempfile.TemporaryDirectory(prefix="bench_segment_maps_") as scratch:
        tmp = Path(args.workdir) if args.workdir else Path(scratch)
        if args.alignment_only:
            alignment_only(args, tmp)
            return
        results = pd.DataFrame([r for v in args.variants for r in run_variant(v, args, tmp)])
    summary = results.groupby(["variant", "method"], sort=False).agg(
        auroc_mean=("auroc", "mean"), auroc_std=("auroc", "std"), pg2_mean=("pg2", "mean"), pg2_std=("pg2", "std")
    )
    print(f"\n{'variant':8s} {'method':40s} {'AUROC %':>16s} {'PG2 %':>16s}   (mean +- std over seeds {args.seeds})")
    for (variant, method), row in summary.iterrows():
        print(
            f"{variant:8s} {method:40s} {100 * row.auroc_mean:7.2f} +- {100 * row.auroc_std:5.2f} "
            f"{100 * row.pg2_mean:7.2f} +- {100 * row.pg2_std:5.2f}"
        )
    timing = results.dropna(subset=["seconds"]).groupby("method")["seconds"].mean()
    print("\nseconds per seed (segmentation + features + BRF): " + ", ".join(f"{m} {s:.1f}" for m, s in timing.items()))


if __name__ == "__main__":
    main()
