"""A resident scorer: a bundle loaded, checked and warmed once, then any number of images scored.

`Scorer.open` reads a bundle folder (`segad.production.bundle.load_bundle`: manifest, file
checksums, feature schema; a damaged bundle raises before anything is served), loads its
detectors and classifier models, and by default scores one blank image so that the converted
models (OpenVINO / ONNX Runtime, `segad.storage.backends`) are built and checked against eager
before the first real image arrives. It then scores

- image files (`score_paths`: the inspection table of `segad.production.batch.score_images`, what
  the ``score`` pipeline writes),
- decoded images (`score_arrays`: float32 (N, 3, H, W) in [0, 1] at the bundle's size),
- one encoded image as bytes (`score_bytes`: what the HTTP endpoint of `segad.production.serve`
  receives). An unreadable image raises `segad.storage.images.ImageReadError`, one of another size or
  colour storage than training `segad.production.inputs.InputMismatchError`, each naming the image.

One image at a time goes through the models (a lock): the converted models keep one inference
request each, and on a CPU two images at once only share the same cores.

Example:
    >>> from segad.production.scorer import Scorer
    >>> scorer = Scorer.open("data/06_models/segad_bundle", backend="openvino")  # doctest: +SKIP
    >>> scorer.score_bytes(open("part.png", "rb").read(), name="part.png").decision  # doctest: +SKIP
    'accept'
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segad.production.batch import OK, ScoringResult, _Clock, _score_batch, _table, score_images
from segad.production.bundle import Bundle, load_bundle, resolve_bundle
from segad.production.inputs import decode_checked

log = logging.getLogger(__name__)


@dataclass
class ScoredImage:
    """One image's answer.

    Attributes:
        image: the name the caller gave.
        decision: accept | reject | error (error: a non-finite map, see `error`).
        score: the SegAD score (BRF raw margin, higher = more anomalous; NaN on error).
        threshold: the bundle's operating threshold (reject when score >= threshold).
        top_segment: the segment that pushed the score most (-1 when not explained).
        top_segment_name: its name, or None.
        maxima: ``<detector>__max`` (and ``classifier__score``) of the image.
        error: what went wrong, or None.
        bundle_id: the bundle that scored it.
        overlay: uint8 (S, 2S, 3) picture (`segad.production.render`) when asked for and the
            part is rejected (as the ``score`` pipeline draws them), else None.
    """

    image: str
    decision: str
    score: float
    threshold: float
    top_segment: int
    top_segment_name: str | None
    maxima: dict[str, float]
    error: str | None
    bundle_id: str
    overlay: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (NaN -> None); the overlay is left out (`overlay_png` encodes it)."""
        score = float(self.score)
        return {
            "image": self.image,
            "decision": self.decision,
            "score": score if np.isfinite(score) else None,
            "threshold": float(self.threshold),
            "top_segment": int(self.top_segment),
            "top_segment_name": self.top_segment_name,
            "maxima": {k: (float(v) if np.isfinite(v) else None) for k, v in self.maxima.items()},
            "error": self.error,
            "bundle_id": self.bundle_id,
        }

    def overlay_png(self) -> bytes | None:
        """The overlay as PNG bytes, or None."""
        if self.overlay is None:
            return None
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.overlay).save(buffer, format="PNG")
        return buffer.getvalue()


def converted_folder(bundle_root: Path) -> Path:
    """``<bundle folder>.converted``: the converted models of a bundle, beside it (in a versioned
    parent, ``<parent>/<bundle_id>.converted``, which the bundle writer counts as its own)."""
    return bundle_root.with_name(bundle_root.name + ".converted")


class Scorer:
    """A loaded bundle and its models, ready to score.

    Args:
        bundle: a loaded `Bundle`.
        models: `Bundle.load_models` of it.
        backend: CPU inference backend of every detector (eager | openvino | onnxruntime).
        explain: which images get SHAP contributions (and so a top segment): rejected | all | none.
    """

    def __init__(self, bundle: Bundle, models: dict, backend: str = "openvino", explain: str = "rejected") -> None:
        from segad.segments.statistics import SegmentMap

        self.bundle = bundle
        self.models = models
        self.backend = backend
        self.explain = explain
        self.backends = {name: backend for name in bundle.detectors}
        static = bundle.segments
        self.segment_map = SegmentMap.from_labels(static, bundle.n_segments) if static is not None else None
        self.lock = threading.Lock()
        self.setup_seconds: dict[str, float] = {}

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        backend: str = "openvino",
        explain: str = "rejected",
        allow_version_mismatch: bool = False,
        warm: bool = True,
        converted_root: str | Path | None = None,
    ) -> Scorer:
        """Load and check the bundle at `path` (a bundle folder, or a parent with ``LATEST``), load
        its models, prepare their converted forms and (with `warm`) score one blank image. Raises
        the bundle's errors (`segad.production.bundle.BundleError` and subclasses) on a damaged or
        foreign bundle.

        `converted_root`: where the converted detectors and classifier stem are kept (default
        `converted_folder` of the bundle, beside it), so a restarted scorer loads them instead of
        converting again; each is keyed by a hash of what is converted and the library versions,
        its files checked against their recorded SHA-256, and its first image checked against
        eager (`segad.storage.backends`)."""
        start = time.perf_counter()
        bundle = load_bundle(resolve_bundle(path), allow_version_mismatch=allow_version_mismatch)
        loaded = time.perf_counter()
        scorer = cls(bundle, bundle.load_models(device=device), backend=backend, explain=explain)
        models = time.perf_counter()
        scorer.setup_seconds = {"bundle": loaded - start, "models": models - loaded}
        scorer.prepare(converted_root if converted_root is not None else converted_folder(bundle.root))
        scorer.setup_seconds["convert"] = time.perf_counter() - models
        if warm:
            scorer.setup_seconds["warm_up"] = scorer.warm_up()
        return scorer

    def prepare(self, converted_root: str | Path) -> None:
        """Convert (or load the converted) detectors and classifier stem under `converted_root`:
        detectors that share a backbone as one module (`segad.detection.shared`), any other alone
        with lean heads (`segad.detection.lean`); nothing to do for eager or a model on a GPU."""
        from segad.columns import CLASSIFIER
        from segad.detection.shared import prepare_maps
        from segad.meta.classifier_models import keep_converted_stem

        root = Path(converted_root)
        stems = self.models.get(CLASSIFIER) or []
        if self.backend == "eager" and all(getattr(m, "stem_backend", "eager") == "eager" for m in stems):
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only bundle location: the temp-dir cache still works
            log.warning("converted models cannot be kept in %s (%s); using the temp-dir cache", root, error)
            return
        height, width = self.bundle.input_spec.image_size.hw
        prepare_maps(self.models, self.bundle.detectors, self.backend, height, width, root)
        if self.bundle.classifier_models:
            keep_converted_stem(self.models[CLASSIFIER], root)

    def warm_up(self) -> float:
        """Score one mid-gray image (builds and checks the converted models); returns its seconds."""
        start = time.perf_counter()
        height, width = self.bundle.input_spec.image_size.hw
        self.score_arrays(np.full((1, 3, height, width), 0.5, np.float32), ["warm-up"])
        return time.perf_counter() - start

    def score_paths(
        self,
        paths: Sequence[str | Path],
        *,
        root: str | Path | None = None,
        batch_size: int = 16,
        overlays: bool = True,
        progress: bool = False,
    ) -> ScoringResult:
        """`segad.production.batch.score_images` with this scorer's bundle, models and backend."""
        with self.lock:
            return score_images(
                paths,
                self.bundle,
                self.models,
                root=root,
                batch_size=batch_size,
                explain=self.explain,
                overlays=overlays,
                progress=progress,
                backends=self.backends,
            )

    def score_arrays(
        self, images: np.ndarray, names: Sequence[str] | None = None, overlay: bool = False
    ) -> list[ScoredImage]:
        """Score float32 (N, 3, H, W) images in [0, 1] at the bundle's image size."""
        x = np.ascontiguousarray(images, dtype=np.float32)
        height, width = self.bundle.input_spec.image_size.hw
        if x.ndim != 4 or x.shape[1:] != (3, height, width):
            raise ValueError(f"images must be (N, 3, {height}, {width}), got {tuple(x.shape)}")
        names = [f"image_{i}" for i in range(len(x))] if names is None else [str(n) for n in names]
        rows: list[dict] = [{"image": n, "path": n, "status": OK, "error": None} for n in names]
        pictures: dict[str, np.ndarray] = {}
        with self.lock:
            _score_batch(
                x,
                rows,
                self.bundle,
                self.models,
                self.segment_map,
                self.explain,
                overlay,
                pictures,
                _Clock(),
                self.backends,
            )
        table = _table(rows, self.bundle)
        maxima = [c for c in table.columns if c.endswith("__max") or c == "classifier__score"]
        answers = []
        for record in table.to_dict("records"):
            answers.append(
                ScoredImage(
                    image=record["image"],
                    decision=record["decision"],
                    score=float(record["score"]),
                    threshold=float(record["threshold"]),
                    top_segment=int(record["top_segment"]),
                    top_segment_name=record["top_segment_name"],
                    maxima={c: float(record[c]) for c in maxima},
                    error=record["error"],
                    bundle_id=self.bundle.bundle_id,
                    overlay=pictures.get(record["overlay"]) if record["overlay"] else None,
                )
            )
        return answers

    def score_bytes(self, data: bytes, name: str = "image", overlay: bool = False) -> ScoredImage:
        """Score one encoded image (PNG, JPEG, ...). ImageReadError / InputMismatchError name `name`
        when it cannot be read or does not match the training images."""
        (answer,) = self.score_arrays(decode_checked(data, self.bundle.input_spec, name)[None], [name], overlay)
        return answer
