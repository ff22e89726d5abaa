"""A bundle's first score after a (re)start: setup seconds with and without converted models kept.

Each measurement runs in a fresh Python process (as a restarted scorer would): it opens the
bundle with `segad.production.scorer.Scorer.open` (load + check the bundle, load the models,
convert or load the converted models, warm-up image) and scores one image, timing every step.
First with an empty folder of converted models (a new bundle: every model converted), then
``--restarts`` times again with that folder kept (a restart). Prints one table row per process.

    .venv/bin/python benchmarks/bench_warm_start.py --bundle data/06_models/segad_bundle \\
        --image data/01_raw/demo/test/good/000.png --backend openvino --restarts 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
start = time.perf_counter()
from segad.production.scorer import Scorer
imported = time.perf_counter()
scorer = Scorer.open(sys.argv[1], backend=sys.argv[2], converted_root=sys.argv[3])
opened = time.perf_counter()
answer = scorer.score_bytes(open(sys.argv[4], "rb").read(), "first")
done = time.perf_counter()
second = time.perf_counter()
scorer.score_bytes(open(sys.argv[4], "rb").read(), "second")
print(json.dumps({"import_s": imported - start, **{k + "_s": v for k, v in scorer.setup_seconds.items()},
                  "open_s": opened - imported, "first_score_ms": 1000 * (done - opened),
                  "second_score_ms": 1000 * (time.perf_counter() - second),
                  "setup_to_first_answer_s": done - start, "decision": answer.decision}))
"""


def measure(bundle: str, backend: str, converted: Path, image: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, bundle, backend, str(converted), image],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["process_wall_s"] = time.perf_counter() - started
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="data/06_models/segad_bundle")
    parser.add_argument("--image", required=True)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--restarts", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="segad-converted-") as folder:
        rows = [("new bundle (nothing converted)", measure(args.bundle, args.backend, Path(folder), args.image))]
        for i in range(args.restarts):
            rows.append(
                (f"restart {i + 1} (converted kept)", measure(args.bundle, args.backend, Path(folder), args.image))
            )
    keys = [k for k in rows[0][1] if k != "decision"]
    print("| run | " + " | ".join(keys) + " |")
    print("| --- | " + " | ".join("---" for _ in keys) + " |")
    for name, row in rows:
        print(f"| {name} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
