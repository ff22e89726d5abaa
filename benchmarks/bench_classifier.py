"""Training time and test AUROC of the supervised classifier g(I): full fine-tune vs frozen stem.

For each dataset (real ELPV cells of the installed `elpv-dataset` package, and the built-in
demo written to a temporary folder) and each variant, this follows the protocol of
`segad.meta.classifier.classifier_scores` for one split seed: a seeded, label-stratified
`train_share` of the training images trains g, every test image is scored. Printed per variant:
training wall time (for the frozen mode split into the one stem pass over the training images
and the optimiser loop), steps, seconds per step, process CPU seconds, scoring time, and g's own
test AUROC and PG2 (segad.evaluation.metrics), with a paired bootstrap of the AUROC difference
to the first variant (the noise of a test set this size).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_classifier.py              # both datasets, subsets
    PYTHONPATH=src .venv/bin/python benchmarks/bench_classifier.py --datasets demo --variants full,frozen6,frozen5
    PYTHONPATH=src .venv/bin/python benchmarks/bench_classifier.py --elpv-train 0 --elpv-test 0  # all of ELPV

Variants: ``full`` (mode full, today's fine-tune), ``frozenK`` (mode frozen, frozen_blocks K);
both use conf/base's other classifier settings (5 epochs, batch 16, lr 3e-4) unless overridden
with --epochs / --lr. On a shared machine run the variants in one invocation and compare ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the table

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from segad.evaluation.metrics import auroc, pg  # noqa: E402
from segad.ingestion.demo import DemoConfig, write_demo  # noqa: E402
from segad.ingestion.layouts import build_index  # noqa: E402
from segad.meta.classifier import ClassifierConfig, fit_classifier, predict_scores  # noqa: E402
from segad.meta.classifier_protocol import stratified_share  # noqa: E402
from segad.meta.classifier_stem import ActivationCache  # noqa: E402
from segad.storage.weights import backbone_cache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def subset(index: pd.DataFrame, split: str, n: int, seed: int) -> pd.DataFrame:
    """`n` images of `split` (0 = all), label-stratified and seeded."""
    rows = index[index["split"] == split].sort_values("image_id").reset_index(drop=True)
    if n <= 0 or n >= len(rows):
        return rows
    chosen = stratified_share(rows["label"].to_numpy(), n / len(rows), seed)
    return rows.iloc[chosen].reset_index(drop=True)


def datasets(args) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    out = {}
    if "elpv" in args.datasets:
        index, _ = build_index("elpv", None)
        out["elpv"] = (subset(index, "train", args.elpv_train, 0), subset(index, "test", args.elpv_test, 0))
    if "demo" in args.datasets:
        root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_classifier_")) / "demo"
        write_demo(
            root,
            DemoConfig(
                n_train_good=args.demo_train_good,
                n_train_bad=args.demo_train_bad,
                n_test_good=60,
                n_test_bad=60,
                n_test_unseen=30,
            ),
        )
        index, _ = build_index("demo", root)
        out["demo"] = (subset(index, "train", 0, 0), subset(index, "test", 0, 0))
    return out


def variant_config(name: str, base: ClassifierConfig) -> ClassifierConfig:
    if name == "full":
        return replace(base, mode="full")
    if name.startswith("frozen"):
        return replace(base, mode="frozen", frozen_blocks=int(name[len("frozen") :]))
    raise SystemExit(f"unknown variant {name!r} (full or frozenK)")


def run_variant(name, config, train, test, image_size, seed) -> dict:
    pool_labels = train["label"].to_numpy().astype(np.int64)
    chosen = stratified_share(pool_labels, config.train_share, seed)
    paths, labels = train["path"].to_numpy()[chosen].tolist(), pool_labels[chosen]
    load0 = os.getloadavg()[0]
    cache = ActivationCache(config.batch_size) if config.mode == "frozen" else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    stem_s = 0.0
    if cache is not None:
        import torch

        from segad.meta.classifier import build_model

        torch.manual_seed(seed)
        cache.activations(build_model(config), paths, image_size)  # the stem pass, timed on its own
        stem_s = time.perf_counter() - wall0
    model = fit_classifier(paths, labels, config, image_size, seed, cache=cache)
    fit_s, fit_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    t0 = time.perf_counter()
    scores = predict_scores(model, test["path"].tolist(), image_size, config.batch_size, cache=cache)
    predict_s = time.perf_counter() - t0
    y = test["label"].to_numpy()
    return {
        "variant": name,
        "seed": seed,
        "n_train": len(paths),
        "steps": model.steps,
        "fit_s": fit_s,
        "stem_s": stem_s,
        "loop_s_per_step": (fit_s - stem_s) / max(model.steps, 1),
        "fit_cpu_s": fit_cpu,
        "predict_s": predict_s,
        "auroc": 100 * auroc(y, scores),
        "pg2": 100 * pg(y, scores, 2.0),
        "load": f"{load0:.1f}->{os.getloadavg()[0]:.1f}",
        "scores": scores,
    }


def bootstrap_delta(y, a, b, n=2000, seed=0) -> tuple[float, float]:
    """Mean and std of AUROC(b) - AUROC(a) over paired bootstrap resamples of the test set (points)."""
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            deltas.append(100 * (auroc(y[i], b[i]) - auroc(y[i], a[i])))
    return float(np.mean(deltas)), float(np.std(deltas))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="elpv,demo")
    parser.add_argument("--variants", default="full,frozen6")
    parser.add_argument("--seeds", default="0", help="split seeds, comma separated")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--elpv-train", type=int, default=320, help="ELPV training images (0 = all 1667)")
    parser.add_argument("--elpv-test", type=int, default=240, help="ELPV test images (0 = all 556)")
    parser.add_argument("--demo-train-good", type=int, default=160)
    parser.add_argument("--demo-train-bad", type=int, default=80)
    parser.add_argument("--workdir", default=None, help="where the demo is written (default: a new /tmp folder)")
    parser.add_argument("--cache-dir", default=str(backbone_cache(ROOT / "data/06_models")))
    args = parser.parse_args(argv)
    base = ClassifierConfig(enabled=True, cache_dir=args.cache_dir, mode="full", cross_fit_folds=0, backend="eager")
    if args.epochs is not None:
        base = replace(base, epochs=args.epochs)
    if args.lr is not None:
        base = replace(base, learning_rate=args.lr)
    import torch

    print(
        f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load {os.getloadavg()}, "
        f"epochs {base.epochs}, batch {base.batch_size}, lr {base.learning_rate}, {args.image_size} px",
        flush=True,
    )
    header = (
        f"{'dataset':8} {'variant':8} {'seed':>4} {'n_train':>7} {'steps':>5} {'fit_s':>7} {'stem_s':>6} "
        f"{'s/step':>6} {'cpu_s':>7} {'pred_s':>6} {'AUROC':>6} {'PG2':>6} {'speedup':>7} load"
    )
    for dataset, (train, test) in datasets(args).items():
        print(
            f"\n{dataset}: {len(train)} train ({int(train.label.sum())} bad), {len(test)} test "
            f"({int(test.label.sum())} bad)",
            flush=True,
        )
        print(header, flush=True)
        results = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name in args.variants.split(","):
                r = run_variant(name, variant_config(name, base), train, test, args.image_size, seed)
                first = next((q for q in results if q["seed"] == seed), r)
                results.append(r)
                print(
                    f"{dataset:8} {name:8} {seed:>4} {r['n_train']:>7} {r['steps']:>5} {r['fit_s']:>7.1f} "
                    f"{r['stem_s']:>6.1f} {r['loop_s_per_step']:>6.2f} {r['fit_cpu_s']:>7.1f} "
                    f"{r['predict_s']:>6.1f} {r['auroc']:>6.1f} {r['pg2']:>6.1f} "
                    f"{first['fit_s'] / r['fit_s']:>6.1f}x {r['load']}",
                    flush=True,
                )
                if r is not first:
                    mean, std = bootstrap_delta(test["label"].to_numpy(), first["scores"], r["scores"])
                    print(
                        f"{'':8} AUROC {name} - {first['variant']}: {mean:+.1f} +- {std:.1f} (paired bootstrap "
                        "of the test set)",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
