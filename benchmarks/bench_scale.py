"""Peak memory and wall time of a whole `segad` run as the demo dataset grows (1x, 10x, ...).

Each scale is one `kedro run --pipelines segad` in a subprocess under `/usr/bin/time -v`, on a
demo written with every image count multiplied by the scale, with its own data tree (nothing is
written to the project's data/ or conf/): a copy of conf/base plus a `scale` environment that
moves `data_root` into the work folder and sets the counts, detectors, seeds and map size.
Peak memory is the run's maximum resident set size (the Kedro process; the map stage and the
classifier run inside it).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_scale.py --scales 1,10 --detectors padim \
        --image-size 128 --seeds 0

Prints one row per scale: images, wall seconds, peak RSS (MiB), and the per-image growth.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_COUNTS = ("n_train_good", "n_train_bad", "n_test_good", "n_test_bad", "n_test_unseen")


def write_conf(work: Path, scale: int, args: argparse.Namespace) -> Path:
    """conf/base copied, plus conf/scale (globals and parameters of this scale); returns the conf folder."""
    conf = work / "conf"
    if not conf.exists():
        shutil.copytree(ROOT / "conf" / "base", conf / "base")
    env = conf / "scale"
    env.mkdir(parents=True, exist_ok=True)
    data = work / f"scale_{scale}"
    base_demo = yaml.safe_load((ROOT / "conf/base/parameters_ingestion.yml").read_text())["demo"]
    (env / "globals.yml").write_text(
        yaml.safe_dump({"data_root": str(data / "data"), "synthetic_dir": str(data / "data/02_intermediate/synthetic")})
    )
    params = {
        "dataset": {"layout": "demo", "root": str(data / "demo")},
        "demo": {k: int(base_demo[k]) * scale for k in DEMO_COUNTS},
        "detectors": args.detectors.split(","),
        "seeds": [int(s) for s in args.seeds.split(",")],
        "image_size": args.image_size,
    }
    (env / "parameters.yml").write_text(yaml.safe_dump(params))
    return conf


def run(conf: Path, args: argparse.Namespace) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, log tail) of one `kedro run --pipelines segad` in the scale environment."""
    kedro = str(Path(sys.executable).with_name("kedro"))
    command = [
        "/usr/bin/time",
        "-v",
        kedro,
        "run",
        "--pipelines",
        "segad",
        "--conf-source",
        str(conf),
        "--env",
        "scale",
    ]
    environ = {**os.environ, "SEGAD_TRACKING": "off", "KEDRO_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg"}
    done = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True)
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"kedro run failed ({done.returncode}):\n{log[-4000:]}")
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", log).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", log).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    return seconds, rss, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--detectors", default="padim")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workdir", default=None, help="kept when given; a temporary folder otherwise")
    args = parser.parse_args()
    base_demo = yaml.safe_load((ROOT / "conf/base/parameters_ingestion.yml").read_text())["demo"]
    per_scale = sum(int(base_demo[k]) for k in DEMO_COUNTS)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="segad-scale-"))
    print(f"work folder {work}; detectors {args.detectors}; seeds {args.seeds}; {args.image_size} px")
    print(f"{'scale':>5} {'images':>7} {'wall s':>8} {'peak RSS MiB':>13}")
    rows = []
    for scale in (int(s) for s in args.scales.split(",")):
        conf = write_conf(work, scale, args)
        seconds, rss, _ = run(conf, args)
        rows.append((scale, per_scale * scale, seconds, rss))
        print(f"{scale:>5} {per_scale * scale:>7} {seconds:>8.1f} {rss:>13.0f}", flush=True)
    if len(rows) > 1:
        (s0, n0, _, r0), (s1, n1, _, r1) = rows[0], rows[-1]
        print(
            f"{s1 // s0}x the images: peak RSS x{r1 / r0:.2f} ({(r1 - r0) / (n1 - n0) * 1024:.0f} KiB per added image)"
        )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
