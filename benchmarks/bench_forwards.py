"""Scoring cost in backbone forwards: where one scored image's milliseconds go, against one
EfficientNet-Lite0 forward timed in the same run.

On a bundle written by `kedro run --pipelines segad`, with the bundle's converted backend (OpenVINO
f32 by default), batch 1 as a line scores:

1. the floor: one full tf_efficientnet_lite0 forward (all blocks, 1000-class head), 256 px or the
   bundle's size, packaged ImageNet weights;
2. parts of the detector stage, each converted alone: the shared backbone up to the detectors'
   layers, each detector alone as before (anomalib's module, 2-D blur), each detector with lean
   heads, the shared pass of all shareable detectors (`segad.detection.shared`), and one map's
   blur, 2-D and separable;
3. the resident scorer (`segad.production.scorer.Scorer`) on real image files, batch 1: milliseconds
   per image per stage (read, detector, segments, classifier, features, brf, explain, overlay).

It prints each as ms per image and as backbone-forward equivalents (ms / floor ms), and the peak
RSS. The floor and the scorer's passes are timed in each of `--rounds` rounds (floor, then every
folder); their rows are the median over the rounds, forwards the median of each round's ratio to
that round's floor, with the range beside them. Run it on a quiet machine; the load average is
printed before and after.

    .venv/bin/python benchmarks/bench_forwards.py --bundle data/06_models/segad_bundle \
        --images data/01_raw/demo/test --n 96
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segad.detection.lean import LeanMapModule, SeparableBlur  # noqa: E402
from segad.detection.shared import SharedMaps, shared_groups  # noqa: E402
from segad.production.scorer import Scorer  # noqa: E402
from segad.storage.backends import MapModule, converted_path, runner  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _ms_per_call(run, x: np.ndarray, repeats: int) -> float:
    for _ in range(3):
        run(x)
    start = time.perf_counter()
    for _ in range(repeats):
        run(x)
    return (time.perf_counter() - start) / repeats * 1000


def _converted(module: torch.nn.Module, backend: str, shape: tuple[int, ...], root: Path):
    """A runner of `module` converted at batch 1 for input `shape` (C, H, W)."""

    class Fixed(torch.nn.Module):  # converted_path traces a (1, 3, H, W) image; a map is (1, 1, H, W)
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x[:, : shape[0]])
            return torch.cat([t.flatten(1) for t in out.values()], 1) if isinstance(out, dict) else out

    path = converted_path(Fixed().eval(), backend, shape[-2:], None, root, wrap=lambda m: m)
    return runner(path, backend, torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, or its parent with LATEST")
    parser.add_argument(
        "--images", required=True, help="folder of images (each subfolder, e.g. good/ and bad/, timed apart)"
    )
    parser.add_argument("--n", type=int, default=96, help="images the scorer scores per subfolder")
    parser.add_argument("--backend", default="openvino", choices=["openvino", "onnxruntime"])
    parser.add_argument("--repeats", type=int, default=100, help="calls per timed graph")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of floor + scorer passes (median reported)")
    parser.add_argument("--workdir", default=None, help="converted graphs (default: a temp folder)")
    args = parser.parse_args()
    import tempfile

    import timm

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_forwards_"))
    print(f"load average before: {os.getloadavg()[0]:.2f}; torch threads {torch.get_num_threads()}")
    scorer = Scorer.open(args.bundle, backend=args.backend, explain="rejected")
    height, width = scorer.bundle.input_spec.image_size.hw
    x = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    rows: list[tuple[str, float]] = []

    lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    run_floor = _converted(lite0, args.backend, (3, height, width), root)
    floor = _ms_per_call(run_floor, x, args.repeats)
    rows.append(("floor: tf_efficientnet_lite0 full forward (first)", floor))
    detectors = {n: scorer.models[n] for n in scorer.bundle.detectors}
    for group in shared_groups(detectors, list(detectors)):
        extractor = detectors[group[0]].model.feature_extractor

        class Backbone(torch.nn.Module):
            def __init__(self, pre: torch.nn.Module, extractor: torch.nn.Module) -> None:
                super().__init__()
                self.pre, self.extractor = pre, extractor

            def forward(self, x: torch.Tensor) -> dict:
                return self.extractor(self.pre(x))

        run = _converted(Backbone(detectors[group[0]].pre_processor, extractor), args.backend, (3, height, width), root)
        rows.append((f"backbone to {extractor.layers} ({'+'.join(group)})", _ms_per_call(run, x, args.repeats)))
        for name in group:
            for label, wrap in (("as before (2-D blur)", MapModule), ("lean heads", LeanMapModule)):
                run = _converted(wrap(detectors[name]), args.backend, (3, height, width), root)
                rows.append((f"{name} alone, {label}", _ms_per_call(run, x, args.repeats)))
        if len(group) >= 2:
            run = _converted(SharedMaps([detectors[n] for n in group]), args.backend, (3, height, width), root)
            rows.append((f"shared pass: {' + '.join(group)}", _ms_per_call(run, x, args.repeats)))
        blur = next(m for m in detectors[group[0]].model.modules() if type(m).__name__ == "GaussianBlur2d")
        one_map = np.random.default_rng(1).random((1, 3, height, width), dtype=np.float32)  # first channel used
        for label, module in (("2-D", blur), ("separable", SeparableBlur(blur))):
            run = _converted(module, args.backend, (1, height, width), root)
            rows.append(
                (f"blur of one map, {label} {tuple(blur.kernel.shape[-2:])}", _ms_per_call(run, one_map, args.repeats))
            )

    import copy

    from segad.meta.brf import brf_scores

    row = np.zeros((1, len(scorer.bundle.feature_columns)))
    for threads in (torch.get_num_threads(), 1):  # the bundle's BRF scores on one thread (segad.production.bundle)
        brf = copy.deepcopy(scorer.bundle.brf).set_params(n_jobs=threads)
        rows.append(
            (f"BRF score of one row, {threads} thread(s)", _ms_per_call(lambda r, m=brf: brf_scores(m, r), row, 50))
        )

    folder = Path(args.images)
    parts = {p.name: p for p in sorted(folder.iterdir()) if p.is_dir()} or {folder.name: folder}
    files = {
        part: sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.n]
        for part, where in parts.items()
    }
    for paths in files.values():
        scorer.score_paths(paths[:4], batch_size=1, overlays=True)  # warm
    timed: dict[str, list[tuple[float, float]]] = {}  # row -> (ms, ms / that round's floor) per round
    totals: dict[str, list[float]] = {}  # folder -> ms per whole image, per round
    for _ in range(args.rounds):
        round_floor = _ms_per_call(run_floor, x, args.repeats)
        timed.setdefault("floor: tf_efficientnet_lite0 full forward", []).append((round_floor, 1.0))
        for part, paths in files.items():  # e.g. test/good and test/bad: rejected parts are also explained and drawn
            start = time.perf_counter()
            result = scorer.score_paths(paths, batch_size=1, overlays=True)
            total = (time.perf_counter() - start) / len(paths) * 1000
            rejected = int((result.table["decision"] == "reject").sum())
            for stage, seconds in result.seconds.items():
                ms = seconds / len(paths) * 1000
                timed.setdefault(f"scorer {part}: stage {stage}", []).append((ms, ms / round_floor))
            whole = f"scorer {part}: whole image ({len(paths)}, {rejected} rejected, batch 1)"
            timed.setdefault(whole, []).append((total, total / round_floor))
            totals.setdefault(part, []).append(total)
    floor = float(np.median([ms for ms, _ in timed["floor: tf_efficientnet_lite0 full forward"]]))

    print(f"\n{'what (one timing)':<62} {'ms/image':>9} {'forwards':>9}")
    for label, ms in rows:
        print(f"{label:<62} {ms:>9.2f} {ms / floor:>9.2f}")
    print(f"\n{'what (median of ' + str(args.rounds) + ' rounds)':<62} {'ms/image':>9} {'forwards':>9}  forwards range")
    for label, values in timed.items():
        ms, ratio = (float(np.median(v)) for v in zip(*values, strict=True))
        spread = [r for _, r in values]
        print(f"{label:<62} {ms:>9.2f} {ratio:>9.2f}  {min(spread):.2f}-{max(spread):.2f}")
    scored = ", ".join(f"{part} {1000 / float(np.median(ms)):.1f}" for part, ms in totals.items())
    print(f"\nscored images/s: {scored}; floor forwards/s {1000 / floor:.1f}; backend {args.backend}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
