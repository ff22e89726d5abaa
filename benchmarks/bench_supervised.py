"""Training cost of the supervised SuperSimpleNet (`supersimplenet_supervised`) at the conf defaults.

Fits one model for one epoch on random 300 x 300 images (``--good`` good, ``--bad`` bad,
label-only) with the settings of conf/base/parameters_anomaly_maps.yml, and prints the wall
seconds and seconds per image and epoch, from which a dataset's cost follows: (K + 1) models per
category and split seed, each ``max_epochs`` x (good + repeated bad) images.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_supervised.py --good 32 --bad 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from segad.detection.supervised import fit_supervised
from segad.detection.supervised_config import SupervisedConfig, TrainImage
from segad.storage.weights import backbone_cache

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--good", type=int, default=32)
    parser.add_argument("--bad", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="map size (pixels a side)")
    args = parser.parse_args()
    conf = yaml.safe_load((ROOT / "conf/base/parameters_anomaly_maps.yml").read_text())["anomaly_maps"]
    config = SupervisedConfig.from_dict({**conf["supersimplenet_supervised"], "trainer": {"max_epochs": 1}})
    with tempfile.TemporaryDirectory(prefix="segad-bench-ssn-") as work:
        items = []
        for i in range(args.good + args.bad):
            path = Path(work) / f"{i}.png"
            pixels = (np.random.default_rng(i).random((300, 300, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(path)
            items.append(TrainImage(str(path), int(i >= args.good)))
        start = time.perf_counter()
        fit_supervised(config, items, args.size, backbone_cache_dir=backbone_cache(work))
        seconds = time.perf_counter() - start
    repeat = max(1, args.good // (2 * args.bad)) if config.bad_repeat == 0 else config.bad_repeat
    shown = args.good + repeat * args.bad
    print(
        f"1 epoch, {shown} images shown ({args.good} good, {args.bad} bad x {repeat}), {args.size} px, "
        f"batch {config.train_batch_size}: {seconds:.1f} s, {seconds / shown:.2f} s per image and epoch"
    )


if __name__ == "__main__":
    main()
