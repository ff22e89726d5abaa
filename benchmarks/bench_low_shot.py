"""How SegAD's gain over the detectors shrinks as real bad training images get fewer.

On a finished run's feature table (``<data-root>/04_feature/features``, the maps and segment
statistics are reused as they are), each (category, split seed) keeps only ``n`` of its
brf_train bad rows, drawn at random (``--draws`` independent draws per ``n``; every brf_train
good row stays), refits the BRF of every default combination with the conf's settings
(conf/base/parameters_brf.yml) and evaluates on the unchanged test rows. ``all`` keeps every bad
row (the run's own regime). The classifier column is dropped: its stored scores come from models
trained on every bad image, which would overstate a low-shot regime. The run's synthetic defects
(the top-up, ``defects.top_up_share``) stay beside the kept real bad rows, or are all dropped with
``--synthetic drop`` (the paper's regime), so one run measures both. With ``--select`` the
do-no-harm selection (`segad.meta.selection`, the conf's ``brf.selection``) chooses a method per
category on each subset's brf_train rows, and its test scores are reported as ``selected``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_low_shot.py --data-root data/elpv \
        --detectors padim patchcore --n 14 40 all --draws 4 --synthetic keep drop

Prints AUROC and PG2 (percent, mean over categories, split seeds and draws) per ``n`` and method,
and per ``n`` the best SegAD method against the best single detector.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from segad.columns import CLASSIFIER
from segad.datasets.partitioned_parquet_dataset import PartitionedTable
from segad.evaluation.decision import compare_best
from segad.evaluation.metrics import auroc, pg
from segad.ingestion.defects import is_synthetic
from segad.logs import progress
from segad.meta.brf import run_brf
from segad.meta.brf_params import PRESETS, BRFConfig, BRFParams
from segad.meta.selection import SELECTED, SelectionParams, run_selection, selected_scores

ROOT = Path(__file__).resolve().parents[1]


def read_features(data_root: Path, benchmark: str, detectors: list[str], classifier: bool = False) -> pd.DataFrame:
    """The run's rows of the feature table (the catalog entry's partitioning), classifier column
    dropped unless `classifier`."""
    entry = yaml.safe_load((ROOT / "conf/base/catalog_features.yml").read_text())["features"]
    table = PartitionedTable(data_root / "04_feature/features", entry["partition_cols"], entry["partition_types"]).read(
        benchmark=benchmark, detectors="+".join(sorted(detectors))
    )
    if table.empty:
        raise FileNotFoundError(f"no {benchmark} features of {detectors} under {data_root}/04_feature/features")
    return table if classifier else table.drop(columns=[c for c in table.columns if c.startswith(f"{CLASSIFIER}__")])


def parse_variant(text: str, brf: dict) -> tuple[str, BRFConfig]:
    """``name:key=value,...`` -> (name, BRF settings): the preset ``name`` when it is one
    (`segad.meta.brf.PRESETS`), else the conf's ``brf.preset``, then the conf's ``brf.model``,
    then the given values (YAML)."""
    name, _, assignments = text.partition(":")
    settings = dict(brf.get("model") or {})
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        settings[key] = yaml.safe_load(value)
    preset = name if name in PRESETS else brf.get("preset", "guarded")
    return name, BRFParams(preset=preset, model=settings).settings


def keep_bad(table: pd.DataFrame, n: int | None, draw: int) -> pd.DataFrame:
    """Each (category, split seed) with only ``n`` real brf_train bad rows (None: all), drawn with
    ``draw``; synthetic rows stay."""
    kept = []
    for (category, seed), rows in table.groupby(["category", "split_seed"]):
        is_bad = (rows["role"] == "brf_train") & (rows["label"] == 1) & ~is_synthetic(rows["image_id"])
        bad = rows[is_bad]
        if n is not None and n < len(bad):
            rng = np.random.default_rng([draw, int(seed), zlib.crc32(str(category).encode())])
            bad = bad.iloc[np.sort(rng.choice(len(bad), size=n, replace=False))]
        kept += [rows[~is_bad], bad]
    return pd.concat(kept, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="the run's data_root (e.g. data/elpv)")
    parser.add_argument("--detectors", nargs="+", default=["padim", "patchcore"])
    parser.add_argument("--benchmark", default="high_shot")
    parser.add_argument("--n", nargs="+", default=["14", "40", "all"], help="bad rows kept per category and seed")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument(
        "--synthetic", nargs="+", choices=["keep", "drop"], default=["keep"], help="the run's synthetic defect rows"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="optional CSV of every (n, draw, category, seed, method)"
    )
    parser.add_argument("--select", action="store_true", help="add the do-no-harm selection's `selected` rows")
    parser.add_argument(
        "--classifier",
        action="store_true",
        help="keep the classifier's column (honest with --n all only: it was trained on every bad row)",
    )
    parser.add_argument(
        "--variant",
        nargs="+",
        default=[],
        help="BRF settings side by side, each NAME:key=value,... (NAME a preset: from it); rows get @NAME",
    )
    args = parser.parse_args()

    brf = yaml.safe_load((ROOT / "conf/base/parameters_brf.yml").read_text())["brf"]
    selection = SelectionParams(**brf.get("selection", {}))
    variants = [parse_variant(v, brf) for v in args.variant] or [parse_variant("", brf)]
    table = read_features(args.data_root, args.benchmark, args.detectors, args.classifier)
    plan = [
        (synthetic, None if n == "all" else int(n), draw)
        for synthetic in args.synthetic
        for n in args.n
        for draw in range(1 if n == "all" else args.draws)
    ]
    rows = []
    for synthetic, n, draw in progress(plan, desc="low-shot BRFs"):
        subset = keep_bad(table if synthetic == "keep" else table[~is_synthetic(table["image_id"])], n, draw)
        frames = []
        for name, config in variants:
            _, scores = run_brf(subset, args.detectors, config)
            if args.select:
                picked = run_selection(subset, args.detectors, None, config, selection)
                print(
                    f"synthetic {synthetic}, n={n}, draw {draw}{' ' + name if name else ''}: selected {picked.chosen}"
                )
                scores = pd.concat(
                    [scores, selected_scores(scores, subset, picked.chosen, picked.blends)], ignore_index=True
                )
            if name:  # single inputs do not depend on the BRF settings: kept once, from the first variant
                single = ~scores["method"].str.contains("+", regex=False) & (scores["method"] != SELECTED)
                scores.loc[~single, "method"] += f"@{name}"
                scores = scores[~single] if frames else scores
            frames.append(scores)
        scores = pd.concat(frames, ignore_index=True)
        test = subset[subset["role"] == "test"][["image_id", "split_seed", "category", "label"]]
        merged = scores.merge(test, on=["image_id", "split_seed"])
        for (category, seed, method), group in merged.groupby(["category", "split_seed", "method"]):
            labels, values = group["label"].to_numpy(), group["score"].to_numpy()
            rows.append(
                {
                    "synthetic": synthetic,
                    "n": "all" if n is None else n,
                    "draw": draw,
                    "category": category,
                    "split_seed": seed,
                    "method": method,
                    "auroc": 100 * auroc(labels, values),
                    "pg2": 100 * pg(labels, values),
                }
            )
    result = pd.DataFrame(rows)
    if args.out:
        result.to_csv(args.out, index=False)
    result["n"] = result["n"].astype(str)
    mean = result.groupby(["synthetic", "n", "method"], sort=False)[["auroc", "pg2"]].mean()
    print(mean.round(1).to_string())
    for (synthetic, n), group in mean.groupby(level=["synthetic", "n"], sort=False):
        rows = group.droplevel(["synthetic", "n"]).reset_index().assign(category="all", subset="all", split_seed="mean")
        best = compare_best(rows.assign(auroc=rows.auroc / 100, pg2=rows.pg2 / 100), "all")
        line = (
            "no SegAD method and detector to compare"
            if best is None
            else "; ".join(
                f"{name} AUROC {best.cell(name, 'auroc')}, PG2 {best.cell(name, 'pg2')}"
                for name in (best.method, best.detector)
            )
        )
        print(f"synthetic {synthetic}, n={n}: {line}")
        if args.select:
            means = group.droplevel(["synthetic", "n"])
            single = means[~means.index.str.contains("+", regex=False) & ~means.index.str.startswith(SELECTED)]
            for name, _ in variants:
                method = f"{SELECTED}@{name}" if name else SELECTED
                print(
                    f"  {method} {means.at[method, 'auroc']:.1f} / {means.at[method, 'pg2']:.1f} against the best "
                    f"single input {single['auroc'].max():.1f} ({single['auroc'].idxmax()}) / "
                    f"{single['pg2'].max():.1f} ({single['pg2'].idxmax()})"
                )


if __name__ == "__main__":
    main()
