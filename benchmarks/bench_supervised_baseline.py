"""Supervised SuperSimpleNet alone on a finished run's splits, beside that run's methods.

The baseline row a user would pick instead of SegAD (`supersimplenet_supervised` alone), without
the K cross-fitted fold models the pipeline also trains to feed SegAD: per (category, split
seed) one *full* model is fitted on the split's detector_train good images plus every brf_train
bad image (masks where the index has them, else label-only), with the settings of
conf/base/parameters_anomaly_maps.yml, and its own image score (``pred_score``) is evaluated on
the test rows. Cost: one fit instead of K + 1, which is what makes it feasible on a CPU.

Reads ``<data-root>/02_intermediate/{image_index,splits}.parquet`` and, for the side-by-side
table, ``<data-root>/08_reporting/metrics.csv`` of the same run; writes one JSON per (category,
seed) under ``--out`` (kept: a rerun skips finished ones) and prints a table in percent.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_supervised_baseline.py \
        --data-root data/elpv --seeds 0 --image-size 256 --out data/elpv/08_reporting/ssn_baseline
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from segad.detection.supervised import fit_supervised, iter_supervised
from segad.detection.supervised_config import SupervisedConfig, TrainImage
from segad.evaluation.metrics import image_metrics
from segad.storage.weights import backbone_cache

ROOT = Path(__file__).resolve().parents[1]
NAME = "supersimplenet_supervised"
SHOWN = ("auroc", "pg2", "fpr95tpr", "f1max")


def training_items(rows: pd.DataFrame) -> list[TrainImage]:
    """detector_train good + brf_train bad rows of one (category, seed) as training images.

    The same images as the pipeline's full model (`segad.detection.supervised_stage.plan_supervised`,
    fold FULL), in the index's row order rather than sorted by path: the figures in docs/journal.md
    were measured with this order, and the order decides the seeded batches.
    """
    chosen = rows[
        ((rows.role == "detector_train") & (rows.label == 0)) | ((rows.role == "brf_train") & (rows.label == 1))
    ]
    return [
        TrainImage(str(r.path), int(r.label), None if pd.isna(r.mask_path) or not r.mask_path else str(r.mask_path))
        for r in chosen.itertuples()
    ]


def run_one(config: SupervisedConfig, rows: pd.DataFrame, image_size: int, device: str, cache: Path) -> dict:
    items = training_items(rows)
    test = rows[rows.role == "test"].reset_index(drop=True)
    start = time.perf_counter()
    model = fit_supervised(config, items, image_size, device=device, backbone_cache_dir=cache)
    fit_s = time.perf_counter() - start
    scores = np.zeros(len(test), dtype=np.float64)
    for index, _, score in iter_supervised(model, test.path.astype(str).tolist(), image_size, config.batch_size):
        scores[index] = score
    metrics = image_metrics(test.label.to_numpy(), scores, NAME)
    return {
        **{k: float(v) for k, v in dataclasses.asdict(metrics).items()},
        "fit_seconds": fit_s,
        "predict_seconds": time.perf_counter() - start - fit_s,
        "n_train_good": sum(i.label == 0 for i in items),
        "n_train_bad": sum(i.label == 1 for i in items),
        "epochs": config.trainer.get("max_epochs"),
        "image_ids": test.image_id.tolist(),
        "scores": scores.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="the run's data_root (e.g. data/elpv)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--categories", nargs="*", default=None, help="default: every category of the run")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of the conf")
    parser.add_argument("--out", type=Path, required=True, help="folder for one JSON per (category, seed)")
    args = parser.parse_args()

    conf = yaml.safe_load((ROOT / "conf/base/parameters_anomaly_maps.yml").read_text())["anomaly_maps"][NAME]
    if args.epochs is not None:
        conf = {**conf, "trainer": {**conf.get("trainer", {}), "max_epochs": args.epochs}}
    config = SupervisedConfig.from_dict(conf)
    index = pd.read_parquet(args.data_root / "02_intermediate/image_index.parquet")
    splits = pd.read_parquet(args.data_root / "02_intermediate/splits.parquet")
    rows = splits.merge(index, on="image_id")
    categories = args.categories or sorted(rows.category.unique())
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for category in categories:
        for seed in args.seeds:
            path = args.out / f"{category}_seed{seed}.json"
            if not path.exists():
                print(f"fitting {NAME} on {category}, split seed {seed} ...", flush=True)
                part = rows[(rows.category == category) & (rows.split_seed == seed)]
                result = run_one(config, part, args.image_size, args.device, backbone_cache(args.out))
                temp = path.with_suffix(".json.tmp")
                temp.write_text(json.dumps(result))
                os.replace(temp, path)  # no half-written result on a crash
            result = json.loads(path.read_text())
            results.append({"category": category, "split_seed": seed, "method": NAME, **result})
            print(
                f"{category} seed {seed}: AUROC {100 * result['auroc']:.1f}, PG2 {100 * result['pg2']:.1f}, "
                f"fit {result['fit_seconds']:.0f} s ({result['n_train_good']} good + {result['n_train_bad']} bad, "
                f"{result['epochs']} epochs)",
                flush=True,
            )
    table = pd.DataFrame(results)[["category", "split_seed", "method", *SHOWN]]
    run_metrics = args.data_root / "08_reporting/metrics.csv"
    if run_metrics.exists():
        ran = pd.read_csv(run_metrics)
        ran = ran[ran.category.isin(categories) & ran.split_seed.astype(str).isin([str(s) for s in args.seeds])]
        table = pd.concat([table, ran[table.columns]], ignore_index=True)
    summary = table.groupby(["category", "method"])[list(SHOWN)].mean().mul(100).round(1)
    print(summary.to_string())


if __name__ == "__main__":
    main()
