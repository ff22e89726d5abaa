"""GPU check of the map stage and the features' torch path, in under 5 minutes on one CUDA GPU.

On the built-in demo at the conf's image size and detector settings (conf/base/
parameters_anomaly_maps.yml): fits each detector once on the GPU, then prints per detector the
inference images/s at fp32 and with AMP (the detector setting ``amp``: float16 autocast), the
largest map difference AMP vs fp32 (absolute and relative to the fp32 map range) and the peak GPU
memory (``torch.cuda.max_memory_allocated``) of fit + inference; the images/s at fp32 and AMP of
the detectors that share one backbone pass (`segad.detection.shared`), with each shared map's
largest difference from the detector's own; then the maps/s of the features' torch path (`segad.segments.features_torch.segment_statistics_torch`) on the GPU.

Without CUDA it prints one line saying no GPU is available and exits 0.

Run (from the repository root):
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_check.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_check.py --detectors patchcore,padim --train 100 --images 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "01_raw" / "demo"
NO_GPU = "gpu_check: no GPU is available (torch.cuda.is_available() is False); nothing was measured"


def _demo_paths(kind: str, n: int) -> list[str]:
    folder = DEMO / ("train/good" if kind == "train" else "test")
    return sorted(str(p) for p in folder.rglob("*.png"))[:n]


def _rate(fn, n_images: int, repeats: int) -> float:
    import torch

    best = 0.0
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = max(best, n_images / (time.perf_counter() - start))
    return best


def check_detector(name: str, params: dict, size: int, n_train: int, n_images: int, repeats: int) -> dict:
    import numpy as np
    import torch

    from segad.detection.config import DetectorConfig
    from segad.detection.fit import fit_detector
    from segad.detection.inference import predict_maps
    from segad.storage.images import read_image

    config = DetectorConfig.from_dict(name, params)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model = fit_detector(
        config, _demo_paths("train", n_train), size, device="cuda", backbone_cache_dir=tempfile.mkdtemp()
    )
    fit_s = time.perf_counter() - start
    x = np.stack([read_image(p, size) for p in _demo_paths("test", n_images)])
    batch = config.batch_size

    def run(amp: bool) -> np.ndarray:
        return np.concatenate([predict_maps(model, x[i : i + batch], amp=amp) for i in range(0, len(x), batch)])

    fp32, half = run(False), run(True)  # warm-up (cuDNN autotuning) and the maps compared
    rates = {amp: _rate(lambda amp=amp: run(amp), len(x), repeats) for amp in (False, True)}
    diff = float(np.abs(half - fp32).max())
    scale = float(fp32.max() - fp32.min()) or 1.0
    return {
        "detector": name,
        "fit_s": fit_s,
        "fp32": rates[False],
        "amp": rates[True],
        "amp_diff": diff,
        "amp_rel": diff / scale,
        "peak_mb": torch.cuda.max_memory_allocated() / 2**20,
        "maps": fp32,
        "model": model,
        "batch": batch,
    }


def check_shared(results: list[dict], size: int, n_images: int, repeats: int) -> list[str]:
    """images/s of the detectors that share one backbone pass (`segad.detection.shared.SharedMaps`)
    at fp32 and AMP, and each shared map's largest difference from the detector's own fp32 map."""
    import contextlib

    import numpy as np
    import torch

    from segad.detection.shared import SharedMaps, shared_groups
    from segad.storage.images import read_image

    models = {r["detector"]: r["model"] for r in results}
    own = {r["detector"]: r["maps"] for r in results}
    x = np.stack([read_image(p, size) for p in _demo_paths("test", n_images)])
    lines = []
    for group in (g for g in shared_groups(models, list(models)) if len(g) >= 2):
        module = SharedMaps([models[n] for n in group]).eval().cuda()
        batch = results[0]["batch"]

        def run(amp: bool, module=module, batch=batch) -> np.ndarray:
            autocast = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
            out = []
            with torch.inference_mode(), autocast:
                for i in range(0, len(x), batch):
                    out.append(module(torch.as_tensor(x[i : i + batch], device="cuda")).float().cpu().numpy())
            return np.concatenate(out)

        fp32, _ = run(False), run(True)
        rates = {amp: _rate(lambda amp=amp: run(amp), len(x), repeats) for amp in (False, True)}
        diffs = ", ".join(
            f"{n} {np.abs(fp32[:, k] - own[n]).max() / ((own[n].max() - own[n].min()) or 1.0):.1e}"
            for k, n in enumerate(group)
        )
        lines.append(
            f"shared pass {'+'.join(group)}: fp32 {rates[False]:.1f} img/s, AMP {rates[True]:.1f} img/s; "
            f"max |shared - own| / range: {diffs}"
        )
    return lines


def check_features(maps, size: int, repeats: int) -> float:
    import numpy as np
    import torch
    from PIL import Image

    from segad.segments.features_torch import segment_statistics_torch

    labels = np.asarray(Image.open(DEMO / "segmentation.png").resize((size, size), Image.NEAREST)).astype(np.int64)
    n_segments = int(labels.max()) + 1
    gpu_maps = torch.as_tensor(maps, device="cuda")
    gpu_labels = torch.as_tensor(labels, device="cuda")
    segment_statistics_torch(gpu_maps, gpu_labels, n_segments)  # warm-up
    return _rate(lambda: segment_statistics_torch(gpu_maps, gpu_labels, n_segments), len(maps), repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="patchcore,padim")
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(NO_GPU)
        return 0

    os.chdir(ROOT)
    sys.path[:0] = [str(ROOT / "src")]
    from kedro.config import OmegaConfigLoader

    from segad.ingestion.demo import write_demo

    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env="base")
    params = loader["parameters"]
    size = int(params.get("image_size", 256))
    write_demo(DEMO)  # no-op when the demo is already there
    print(
        f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {size} px, fit on {args.train} "
        f"demo train/good, {args.images} demo test images, best of {args.repeats}"
    )
    print(
        f"{'detector':<12}{'fit s':>8}{'fp32 img/s':>12}{'AMP img/s':>11}{'AMP/fp32':>10}"
        f"{'max |AMP-fp32|':>16}{'/ range':>10}{'peak GPU MB':>13}"
    )
    maps, results = None, []
    for name in args.detectors.split(","):
        r = check_detector(name, params["anomaly_maps"][name], size, args.train, args.images, args.repeats)
        results.append(r)
        maps = r["maps"] if maps is None else maps
        print(
            f"{name:<12}{r['fit_s']:>8.1f}{r['fp32']:>12.1f}{r['amp']:>11.1f}{r['amp'] / r['fp32']:>10.2f}"
            f"{r['amp_diff']:>16.4g}{r['amp_rel']:>10.1e}{r['peak_mb']:>13.0f}",
            flush=True,
        )
    for line in check_shared(results, size, args.images, args.repeats):
        print(line, flush=True)
    if maps is not None:
        print(
            f"features torch path (segment_statistics_torch on the GPU): {check_features(maps, size, args.repeats):.0f} maps/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
