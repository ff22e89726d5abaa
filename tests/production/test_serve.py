"""The HTTP endpoint (segad.production.serve): answers, 4xx naming the problem, refusal of a damaged
bundle, and a small bounded loopback load test through benchmarks/bench_serve.py."""

from __future__ import annotations

import base64
import http.client
import io
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segad.production.scorer import Scorer
from segad.production.serve import create_app, main

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_serve
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_serve


@pytest.fixture()
def server(bundle_dir):
    """(port, scorer) of the app served by uvicorn in a thread of this process."""
    import uvicorn

    scorer = Scorer.open(bundle_dir, backend="eager")
    port = _bench().free_port()
    config = uvicorn.Config(create_app(scorer, max_bytes=200_000), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port, scorer
    instance.should_exit = True
    thread.join(timeout=30)


def _post(port: int, body: bytes, query: str = "name=part") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", f"/score?{query}", body, {"Content-Type": "application/octet-stream"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _png(size, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_endpoint_scores_an_image_as_the_scorer_does(server, tiny_demo):
    port, scorer = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/health")
    health = json.loads(connection.getresponse().read())
    assert health["status"] == "ok" and health["bundle_id"] == scorer.bundle.bundle_id
    assert health["detectors"] == ["padim"] and health["image_size"] == 32
    path = sorted((tiny_demo / "test" / "bad").glob("*.png"))[0]
    status, body = _post(port, path.read_bytes(), "name=bad0.png")
    expected = scorer.score_bytes(path.read_bytes(), "bad0.png")
    assert status == 200
    assert body["image"] == "bad0.png" and body["decision"] == expected.decision
    assert body["score"] == pytest.approx(expected.score, abs=1e-12)
    assert body["threshold"] == scorer.bundle.operating_point.threshold
    assert set(body) >= {"top_segment", "top_segment_name", "maxima", "error", "bundle_id", "latency_ms"}
    assert "overlay_png_base64" not in body


def test_an_overlay_is_sent_on_request(server, tiny_demo):
    import dataclasses

    port, scorer = server
    scorer.bundle.operating_point = dataclasses.replace(scorer.bundle.operating_point, threshold=-1e9)
    path = sorted((tiny_demo / "test" / "bad").glob("*.png"))[0]
    status, body = _post(port, path.read_bytes(), "name=bad0.png&overlay=true")
    assert status == 200 and body["decision"] == "reject"
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["overlay_png_base64"]))))
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0]


def test_bad_images_get_a_4xx_naming_the_problem(server, tiny_demo):
    port, _ = server
    good = sorted((tiny_demo / "test" / "good").glob("*.png"))[0].read_bytes()
    width, height = Image.open(io.BytesIO(good)).size
    cases = [
        (b"", 400, "p1: empty image"),
        (b"GIF89a but not really", 400, "p1: unreadable or truncated image"),
        (good[: len(good) // 3], 400, "p1: unreadable or truncated image"),
        (_png((width + 3, height)), 422, f"p1: wrong size {width + 3}x{height}"),
        (_png((width, height), "L"), 422, "p1: gray image but the bundle was trained on rgb images"),
        (b"x" * 200_001, 413, "p1: 200001 bytes, more than the 200000 accepted"),
    ]
    for body, code, message in cases:
        status, answer = _post(port, body, "name=p1")
        assert (status, answer["detail"][: len(message)]) == (code, message), answer
    assert _post(port, good)[0] == 200  # the server goes on serving


def test_a_damaged_bundle_refuses_to_start(bundle_dir, capsys):
    brf = bundle_dir / "brf.ubj"
    data = bytearray(brf.read_bytes())
    data[len(data) // 2] ^= 0xFF
    brf.write_bytes(bytes(data))
    assert main(["--bundle", str(bundle_dir), "--backend", "eager"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segad-serve: refusing to start: ") and "brf.ubj" in err and "changed" in err


@pytest.mark.slow
def test_a_small_bounded_load_test_loses_nothing(bundle_dir, tiny_demo):
    """benchmarks/bench_serve.py end to end (server process, 1 and 2 clients), few requests."""
    bench = _bench()
    startup, summaries = bench.run(str(bundle_dir), tiny_demo / "test", [1, 2], 24, 120.0, "eager")
    assert startup > 0
    for summary in summaries:
        assert (summary["sent"], summary["answered"], summary["errors"], summary["lost"]) == (24, 24, 0, 0)
        assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
        assert summary["rss_max_mb"] > 50 and summary["throughput_per_s"] > 0
