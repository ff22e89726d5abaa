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
features, assigned per image; one row per `--per-image` setting ``layers[:pca[:smooth[:border]]]``,
e.g. ``blocks.2+blocks.4:0:0.02`` or ``blocks.2+blocks.4:8:0:0.0625``, the last an image-border
band segment), and for the aligned demo ``static`` (the demo's own shipped map), for ELPV its
built-in map. The alignment of the fit images (`segad.segments.alignment`) and the
method ``auto_select`` would pick at the configured threshold are printed per variant.
``--demo-seeds`` runs each demo variant on several demos (`DemoConfig.seed`: other images, other
detector fit); the summary pools them, and a paired table gives each method's difference to the
static ``auto`` map on the same split (mean +- std over splits, and on how many splits it is
ahead): the split-to-split spread of the absolute figures is larger than the differences.
``--defect-pairs`` measures how often a defect changes the per-image segment of its own pixels
(controlled good / defect pairs of the shifted demo, see `defect_pairs`).
``--workdir`` keeps the demos (``<variant>_<size>px[_demo<seed>]``) and the detector maps
(``maps_<variant>_<size>px[_demo<seed>]_<detector>_<n-fit>.npz``, read back when the image ids
match), so a second run with other segmentation settings skips the detector.

    .venv/bin/python benchmarks/bench_segment_maps.py                          # defaults
    .venv/bin/python benchmarks/bench_segment_maps.py --variants shifted --seeds 7 \
        --per-image blocks.2+blocks.4 blocks.2+blocks.4:0:0.02 blocks.1+blocks.2   # choosing settings
    .venv/bin/python benchmarks/bench_segment_maps.py --variants shifted --image-size 256 \
        --demo-seeds 0 1 2 --workdir /tmp/segbench     # three demos at the demo's own 256 px

Peak memory: about 2-8 GB RSS per variant on CPU at 128-256 px (detector fit and inference); run one
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

from segad.columns import feature_columns  # noqa: E402
from segad.detection.config import DetectorConfig  # noqa: E402
from segad.detection.fit import fit_detector  # noqa: E402
from segad.detection.inference import predict_maps  # noqa: E402
from segad.evaluation.metrics import auroc, pg  # noqa: E402
from segad.ingestion.demo import DemoConfig, write_demo  # noqa: E402
from segad.meta.brf import BRFConfig, brf_scores, fit_brf  # noqa: E402
from segad.segments.alignment import alignment, choose_method  # noqa: E402
from segad.segments.features import build_feature_table  # noqa: E402
from segad.segments.resolve import resolve_segmentation
from segad.segments.segment_maps import SegmentMapConfig
from segad.storage.images import read_image  # noqa: E402

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


def demo_name(variant: str, args) -> str:
    """Folder name of a variant's demo (and its maps) at `--image-size`: one per size and demo seed."""
    seed = args.demo_seed
    return f"{variant}_{args.image_size}px" + (f"_demo{seed}" if seed and variant != "elpv" else "")


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
        tmp / demo_name(variant, args),
        DemoConfig(
            seed=args.demo_seed,
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


def detector_maps(variant: str, args, tmp: Path, fit_paths: list[Path], pool: list[Path], ids: list[str]) -> np.ndarray:
    """Raw maps float32 (N, H, W) of `pool` by the detector fitted on `fit_paths`; with `--workdir`
    kept in ``<workdir>/maps_<variant>_<detector>_<size>_<n-fit>.npz`` and read back when its ids match."""
    size = args.image_size
    cache = tmp / f"maps_{demo_name(variant, args)}_{args.detector}_{args.n_fit}.npz" if args.workdir else None
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if stored["ids"].tolist() == ids:
                print(f"[{variant}] maps read back from {cache}", flush=True)
                return stored["maps"]
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
    if cache is not None:
        np.savez(cache, maps=maps, ids=np.array(ids))
    return maps


def print_map_diagnostics(variant: str, root: Path, ids: list[str], labels: np.ndarray, maps: np.ndarray) -> None:
    """What the detector sees: map-max AUROC of each defect type against the good images, and the
    share of good / bad images whose map maximum lies within 1/16 of the side of the image border."""
    types = pd.read_csv(root / "defects.csv").set_index("image_id")["defect_type"]
    kinds = np.array([types.get(i, "good") for i in ids])
    top = maps.reshape(len(maps), -1)
    per_type = []
    for kind in sorted(set(kinds) - {"good"}):
        pick = (kinds == "good") | (kinds == kind)
        per_type.append(f"{kind} {100 * auroc(labels[pick], top[pick].max(1)):.1f}")
    height, width = maps.shape[1:]
    yy, xx = np.unravel_index(top.argmax(1), (height, width))
    band = max(1, min(height, width) // 16)
    near = np.minimum.reduce([yy, xx, height - 1 - yy, width - 1 - xx]) < band
    print(
        f"[{variant}] map-max AUROC per defect type vs good: {', '.join(per_type)}; map maximum within "
        f"{band} px of the border: good {near[labels == 0].mean():.2f}, bad {near[labels == 1].mean():.2f}",
        flush=True,
    )


def run_variant(variant: str, args, tmp: Path) -> list[dict]:
    size = args.image_size
    root, goods, bads = variant_images(variant, args, tmp)
    fit_paths, pool = goods[: args.n_fit], goods[args.n_fit :] + bads
    ids = [p.relative_to(root).as_posix() for p in pool]
    labels = np.r_[np.zeros(len(pool) - len(bads), int), np.ones(len(bads), int)]

    maps = detector_maps(variant, args, tmp, fit_paths, pool, ids)
    if variant != "elpv":
        print_map_diagnostics(variant, root, ids, labels, maps)
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
        layers, pca, smooth, border = (spec.split(":") + ["0", "0", "0"])[:4]
        name = "auto_per_image" + ("" if len(args.per_image) == 1 else f" {spec}")
        methods[name] = SegmentMapConfig(
            method="auto_per_image",
            auto_segments=args.segments,
            auto_layers=layers.split("+"),
            auto_pca=int(pca),
            auto_smooth=float(smooth),
            auto_border=float(border),
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


def paired_summary(results: pd.DataFrame, reference: str = "auto (static k-means)") -> None:
    """Per method, the difference to `reference` on the same split (demo seed, split seed):
    mean +- sample std in points, and on how many splits the method is ahead."""
    keys = ["variant", "demo_seed", "seed"]
    base = results[results.method == reference].set_index(keys)[["auroc", "pg2"]]
    if base.empty:
        return
    print(f"\npaired difference to {reference} (points, mean +- std over splits; splits ahead / all)")
    for (variant, method), group in results[results.method != reference].groupby(["variant", "method"], sort=False):
        diff = group.set_index(keys)[["auroc", "pg2"]].sub(base).dropna() * 100
        print(
            f"{variant:8s} {method:40s} AUROC {diff.auroc.mean():+6.2f} +- {diff.auroc.std():5.2f} "
            f"({(diff.auroc > 0).sum()}/{len(diff)})  PG2 {diff.pg2.mean():+6.2f} +- {diff.pg2.std():5.2f}"
        )


def defect_pairs(args, tmp: Path) -> None:
    """Does a defect move its own pixels to another per-image segment? For crack, burn and
    pollution, 24 shifted-demo parts are drawn twice from the same random numbers, without and with
    the defect (jitter only), then rotated and scaled alike; for each `--per-image` setting
    (centres from the shifted demo's `--n-fit` good images, `--segments` clusters) print the share
    of the defect's pixels (where the pair differs, dilated 2 px) whose label changes, and of the
    other pixels."""
    from scipy.ndimage import binary_dilation

    from segad.ingestion.demo import _rotate_scale, nominal_part, render_part
    from segad.segments.auto_segments import fit_feature_clusters

    size, shifted = args.image_size, VARIANTS["shifted"]
    _, goods, _ = variant_images("shifted", args, tmp)
    fit_images = np.stack([read_image(p, size) for p in goods[: args.n_fit]])
    pairs: dict[str, list[np.ndarray]] = {}
    for defect in ("crack", "burn", "pollution"):
        for seed in range(24):
            pose = np.random.default_rng(10_000 + seed)
            angle = pose.uniform(-shifted["rotation_deg"], shifted["rotation_deg"])
            scale = pose.uniform(1 - shifted["scale_jitter"], 1 + shifted["scale_jitter"])
            for key, drawn in (("good", None), (defect, defect)):
                image = render_part(np.random.default_rng(seed), size, drawn, shifted["jitter_px"])
                image = _rotate_scale(image, nominal_part(size).centre, angle, scale, 1.0)
                pairs.setdefault(key, []).append(np.asarray(image, np.float32).transpose(2, 0, 1) / 255)
    defects = [d for d in pairs if d != "good"]
    good = np.stack(pairs["good"])
    bad = np.concatenate([np.stack(pairs[d]) for d in defects])
    kinds = np.repeat(defects, 24)
    masks = np.stack([binary_dilation(np.abs(b - g).mean(0) > 0.04, iterations=2) for b, g in zip(bad, good)])
    for spec in args.per_image:
        layers, pca, smooth = (spec.split(":") + ["0", "0"])[:3]
        clusters = fit_feature_clusters(fit_images, args.segments, 0, layers.split("+"), int(pca), float(smooth))
        changed = clusters.labels(good) != clusters.labels(bad)
        inside = np.array([c[m].mean() if m.any() else np.nan for c, m in zip(changed, masks)])
        outside = np.array([c[~m].mean() for c, m in zip(changed, masks)])
        print(
            f"{spec:28s} {args.segments} segments: labels changed on {np.nanmean(inside):.3f} of the defect's "
            f"pixels ({', '.join(f'{d} {np.nanmean(inside[kinds == d]):.3f}' for d in defects)}), "
            f"{outside.mean():.4f} of the others",
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
    parser.add_argument(
        "--demo-seeds", type=int, nargs="*", default=[0], help="DemoConfig.seed of the demo variants: one demo each"
    )
    parser.add_argument(
        "--per-image", nargs="*", default=["blocks.2+blocks.4:8:0"], help="layers[:pca[:smooth[:border]]]"
    )
    parser.add_argument("--elpv-types", nargs="*", default=["mono", "poly"], choices=["mono", "poly"])
    parser.add_argument("--workdir", default=None, help="keep the demo and the detector maps here (reused)")
    parser.add_argument("--alignment-only", action="store_true", help="only print the alignment of each variant")
    parser.add_argument(
        "--defect-pairs", action="store_true", help="only print how often a defect changes its own segment"
    )
    args = parser.parse_args()
    args.demo_seed = 0  # --alignment-only and --defect-pairs use demo seed 0; run_variant gets each of --demo-seeds
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; {args}")
    with tempfile.TemporaryDirectory(prefix="bench_segment_maps_") as scratch:
        tmp = Path(args.workdir) if args.workdir else Path(scratch)
        if args.alignment_only:
            alignment_only(args, tmp)
            return
        if args.defect_pairs:
            defect_pairs(args, tmp)
            return
        rows = []
        for variant in args.variants:
            for demo_seed in args.demo_seeds if variant != "elpv" else [0]:
                run_args = argparse.Namespace(**{**vars(args), "demo_seed": demo_seed})
                rows += [{**r, "demo_seed": demo_seed} for r in run_variant(variant, run_args, tmp)]
        results = pd.DataFrame(rows)
    summary = results.groupby(["variant", "method"], sort=False).agg(
        auroc_mean=("auroc", "mean"), auroc_std=("auroc", "std"), pg2_mean=("pg2", "mean"), pg2_std=("pg2", "std")
    )
    print(
        f"\n{'variant':8s} {'method':40s} {'AUROC %':>16s} {'PG2 %':>16s}   (mean +- std over split seeds "
        f"{args.seeds} x demo seeds {args.demo_seeds})"
    )
    for (variant, method), row in summary.iterrows():
        print(
            f"{variant:8s} {method:40s} {100 * row.auroc_mean:7.2f} +- {100 * row.auroc_std:5.2f} "
            f"{100 * row.pg2_mean:7.2f} +- {100 * row.pg2_std:5.2f}"
        )
    paired_summary(results)
    timing = results.dropna(subset=["seconds"]).groupby("method")["seconds"].mean()
    print("\nseconds per seed (segmentation + features + BRF): " + ", ".join(f"{m} {s:.1f}" for m, s in timing.items()))


if __name__ == "__main__":
    main()
