"""Bounded loopback load test of the HTTP endpoint (`segad-serve`, segad.production.serve).

Starts ``python -m segad.production.serve`` on a free loopback port as a child process, waits
for ``/health``, then for each client count sends a fixed number of ``POST /score`` requests
(images cycled from ``--images``) from that many concurrent clients, each on its own keep-alive
connection, stopping early at ``--max-seconds``. Prints, per client count: requests sent,
answered (200), errors, lost (sent - answered - errors), p50 / p95 / p99 latency as the client
sees it, throughput, and the server's resident memory (VmRSS) at the start, at the end and its
maximum, sampled every 0.5 s. The server is stopped at the end.

    .venv/bin/python benchmarks/bench_serve.py --bundle data/06_models/segad_bundle \\
        --images data/01_raw/demo/test --clients 1,2,8 --requests 5000 --max-seconds 600

Exit status 1 when any request was lost or failed (a bad image among ``--images`` counts as
failed: give only good files).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc), NaN when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def start_server(bundle: str, port: int, backend: str, timeout: float = 600.0) -> tuple[subprocess.Popen, float]:
    """(the server process, seconds until /health answered). Raises when it exits or times out."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "segad.production.serve", "--bundle", bundle, "--port", str(port)]
    process = subprocess.Popen([*command, "--backend", backend], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"segad-serve exited with status {process.returncode}: {output[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"segad-serve did not answer /health within {timeout} s")


@dataclass
class Round:
    clients: int
    sent: int = 0
    answered: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    rss: list[float] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        ms = np.asarray(self.latencies) * 1000 if self.latencies else np.asarray([np.nan])
        return {
            "clients": self.clients,
            "sent": self.sent,
            "answered": self.answered,
            "errors": self.errors,
            "lost": self.sent - self.answered - self.errors,
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "throughput_per_s": round(self.answered / self.seconds, 1) if self.seconds else None,
            "seconds": round(self.seconds, 1),
            "rss_start_mb": round(self.rss[0], 1) if self.rss else None,
            "rss_end_mb": round(self.rss[-1], 1) if self.rss else None,
            "rss_max_mb": round(max(self.rss), 1) if self.rss else None,
        }


def drive(port: int, bodies: Sequence[bytes], clients: int, requests: int, max_seconds: float, pid: int) -> Round:
    """Send `requests` POST /score from `clients` threads (or stop at `max_seconds`)."""
    result = Round(clients)
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds
    done = threading.Event()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                index = next(counter, None)
                if index is None:
                    break
                result.sent += 1
            body = bodies[index % len(bodies)]
            start = time.perf_counter()
            try:
                connection.request(
                    "POST", f"/score?name=img{index}", body, {"Content-Type": "application/octet-stream"}
                )
                response = connection.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status == 200 and json.loads(payload)["decision"] in ("accept", "reject"):
                        result.answered += 1
                        result.latencies.append(elapsed)
                    else:
                        result.errors += 1
                        result.messages.append(f"{response.status}: {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    result.errors += 1
                    result.messages.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.close()

    def sample() -> None:
        while not done.is_set():
            result.rss.append(rss_mb(pid))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    result.rss.append(rss_mb(pid))
    return result


def image_bodies(folder: Path, limit: int = 64) -> list[bytes]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)[:limit]
    if not files:
        raise SystemExit(f"{folder}: no image files")
    return [p.read_bytes() for p in files]


def run(
    bundle: str, images: Path, clients: Sequence[int], requests: int, max_seconds: float, backend: str
) -> tuple[float, list[dict]]:
    """(server start-up seconds, one summary per client count)."""
    bodies = image_bodies(images)
    port = free_port()
    process, startup = start_server(bundle, port, backend)
    try:
        rounds = [drive(port, bodies, n, requests, max_seconds, process.pid) for n in clients]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    for one in rounds:
        for message in one.messages[:3]:
            print(f"  clients {one.clients}: {message}", file=sys.stderr)
    return startup, [one.summary() for one in rounds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="data/06_models/segad_bundle")
    parser.add_argument("--images", type=Path, default=Path("data/01_raw/demo/test"))
    parser.add_argument("--clients", default="1,2,8")
    parser.add_argument("--requests", type=int, default=5000, help="per client count")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="per client count")
    parser.add_argument("--backend", default="openvino")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    clients = [int(c) for c in args.clients.split(",")]
    startup, summaries = run(args.bundle, args.images, clients, args.requests, args.max_seconds, args.backend)
    print(f"server start-up (process start to /health): {startup:.1f} s")
    header = list(summaries[0])
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for summary in summaries:
        print("| " + " | ".join(str(summary[k]) for k in header) + " |")
    return 0 if all(s["errors"] == 0 and s["lost"] == 0 for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
