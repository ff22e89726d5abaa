"""Which detectors run at which `image_size`, and what `image_size: auto` picks for a dataset.

``--detectors`` fits each detector (tests/detection/tiny.py settings, 4 tiny images) at each of
``--sizes`` (height x width) and prints the map shape or the error; for PatchCore and PaDiM it
also converts the model to ONNX Runtime and OpenVINO and prints the largest difference to eager.
``--auto`` builds the image index of the demo (default configuration) and/or ELPV and prints the
size `segad.storage.images.resolve_image_size` chooses.

Run:
    PYTHONPATH=src:. HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/image_sizes.py \\
        --detectors patchcore,padim,fastflow,reverse_distillation --sizes 64x32,50x70
    PYTHONPATH=src:. .venv/bin/python benchmarks/image_sizes.py --auto demo,elpv
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from segad.storage.images import ImageSize, resolve_image_size


def probe_detectors(names: list[str], sizes: list[ImageSize]) -> None:
    from segad.detection.config import DetectorConfig
    from segad.detection.fit import fit_detector
    from segad.detection.inference import iter_maps
    from tests.detection.tiny import CHEAP, write_images

    root = Path(tempfile.mkdtemp())
    paths = write_images(root / "train", 4, 0, size=64)
    probes = write_images(root / "probe", 2, 1, size=64, bright=True)
    for size in sizes:
        for name in names:
            start = time.perf_counter()
            try:
                config = DetectorConfig.from_dict(name, CHEAP[name])
                model = fit_detector(config, paths, size, backbone_cache_dir=root / "bb")
                eager = dict(iter_maps(model, probes, size, batch_size=2))
                line = f"{name:22s} {size}: maps {eager[0].shape}"
                if name in ("patchcore", "padim"):
                    for backend in ("onnxruntime", "openvino"):
                        got = dict(iter_maps(model, probes, size, batch_size=2, backend=backend, cache_root=root))
                        line += f", {backend} max |diff| {np.abs(got[0] - eager[0]).max():.2e}"
            except Exception as error:  # noqa: BLE001 - the point is to report it
                line = f"{name:22s} {size}: FAILED {type(error).__name__}: {str(error)[:120]}"
            print(f"{line} ({time.perf_counter() - start:.0f} s)", flush=True)


def probe_auto(datasets: list[str]) -> None:
    from segad.ingestion.demo import DemoConfig, write_demo
    from segad.ingestion.layouts import build_index

    for dataset in datasets:
        if dataset == "demo":
            root = write_demo(Path(tempfile.mkdtemp()) / "demo", DemoConfig())
            index, _ = build_index("demo", str(root), None)
        else:
            index, _ = build_index(dataset, None, None)
        print(f"{dataset}: image_size auto -> {resolve_image_size('auto', index)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detectors", default="", help="comma-separated detector names")
    parser.add_argument("--sizes", default="64x32", help="comma-separated HEIGHTxWIDTH")
    parser.add_argument("--auto", default="", help="comma-separated datasets: demo, elpv")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.detectors:
        sizes = [ImageSize(*(int(v) for v in s.split("x"))) for s in args.sizes.split(",")]
        probe_detectors(args.detectors.split(","), sizes)
    if args.auto:
        probe_auto(args.auto.split(","))


if __name__ == "__main__":
    main()
