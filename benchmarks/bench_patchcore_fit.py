"""PatchCore fit against the number of good training images, with and without the memory-bank cap
and the merge-and-reduce chunk.

Each variant (training images x ``coreset_max_bank`` x ``coreset_chunk``) is one fresh process (so
its peak RSS is its own), fitted through segad's own path (`segad.detection.fit.fit_detector`, the
conf's patchcore block with ``coreset: fast`` and the variant's cap and chunk) on a nested, seeded
subset of the good training images (the 100 are among the 300, the 300 among the 1000) and
scored with PatchCore alone (image score = map max, `segad.evaluation.metrics.auroc`) on one fixed
test subset. One torch thread. ``--data demo`` writes the demo; ``--data elpv/mono`` or
``elpv/poly`` takes that cell type's train goods and test cells from the installed elpv-dataset.

Columns: ``fit CPU-s`` / ``fit wall-s`` (whole fit), split into ``features`` (fit minus coreset:
backbone passes and stacking) and ``coreset`` (the selection alone, `FastCoresetPatchcore`'s own
timer); ``bank`` rows; ``maps/CPU-s`` (eager inference, channels_last); ``AUROC``; ``peak RSS``
(the variant process's ``ru_maxrss``); ``prefix``: whether a capped bank equals the first rows of
the uncapped bank of the same images and chunk (``=``: the cap did not bind, same bank; above the
chunk a capped bank is a reduction of the union, so ``no`` is expected there).

Run (from the repository root; a variant that runs past ``--timeout`` seconds is reported, not kept):
    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python benchmarks/bench_patchcore_fit.py \\
        --train 100,300,1000 --caps 4096 --chunks none,102400 --jobs 2 --timeout 1800
    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python benchmarks/bench_patchcore_fit.py --data elpv/poly \\
        --train 345 --caps 4096 --chunks none,102400 --test-good 230 --test-bad 100 --seed 1
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _params() -> dict:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env="base")
    return dict(loader["parameters"]["anomaly_maps"]["patchcore"])


def write_data(data: str, n_train: int, n_good: int, n_bad: int, seed: int, scratch: Path) -> dict:
    """``n_train`` good training paths (seeded order: any first n are a subset) and a seeded test
    subset of ``n_good`` + ``n_bad`` with labels, of the demo (written to ``scratch``) or an ELPV
    cell type (``elpv/mono``, ``elpv/poly``)."""
    from segad.ingestion.demo import DemoConfig, write_demo
    from segad.ingestion.layouts import build_index

    if data == "demo":
        root = write_demo(
            scratch / "demo",
            DemoConfig(n_train_good=n_train, n_train_bad=0, n_test_good=n_good, n_test_bad=n_bad, n_test_unseen=0),
        )
        index, _ = build_index("demo", root)
    elif data in ("elpv/mono", "elpv/poly"):
        index, _ = build_index("elpv", None)
        index = index[index.category == data.split("/")[1]]
    else:
        raise SystemExit(f"unknown --data {data!r}: demo | elpv/mono | elpv/poly")
    rng = np.random.default_rng(seed)
    train = index[(index.split == "train") & (index.label == 0)].path.tolist()
    test = index[index.split == "test"]
    good = sorted(test[test.label == 0].path.tolist())
    bad = sorted(test[test.label == 1].path.tolist())
    if len(train) < n_train or len(good) < n_good or len(bad) < n_bad:
        raise SystemExit(f"{data}: {len(train)} train goods, {len(good)} + {len(bad)} test images: too few")
    order = rng.permutation(sorted(train))[:n_train].tolist()  # drawn first: the demo's order is unchanged
    good = sorted(rng.choice(good, size=n_good, replace=False).tolist())
    bad = sorted(rng.choice(bad, size=n_bad, replace=False).tolist())
    return {
        "train": order,
        "test": good + bad,
        "labels": [0] * len(good) + [1] * len(bad),
    }


def one_variant(data_file: Path, n_train: int, cap: int | None, chunk: int | None, size: int, bank_file: Path) -> dict:
    """Fit and score one variant in this process; the bank is saved to ``bank_file``."""
    import torch

    from segad.detection.config import DetectorConfig
    from segad.detection.fit import fit_detector
    from segad.detection.inference import iter_maps
    from segad.evaluation.metrics import auroc
    from segad.storage.weights import backbone_cache

    torch.set_num_threads(1)
    data = json.loads(data_file.read_text())
    params = _params()
    values = {k: v for k, v in params.items() if k not in ("backend", "distribute")}
    config = DetectorConfig.from_dict(
        "patchcore", {**values, "coreset": "fast", "coreset_max_bank": cap, "coreset_chunk": chunk}
    )
    cpu, wall = time.process_time(), time.perf_counter()
    model = fit_detector(config, data["train"][:n_train], size, backbone_cache_dir=backbone_cache())
    fit_cpu, fit_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu = time.process_time()
    scores = np.zeros(len(data["test"]))
    for i, m in iter_maps(model, data["test"], size, config.batch_size, channels_last=True):
        scores[i] = float(m.max())
    infer_s = time.process_time() - cpu
    bank = model.model.memory_bank.detach().clone()
    torch.save(bank, bank_file)
    return {
        "fit_cpu": fit_cpu,
        "fit_wall": fit_wall,
        "coreset_cpu": model.coreset_seconds,
        "coreset_wall": model.coreset_wall_seconds,
        "bank": int(bank.shape[0]),
        "maps_per_cpu_s": len(data["test"]) / infer_s,
        "auroc": auroc(np.array(data["labels"]), scores),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run(
    data_file: Path, n: int, cap: int | None, chunk: int | None, size: int, scratch: Path, timeout: float
) -> dict | str:
    bank_file = scratch / f"bank_{n}_{cap}_{chunk}.pt"
    command = [sys.executable, __file__, "--one", str(data_file), "--train", str(n), "--size", str(size)]
    command += ["--caps", str(cap), "--chunks", str(chunk), "--bank-file", str(bank_file)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"stopped after {timeout:.0f} s"
    if done.returncode != 0:
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "bank_file": str(bank_file)}


def _prefix(result: dict, uncapped: dict | str | None) -> str:
    import torch

    if not isinstance(uncapped, dict) or result is uncapped:
        return ""
    bank, full = torch.load(result["bank_file"]), torch.load(uncapped["bank_file"])
    if len(bank) == len(full):
        return "=" if torch.equal(bank, full) else "differs"
    return "yes" if torch.equal(bank, full[: len(bank)]) else "no"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="100,300,1000", help="comma list of good training image counts")
    parser.add_argument("--caps", default="none,4096", help="comma list of coreset_max_bank values (none: no cap)")
    parser.add_argument(
        "--chunks", default="", help="comma list of coreset_chunk values (none: one selection; default: conf's)"
    )
    parser.add_argument("--data", default="demo", help="demo | elpv/mono | elpv/poly")
    parser.add_argument("--test-good", type=int, default=60, help="good test images")
    parser.add_argument("--test-bad", type=int, default=40, help="bad test images")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training order and the test subsets")
    parser.add_argument("--jobs", type=int, default=1, help="variants run at once (one torch thread each)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per variant")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bank-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    caps = [None if c.lower() == "none" else int(c) for c in args.caps.split(",") if c]
    chunks = [None if c.lower() == "none" else int(c) for c in args.chunks.split(",") if c] or [
        _params()["coreset_chunk"]
    ]
    counts = [int(n) for n in args.train.split(",") if n]
    if args.one is not None:  # a variant process
        print(json.dumps(one_variant(args.one, counts[0], caps[0], chunks[0], args.size, args.bank_file)))
        return
    print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}; {args.jobs} variant(s) at once")
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        start = time.perf_counter()
        data = write_data(args.data, max(counts), args.test_good, args.test_bad, args.seed, scratch)
        data_file = scratch / "data.json"
        data_file.write_text(json.dumps(data))
        print(f"{args.data} ready in {time.perf_counter() - start:.0f} s; {args.size} px; test images:")
        print(f"{args.test_good} good + {args.test_bad} bad; coreset_max_bank: {args.caps}; coreset_chunk: {chunks}")
        variants = [(n, cap, chunk) for n in counts for chunk in chunks for cap in caps]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {v: pool.submit(_run, data_file, *v, args.size, scratch, args.timeout) for v in variants}
            results = {v: f.result() for v, f in futures.items()}
        print(
            f"{'images':>7}{'cap':>6}{'chunk':>8}{'bank':>7}{'fit CPU-s':>10}{'features':>9}{'coreset':>8}"
            f"{'fit wall-s':>11}{'features':>9}{'coreset':>8}{'maps/CPU-s':>11}{'AUROC':>7}{'peak RSS MB':>12}"
            f"{'prefix':>8}"
        )
        for (n, cap, chunk), r in results.items():
            if isinstance(r, str):
                print(f"{n:>7}{cap or 'none':>6}{chunk or 'none':>8}  {r}")
                continue
            prefix = _prefix(r, results.get((n, None, chunk)))
            print(
                f"{n:>7}{cap or 'none':>6}{chunk or 'none':>8}{r['bank']:>7}{r['fit_cpu']:>10.1f}"
                f"{r['fit_cpu'] - r['coreset_cpu']:>9.1f}{r['coreset_cpu']:>8.1f}{r['fit_wall']:>11.1f}"
                f"{r['fit_wall'] - r['coreset_wall']:>9.1f}{r['coreset_wall']:>8.1f}{r['maps_per_cpu_s']:>11.2f}"
                f"{r['auroc']:>7.3f}{r['peak_rss_mb']:>12.0f}{prefix:>8}"
            )
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
