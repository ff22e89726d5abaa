"""Batch scoring: a list of image files + a loaded bundle -> one inspection row per image.

A trained SegAD bundle (`segad.production.bundle`) turns new images into one row each: the SegAD
score (raw margin of the BRF, higher = more anomalous; not a probability), the decision at the
bundle's operating point (`segad.production.operating_point`), how much each segment and each
detector pushed the score up or down (`segad.production.explain`) and an overlay per rejected
part (`segad.production.render`). An image that cannot be read, fails the input checks
(`segad.production.inputs`) or gets a non-finite map is an ``error`` row with a message naming
the file; the rest of its batch is scored.

Usage (with a bundle folder written by `segad.production.writer`)::

    bundle = load_bundle(resolve_bundle("data/06_models/segad_bundle"))
    result = score_images(list_images("incoming/"), bundle, bundle.load_detectors("cpu"))
    result.table  # one row per image; result.overlays: one picture per rejected part

Example:
    >>> from segad.production.batch import EXPLAIN_MODES, STAGES
    >>> STAGES
    ('read', 'detector', 'segments', 'classifier', 'features', 'brf', 'explain', 'overlay')
    >>> EXPLAIN_MODES
    ('all', 'rejected', 'none')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from segad.columns import CLASSIFIER, CLASSIFIER_COLUMN, max_column
from segad.production.explain import contribution_columns, detector_contribution_column
from segad.production.inputs import InputMismatchError, load_checked
from segad.production.operating_point import ERROR, REJECT, decide
from segad.production.render import overlay_name, render_overlay
from segad.storage.images import ImageReadError

if TYPE_CHECKING:
    from segad.production.bundle import Bundle

OK = "ok"
EXPLAIN_MODES = ("all", "rejected", "none")
STAGES = ("read", "detector", "segments", "classifier", "features", "brf", "explain", "overlay")


@dataclass
class ScoringResult:
    """What `score_images` returns.

    Attributes:
        table: one row per input path (columns: see `score_images`).
        overlays: file name (``<image path with / -> __>.png``) -> uint8 (S, 2S, 3) picture,
            one per rejected part.
        seconds: wall time per stage (`STAGES`), summed over batches.
        cpu_seconds: CPU time of this process (all threads) per stage: unlike wall time it
            barely moves when other programs compete for the cores.
    """

    table: pd.DataFrame
    overlays: dict[str, np.ndarray]
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]


def score_images(
    paths: Sequence[str | Path],
    bundle: Bundle,
    models: dict,
    *,
    root: str | Path | None = None,
    batch_size: int = 16,
    explain: str = "rejected",
    overlays: bool = True,
    progress: bool = True,
    backends: dict[str, str] | None = None,
) -> ScoringResult:
    """Score image files with a loaded bundle (`segad.production.bundle.load_bundle`) and its detectors.

    Per batch: read and check each image (`load_checked`: a failing image becomes an error row,
    the batch goes on); raw maps of every detector (`segad.detection.shared.detector_maps`: one backbone
    pass for the detectors that share one); the
    segment labels (the bundle's static map, or each image's own labels from the bundled centres and
    the packaged backbone, `segad.production.bundle_segments`); the classifier score when bundled
    (`segad.production.bundle_classifier`); per-segment statistics and maxima (`segad.segments.statistics`); the score (`Bundle.score`: the
    BRF's, blended where the bundle has a blend); the decision at the bundle's threshold; per-segment and per-detector SHAP contributions for the
    rows `explain` selects; an overlay per rejected part (`render_overlay`, map of the detector
    with the largest contribution, or of the first detector when not explained).

    Args:
        paths: image files.
        bundle: a `segad.production.bundle.Bundle`.
        models: detector name -> fitted model, and ``classifier`` -> its model list when the
            bundle has one (`Bundle.load_models`).
        root: column ``image`` is the path relative to `root` (default: the path as given).
        batch_size: images per detector forward pass.
        explain: "rejected" (default), "all" or "none".
        overlays: render an overlay per rejected part.
        progress: show a progress bar with images/s (segad.logs.progress).
        backends: detector name -> CPU inference backend (eager | openvino | onnxruntime,
            `segad.storage.backends`); eager where not given.

    Returns:
        `ScoringResult`. Table columns, in order: image, path (absolute), status (ok | error),
        decision (accept | reject | error), score (float64 raw margin, NaN on error), threshold,
        error (message, None when ok), top_segment (int64, -1 = none or not explained),
        top_segment_name, ``contrib_seg<l>`` per segment, contrib_global, contrib_bias,
        ``contrib_det_<detector>`` per detector (and ``contrib_det_classifier``; float64, NaN where
        not explained), ``<detector>__max`` (float64), ``classifier__score`` (float64, when the
        bundle has the classifier), overlay (file name or None), bundle_id.
    """
    from segad.logs import progress as progress_bar
    from segad.segments.statistics import SegmentMap

    if explain not in EXPLAIN_MODES:
        raise ValueError(f"explain must be one of {EXPLAIN_MODES}, got {explain!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    backends = {name: (backends or {}).get(name, "eager") for name in bundle.detectors}
    missing = [name for name in bundle.owners if name not in models]
    if missing:
        raise ValueError(f"no loaded model for the bundled {missing} (Bundle.load_models loads them all)")
    root = Path(root).resolve() if root is not None else None
    static = bundle.segments
    segment_map = SegmentMap.from_labels(static, bundle.n_segments) if static is not None else None
    clock = _Clock()
    rows: list[dict] = []
    pictures: dict[str, np.ndarray] = {}
    bar = progress_bar(total=len(paths), desc="scoring", unit="img", disable=not progress, smoothing=0.1)
    for start in range(0, len(paths), batch_size):
        batch = [Path(p) for p in paths[start : start + batch_size]]
        batch_rows: list[dict] = []
        arrays: list[np.ndarray] = []
        ok: list[int] = []
        with clock("read"):
            for path in batch:
                absolute = path.resolve()
                image = (
                    absolute.relative_to(root).as_posix()
                    if root is not None and absolute.is_relative_to(root)
                    else str(path)
                )
                row = {"image": image, "path": str(absolute), "status": OK, "error": None}
                try:
                    arrays.append(load_checked(path, bundle.input_spec))
                    ok.append(len(batch_rows))
                except (ImageReadError, InputMismatchError) as error:
                    row.update(status=ERROR, decision=ERROR, error=str(error))
                batch_rows.append(row)
        if ok:
            _score_batch(
                np.stack(arrays),
                [batch_rows[i] for i in ok],
                bundle,
                models,
                segment_map,
                explain,
                overlays,
                pictures,
                clock,
                backends,
            )
        rows.extend(batch_rows)
        bar.update(len(batch))
    bar.close()
    return ScoringResult(table=_table(rows, bundle), overlays=pictures, seconds=clock.wall, cpu_seconds=clock.cpu)


class _Clock:
    """Accumulates wall and process-CPU seconds per stage."""

    def __init__(self) -> None:
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self._stage: str | None = None

    def __call__(self, stage: str) -> _Clock:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        import time

        self._start = (time.perf_counter(), time.process_time())

    def __exit__(self, *exc: object) -> None:
        import time

        assert self._stage is not None, "a stage is entered through clock(stage)"
        self.wall[self._stage] += time.perf_counter() - self._start[0]
        self.cpu[self._stage] += time.process_time() - self._start[1]


@dataclass
class BatchFeatures:
    """What `batch_features` computes for a batch of N images.

    Attributes:
        maps: detector -> float32 (N, H, W) raw anomaly maps.
        labels: int64 segment labels, (H, W) shared or (N, H, W) per image.
        maxima: per detector, float64 (N,) map maxima (NaN where not finite).
        finite: bool (N,): every map of the image is finite (the others are error rows).
        features: float64 (N, F): the BRF's input columns (`Bundle.feature_columns`), NaN rows where not finite.
        classifier: float64 (N,) ``classifier__score``, or None when the bundle has no classifier.
    """

    maps: dict[str, np.ndarray]
    labels: np.ndarray
    maxima: list[np.ndarray]
    finite: np.ndarray
    features: np.ndarray
    classifier: np.ndarray | None = None


def batch_features(
    x: np.ndarray,
    bundle: Bundle,
    models: dict,
    *,
    backends: dict[str, str] | None = None,
    segment_map=None,
    clock: _Clock | None = None,
) -> BatchFeatures:
    """The BRF input of float32 (N, 3, H, W) images in [0, 1] at the bundle's image size, computed
    as the training pipeline computes its feature table: each detector's raw map, the segment labels
    (the static map, or each image's own labels from the bundled centres), the classifier score
    (the bundled model's logit or the mean of its K models', `segad.meta.classifier_models`),
    per-segment statistics and map maxima (`segad.segments.statistics`), the BRF's columns picked
    by position.

    `segment_map`: the bundle's static map as a prepared `segad.segments.statistics.SegmentMap`
    (made here when None); `backends`: detector -> inference backend (eager where not given).
    """
    from segad.detection.shared import detector_maps
    from segad.meta.classifier_models import combined_logits
    from segad.segments.statistics import SegmentMap, feature_matrix, segment_statistics

    clock = clock if clock is not None else _Clock()
    n, detectors = x.shape[0], bundle.detectors
    if segment_map is None and bundle.segments is not None:
        segment_map = SegmentMap.from_labels(bundle.segments, bundle.n_segments)
    with clock("detector"):
        maps = detector_maps(models, detectors, x, backends)

    with clock("segments"):
        # (H, W) shared, or (N, H, W) each image's own labels, computed as the segmentation stage did
        labels = segment_map if segment_map is not None else bundle.segment_labels(x)

    with clock("classifier"):
        classifier = combined_logits(models[CLASSIFIER], x) if bundle.classifier_models else None

    with clock("features"):
        finite = np.ones(n, dtype=bool)
        for name in detectors:
            finite &= np.isfinite(maps[name].reshape(n, -1)).all(axis=1)
        # A non-finite map makes that image an error row; the rest of the batch is scored.
        maxima = [
            np.where(finite, np.nan_to_num(maps[name].reshape(n, -1), nan=-np.inf).max(axis=1), np.nan)
            for name in detectors
        ]
        features = np.full((n, len(bundle.feature_columns)), np.nan)
        if finite.any():
            picked = labels if isinstance(labels, SegmentMap) else labels[finite]
            stats = [segment_statistics(maps[name][finite], picked, bundle.n_segments) for name in detectors]
            own = classifier[finite] if classifier is not None else None
            features[finite] = feature_matrix(stats, [m[finite] for m in maxima], own)[:, bundle.column_positions]
    plain = labels.labels if isinstance(labels, SegmentMap) else labels
    return BatchFeatures(maps, plain, maxima, finite, features, classifier)


def _score_batch(x, rows, bundle, models, segment_map, explain, overlays, pictures, clock, backends=None) -> None:
    """Fill `rows` (one per image of `x`) in place; add overlays of rejected parts."""
    n, op = x.shape[0], bundle.operating_point
    computed = batch_features(x, bundle, models, backends=backends, segment_map=segment_map, clock=clock)
    finite, features = computed.finite, computed.features

    with clock("brf"):
        scores = np.full(n, np.nan)
        if finite.any():
            scores[finite] = bundle.score(features[finite])
        decisions = decide(scores, op.threshold)  # NaN -> 'error': never decide on a broken map

    with clock("explain"):
        wanted, segment_part, detector_part, tops = _explain(features, finite, decisions, explain, bundle)
    _fill_rows(
        x,
        rows,
        bundle,
        computed,
        scores,
        decisions,
        wanted,
        segment_part,
        detector_part,
        tops,
        overlays,
        pictures,
        clock,
    )


def _explain(features, finite, decisions, explain, bundle):
    """(rows explained, per-segment float64 (N, L + 2), per-owner float64 (N, K), top segment int64 (N,))
    of one batch; NaN (and top segment -1) in rows not explained."""
    import xgboost

    n, groups = features.shape[0], bundle.contribution_groups
    wanted = {"all": finite, "rejected": decisions == REJECT, "none": np.zeros(n, bool)}[explain]
    segment_part = np.full((n, len(groups.segment_columns)), np.nan)
    detector_part = np.full((n, len(groups.detector_columns)), np.nan)
    if wanted.any():
        # on the BRF's threads (one in a bundle): a DMatrix built on every core waits for busy ones
        dmatrix = xgboost.DMatrix(features[wanted], feature_names=bundle.feature_columns, nthread=bundle.brf.n_jobs)
        contribs = bundle.brf.get_booster().predict(dmatrix, pred_contribs=True)
        segment_part[wanted], detector_part[wanted] = groups.sum(contribs)  # a segment the model does not read: 0
    return wanted, segment_part, detector_part, groups.top_segment(segment_part)


def _fill_rows(
    x,
    rows,
    bundle,
    computed: BatchFeatures,
    scores,
    decisions,
    wanted,
    segment_part,
    detector_part,
    tops,
    overlays,
    pictures,
    clock,
) -> None:
    detectors, op = bundle.detectors, bundle.operating_point
    names = bundle.segment_names
    maps, maxima, finite, labels = computed.maps, computed.maxima, computed.finite, computed.labels
    own = {CLASSIFIER_COLUMN: computed.classifier} if computed.classifier is not None else {}
    groups = bundle.contribution_groups  # owners: the detectors first, so [:len(detectors)] are the maps' own
    for i, row in enumerate(rows):
        row.update(
            decision=decisions[i],
            score=float(scores[i]),
            top_segment=int(tops[i]),
            top_segment_name=names[tops[i]] if tops[i] >= 0 else None,
            **dict(zip(groups.segment_columns, segment_part[i].tolist(), strict=True)),
            **dict(zip(groups.detector_columns, detector_part[i].tolist(), strict=True)),
            **{max_column(name): float(maxima[k][i]) for k, name in enumerate(detectors)},
            **{column: float(values[i]) for column, values in own.items()},
        )
        if not finite[i]:
            broken = [d for d in detectors if not np.isfinite(maps[d][i]).all()]
            row.update(status=ERROR, error=f"{row['path']}: non-finite values in the {', '.join(broken)} anomaly map")
        if overlays and decisions[i] == REJECT:
            strongest = detectors[int(np.nanargmax(detector_part[i, : len(detectors)]))] if wanted[i] else detectors[0]
            label = f" | {names[tops[i]]}" if tops[i] >= 0 else ""
            name = overlay_name(row["image"])
            with clock("overlay"):
                pictures[name] = render_overlay(
                    x[i],
                    maps[strongest][i],
                    labels if labels.ndim == 2 else labels[i],
                    int(tops[i]),
                    title=f"reject {scores[i]:.2f} >= {op.threshold:.2f} | {strongest}{label}",
                )
            row["overlay"] = name


def _table(rows: list[dict], bundle) -> pd.DataFrame:
    """Rows -> the inspection table with fixed columns and dtypes (also when every row failed)."""
    contribs = contribution_columns(bundle.n_segments)
    per_detector = [detector_contribution_column(d) for d in bundle.owners]
    maxima = [max_column(d) for d in bundle.detectors] + ([CLASSIFIER_COLUMN] if bundle.classifier_models else [])
    columns = (
        ["image", "path", "status", "decision", "score", "threshold", "error", "top_segment", "top_segment_name"]
        + contribs
        + per_detector
        + maxima
        + ["overlay", "bundle_id"]
    )
    table = pd.DataFrame(rows, columns=columns)
    table["threshold"] = float(bundle.operating_point.threshold)
    table["bundle_id"] = bundle.bundle_id
    table["top_segment"] = table["top_segment"].fillna(-1).astype("int64")
    floats = ["score", *contribs, *per_detector, *maxima]
    table[floats] = table[floats].astype("float64")
    for column in ("image", "path", "status", "decision", "error", "top_segment_name", "overlay"):
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table
