"""PatchCore coreset benchmark: fit CPU time (features vs coreset), maps/CPU-s and AUROC per variant.

Every variant is fitted through segad's own path (`segad.detection.fit.fit_detector`, the conf's
patchcore block with the variant's ``coreset``, ``coreset_sampling_ratio`` and ``layers``) and
scored with PatchCore alone (image score = map max, `segad.evaluation.metrics.auroc`). All
variants run side by side in one process, one torch thread, timed in CPU seconds
(``time.process_time``), so ratios between rows hold on a shared machine.

Columns: ``fit CPU-s`` (whole fit), ``coreset CPU-s`` (the selection alone; for ``anomalib``
the fit minus the feature-extraction time of the ``fast`` row of the same ratio and layers, i.e.
the same images; an untimed warm-up fit runs first),
``maps/CPU-s`` (eager inference, channels_last, map max), ``AUROC``, ``same bank`` (``anomalib``
rows: whether its memory bank equals the ``fast`` bank of the same ratio).

Data (per category, seeded subsets):
- ``demo``: `segad.ingestion.demo.write_demo` into a temporary folder (default seed and defect
  types, no unseen defects), ``--train`` train/good, ``--test-good`` + ``--test-bad`` test images.
- ``elpv``: the installed elpv-dataset (`build_index("elpv", None)`), both cell types (mono,
  poly) as separate categories; ``--train`` good cells of the train split, ``--test-good`` good and
  ``--test-bad`` bad cells of the test split.

Run (from the repository root):
    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python benchmarks/bench_coreset.py --data demo,elpv \\
        --train 100 --test-good 60 --test-bad 40 --ratios 0.002,0.01,0.05,0.1 --anomalib-ratios 0.002
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _params() -> dict:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env="base")
    return dict(loader["parameters"]["anomaly_maps"]["patchcore"])


def _pick(paths: list[str], n: int, rng: np.random.Generator) -> list[str]:
    if len(paths) < n:
        raise SystemExit(f"need {n} images, have {len(paths)}")
    return sorted(rng.choice(sorted(paths), size=n, replace=False).tolist())


def datasets(names: list[str], n_train: int, n_good: int, n_bad: int, seed: int, scratch: Path) -> dict:
    """``{"<data>/<category>": (train paths, test paths, test labels)}``, seeded subsets."""
    from segad.ingestion.demo import DemoConfig, write_demo
    from segad.ingestion.layouts import build_index

    out = {}
    for name in names:
        if name == "demo":
            root = write_demo(
                scratch / "demo",
                DemoConfig(n_train_good=n_train, n_train_bad=0, n_test_good=n_good, n_test_bad=n_bad, n_test_unseen=0),
            )
            index, _ = build_index("demo", root)
        elif name == "elpv":
            index, _ = build_index("elpv", None)
        else:
            raise SystemExit(f"unknown --data {name!r}: demo | elpv")
        rng = np.random.default_rng(seed)
        for category, rows in index.groupby("category"):
            train = rows[(rows.split == "train") & (rows.label == 0)].path.tolist()
            test = rows[rows.split == "test"]
            good = _pick(test[test.label == 0].path.tolist(), n_good, rng)
            bad = _pick(test[test.label == 1].path.tolist(), n_bad, rng)
            out[f"{name}/{category}"] = (_pick(train, n_train, rng), good + bad, [0] * n_good + [1] * n_bad)
    return out


def run_variant(params: dict, coreset: str, ratio: float, layers: list[str], data: tuple, size: int) -> dict:
    import torch

    from segad.detection.config import DetectorConfig
    from segad.detection.fit import fit_detector
    from segad.detection.inference import iter_maps
    from segad.evaluation.metrics import auroc
    from segad.storage.weights import backbone_cache

    model_args = {**params["model"], "coreset_sampling_ratio": ratio, "layers": layers}
    values = {k: v for k, v in params.items() if k not in ("backend", "distribute")}
    config = DetectorConfig.from_dict("patchcore", {**values, "model": model_args, "coreset": coreset})
    train, test, labels = data
    start = time.process_time()
    model = fit_detector(config, train, size, backbone_cache_dir=backbone_cache())
    fit_s = time.process_time() - start
    start = time.process_time()
    scores = np.zeros(len(test))
    for i, m in iter_maps(model, test, size, config.batch_size, channels_last=True):
        scores[i] = float(m.max())
    infer_s = time.process_time() - start
    bank: torch.Tensor = model.model.memory_bank.detach().clone()
    return {
        "fit_s": fit_s,
        "coreset_s": getattr(model, "coreset_seconds", None),
        "maps_per_cpu_s": len(test) / infer_s,
        "auroc": auroc(np.array(labels), scores),
        "bank": bank,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="demo,elpv", help="comma list of demo, elpv")
    parser.add_argument("--categories", default="", help="comma list of '<data>/<category>' to keep (default: all)")
    parser.add_argument("--train", type=int, default=100, help="good training images per category")
    parser.add_argument("--test-good", type=int, default=60, help="good test images per category")
    parser.add_argument("--test-bad", type=int, default=40, help="bad test images per category")
    parser.add_argument("--ratios", default="0.002,0.01,0.05,0.1", help="coreset_sampling_ratio values (fast)")
    parser.add_argument("--anomalib-ratios", default="0.002", help="ratios also fitted with anomalib's KCenterGreedy")
    parser.add_argument(
        "--layers", default="blocks.2+blocks.4", help="';'-separated layer sets, '+' inside, e.g. 'blocks.2+blocks.4'"
    )
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image subsets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    ratios = [float(r) for r in args.ratios.split(",") if r]
    anomalib_ratios = [float(r) for r in args.anomalib_ratios.split(",") if r]
    layer_sets = [s.split("+") for s in args.layers.split(";") if s]
    params = _params()
    print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}; torch threads {args.threads}")
    with tempfile.TemporaryDirectory() as scratch:
        data = datasets(args.data.split(","), args.train, args.test_good, args.test_bad, args.seed, Path(scratch))
        keep = [c for c in args.categories.split(",") if c]
        data = {k: v for k, v in data.items() if not keep or k in keep}
        print(f"{args.size} px, {args.train} train good, {args.test_good} good + {args.test_bad} bad test per category")
        header = f"{'data':<12}{'layers':<26}{'coreset':<9}{'ratio':>7}{'bank':>7}{'fit CPU-s':>10}"
        print(header + f"{'coreset CPU-s':>14}{'features CPU-s':>15}{'maps/CPU-s':>11}{'AUROC':>7}{'same bank':>10}")
        for key, subset in data.items():
            for layers in layer_sets:
                banks: dict[float, object] = {}
                feature_s: dict[float, float] = {}
                first = (subset[0][:2], subset[1][:: len(subset[1]) - 1], subset[2][:: len(subset[2]) - 1])
                run_variant(params, "fast", ratios[0], layers, first, args.size)  # warm-up, not timed
                rows = [("fast", r) for r in ratios] + [("anomalib", r) for r in anomalib_ratios]
                for coreset, ratio in rows:
                    r = run_variant(params, coreset, ratio, layers, subset, args.size)
                    same = ""
                    if coreset == "fast":
                        banks[ratio] = r["bank"]
                        feature_s[ratio] = r["fit_s"] - r["coreset_s"]
                    elif ratio in banks:
                        same = "yes" if torch.equal(banks[ratio], r["bank"]) else "no"  # type: ignore[arg-type]
                    features = r["fit_s"] - r["coreset_s"] if r["coreset_s"] is not None else None
                    coreset_s = r["coreset_s"]
                    if coreset_s is None and feature_s:
                        features = feature_s.get(ratio, statistics.median(feature_s.values()))
                        coreset_s = r["fit_s"] - features
                    print(
                        f"{key:<12}{'+'.join(layers):<26}{coreset:<9}{ratio:>7}{len(r['bank']):>7}"
                        f"{r['fit_s']:>10.1f}{coreset_s if coreset_s is not None else float('nan'):>14.1f}"
                        f"{features if features is not None else float('nan'):>15.1f}"
                        f"{r['maps_per_cpu_s']:>11.2f}{r['auroc']:>7.3f}{same:>10}",
                        flush=True,
                    )
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
