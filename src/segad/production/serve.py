"""The resident scorer as a long-lived HTTP endpoint: FastAPI + uvicorn (optional extra ``serve``).

Start (the bundle is loaded, checked and warmed before the port opens; a damaged, foreign or
unreadable bundle stops the command with exit status 2 and a line naming the problem)::

    pip install -e '.[serve]'
    segad-serve --bundle data/06_models/segad_bundle --host 127.0.0.1 --port 8000

Endpoints:

- ``GET /health``: ``{"status": "ok", "bundle_id", "detectors", "image_size", "setup_seconds"}``.
- ``POST /score`` with the encoded image (PNG, JPEG, ...) as the request body
  (``Content-Type: application/octet-stream`` or ``image/*``); query ``name`` (echoed back, used
  in errors) and ``overlay=true`` (adds ``overlay_png_base64``: the overlay of a rejected part).
  200: ``{"image", "decision", "score", "threshold", "top_segment", "top_segment_name",
  "maxima", "error", "bundle_id", "latency_ms"}``; ``decision`` is accept | reject, or error
  when a map is not finite (``error`` says which). 400: empty or unreadable image; 413: body
  over ``--max-bytes``; 422: an image of another size or colour storage than training. Every
  4xx body is ``{"detail": "<image name>: <problem>"}``.

Why FastAPI + uvicorn and not ``mlflow models serve`` (docs/operations.md, "Serving"): the
bundle is a folder with its own checks (checksums, versions, schema) and its scorer keeps
converted models warm in one process; a pyfunc would wrap the same scorer but take its input as
a DataFrame (an image as base64 text in a column) and answer bad input with MLflow's generic
error body, while here the 4xx says what is wrong with the image.

Example:
    >>> from segad.production.serve import create_app  # doctest: +SKIP
    >>> app = create_app(Scorer.open("data/06_models/segad_bundle"))  # doctest: +SKIP
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations (Request, a
# local import of create_app) at definition time
import argparse
import base64
import logging
import sys
import time
from typing import Any

from segad.production.batch import EXPLAIN_MODES
from segad.production.inputs import InputMismatchError
from segad.production.scorer import Scorer
from segad.storage.images import ImageReadError
from segad.vocabulary import BACKENDS

log = logging.getLogger(__name__)

#: largest request body accepted by default (bytes)
MAX_BYTES = 32 * 1024 * 1024


def create_app(scorer: Scorer, max_bytes: int = MAX_BYTES) -> Any:
    """The FastAPI application serving `scorer` (see the module docstring for the endpoints)."""
    from fastapi import FastAPI, HTTPException, Request
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="segad", description="SegAD scoring of one image per request")
    bundle = scorer.bundle

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "bundle_id": bundle.bundle_id,
            "detectors": bundle.owners,
            "image_size": bundle.input_spec.image_size.to_json(),
            "setup_seconds": scorer.setup_seconds,
        }

    @app.post("/score")
    async def score(request: Request, name: str = "image", overlay: bool = False) -> dict[str, Any]:
        start = time.perf_counter()
        data = await request.body()
        if len(data) > max_bytes:
            raise HTTPException(413, f"{name}: {len(data)} bytes, more than the {max_bytes} accepted")
        try:
            answer = await run_in_threadpool(scorer.score_bytes, data, name, overlay)
        except ImageReadError as error:
            raise HTTPException(400, str(error)) from error
        except InputMismatchError as error:
            raise HTTPException(422, str(error)) from error
        body = answer.to_json()
        if overlay:
            png = answer.overlay_png()
            body["overlay_png_base64"] = base64.b64encode(png).decode() if png is not None else None
        body["latency_ms"] = 1000 * (time.perf_counter() - start)
        return body

    return app


def main(argv: list[str] | None = None) -> int:
    """``segad-serve``: open the bundle (exit 2 naming the problem if it is not servable), then serve."""
    parser = argparse.ArgumentParser(prog="segad-serve", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="data/06_models/segad_bundle", help="bundle folder or its parent")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", default="openvino", choices=BACKENDS)
    parser.add_argument("--explain", default="rejected", choices=EXPLAIN_MODES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    parser.add_argument("--allow-version-mismatch", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvicorn
    except ImportError:
        print("segad-serve needs the serve extra: pip install -e '.[serve]'", file=sys.stderr)
        return 2
    try:
        scorer = Scorer.open(
            args.bundle,
            device=args.device,
            backend=args.backend,
            explain=args.explain,
            allow_version_mismatch=args.allow_version_mismatch,
        )
    except Exception as error:  # noqa: BLE001 - any failure to open the bundle: refuse to start
        print(f"segad-serve: refusing to start: {error}", file=sys.stderr)
        return 2
    log.info(
        "serving bundle %s (%s) on http://%s:%d; setup %s",
        scorer.bundle.bundle_id,
        scorer.bundle.root,
        args.host,
        args.port,
        {k: round(v, 2) for k, v in scorer.setup_seconds.items()},
    )
    uvicorn.run(create_app(scorer, args.max_bytes), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
