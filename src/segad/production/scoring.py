"""Production scoring: operating point, input checks, per-segment explanations, overlays.

A trained SegAD bundle (`segad.production.bundle`) turns a folder of new images into one inspection row per
image: the SegAD score (raw margin of the BRF, higher = more anomalous; not a probability), the
decision at the bundle's operating point, and how much each segment of the product pushed the
score up or down.

Definitions:

- Operating point for a target miss rate m (e.g. 0.02 = at most 2 % of bad parts accepted):
  threshold = the m-quantile (numpy's linear one) of the held-out bad scores, the PGm operating
  point of "Beyond Academic Benchmarks"; a part is rejected when ``score >= threshold``.
  Expected good-part pass rate = share of held-out good scores below the threshold (= PGm of
  `segad.evaluation.metrics`); expected miss rate = share of held-out bad scores below it (<= m up to the
  quantile's interpolation).
- Per-segment contribution: XGBoost's exact TreeSHAP values (``pred_contribs``) of the feature
  columns, summed over the columns of each segment (``seg<l>__*``); the per-detector map maxima
  (and the classifier score) form the group ``global``; the model's bias is ``bias``. The groups
  sum to the score (additivity of SHAP on the raw margin).
- Decisions: ``accept``, ``reject``, or ``error`` for an image that could not be scored (status
  ``error`` with a message). An error is never counted as a pass.

Example:
    >>> import numpy as np
    >>> from segad.production.scoring import choose_operating_point, decide
    >>> rng = np.random.default_rng(0)
    >>> labels = np.r_[np.zeros(500, int), np.ones(100, int)]
    >>> scores = np.r_[rng.normal(0, 1, 500), rng.normal(4, 1, 100)]
    >>> op = choose_operating_point(labels, scores, max_miss_rate=0.02)
    >>> op.expected_miss_rate <= 0.02, round(op.expected_pass_rate, 3)
    (True, 0.99)
    >>> decide(np.array([op.threshold - 1, op.threshold, np.nan]), op.threshold).tolist()
    ['accept', 'reject', 'error']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from segad.evaluation.metrics import pg, split_scores
from segad.images import IMAGE_SUFFIXES, ImageReadError, read_image

ACCEPT, REJECT, ERROR = "accept", "reject", "error"
GLOBAL_GROUP, BIAS_GROUP = "global", "bias"
_SEGMENT_COLUMN = re.compile(r"^seg(\d+)__")
_CONTRIB_SEGMENT = re.compile(r"^contrib_seg(\d+)$")
# PIL modes whose pixels carry no colour.
TITLE_HEIGHT = 12
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


# --------------------------------------------------------------------------------------------
# operating point


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold on the SegAD score and what it is expected to do.

    Attributes:
        threshold: reject when score >= threshold (score units: BRF raw margin).
        target_miss_rate: largest share of bad parts allowed to pass, in [0, 1].
        expected_pass_rate: share of held-out good parts accepted (PG at the target), [0, 1].
        expected_miss_rate: share of held-out bad parts accepted, [0, 1].
        n_good, n_bad: held-out images the threshold was chosen on.
        source: where the held-out scores came from (free text, for the manifest).
    """

    threshold: float
    target_miss_rate: float
    expected_pass_rate: float
    expected_miss_rate: float
    n_good: int
    n_bad: int
    source: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def choose_operating_point(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    max_miss_rate: float = 0.02,
    source: str = "",
) -> OperatingPoint:
    """Threshold at the `max_miss_rate` quantile of the bad scores (the PGn operating point).

    Args:
        labels: 0 good / 1 bad per held-out image, (N,).
        scores: held-out scores (N,), higher = more anomalous. Use scores of a model that did not
            see these images (e.g. out-of-fold BRF scores), or the rates are optimistic.
        max_miss_rate: target share of bad parts accepted, in (0, 1).
        source: description stored with the result.
    """
    if not 0.0 < max_miss_rate < 1.0:
        raise ValueError(f"max_miss_rate must be in (0, 1), got {max_miss_rate}")
    good, bad = split_scores(labels, scores, name="operating-point scores")
    if bad.size < int(np.ceil(1.0 / max_miss_rate)):
        # fewer than 1/m bad images: the m-quantile is the minimum or an interpolation below
        # the second-smallest score; allowed, but say so in the source.
        source = (source + "; " if source else "") + (
            f"only {bad.size} bad images for a {max_miss_rate:.1%} miss rate: threshold is "
            "interpolated between the lowest bad scores")
    threshold = float(np.quantile(bad, max_miss_rate))
    return OperatingPoint(
        threshold=threshold,
        target_miss_rate=float(max_miss_rate),
        expected_pass_rate=pg(labels, scores, n=100.0 * max_miss_rate, name="operating point"),
        expected_miss_rate=float(np.mean(bad < threshold)),
        n_good=int(good.size),
        n_bad=int(bad.size),
        source=source,
    )


def out_of_fold_scores(
    features: np.ndarray,
    labels: np.ndarray,
    config=None,
    seed: int = 0,
    n_folds: int = 5,
) -> np.ndarray:
    """Held-out BRF scores of the training rows: float64 (N,), by stratified k-fold.

    Each row is scored by a BRF (`segad.meta.brf.fit_brf`, same `config` and `seed`) fitted on the
    other folds only, so the scores behave like those of unseen parts. Folds are drawn with
    `seed`; `n_folds` is lowered to the number of bad (or good) rows when there are fewer.
    """
    from sklearn.model_selection import StratifiedKFold

    from segad.meta.brf import BRFConfig, brf_scores, fit_brf

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    n_minority = int(min((labels == 0).sum(), (labels == 1).sum()))
    folds = min(int(n_folds), n_minority)
    if folds < 2:
        raise ValueError(
            f"out-of-fold scores need at least 2 good and 2 bad rows, got {int((labels == 0).sum())} "
            f"good and {int((labels == 1).sum())} bad")
    config = config or BRFConfig()
    scores = np.full(labels.shape[0], np.nan)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed))
    for k, (fit_rows, held_rows) in enumerate(splitter.split(features, labels)):
        model = fit_brf(features[fit_rows], labels[fit_rows], config, seed=seed,
                        context=f"out-of-fold {k + 1}/{folds}")
        scores[held_rows] = brf_scores(model, features[held_rows])
    return scores


def decide(scores: np.ndarray, threshold: float) -> np.ndarray:
    """'reject' where score >= threshold, 'accept' below, 'error' where the score is not finite."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.where(scores >= threshold, REJECT, ACCEPT).astype(object)
    out[~np.isfinite(scores)] = ERROR
    return out


# --------------------------------------------------------------------------------------------
# input checks


class InputMismatchError(ValueError):
    """An image is readable but does not match what the bundle was trained on."""


@dataclass(frozen=True)
class InputSpec:
    """What scored images must look like, taken from the training images.

    Attributes:
        image_size: side in pixels the images are resized to (maps are image_size x image_size).
        colour: "rgb" or "gray": how the training images were stored.
        sizes: accepted on-disk (width, height) pairs; empty = any size.
    """

    image_size: int
    colour: str
    sizes: tuple[tuple[int, int], ...] = ()

    def as_dict(self) -> dict:
        return {"image_size": self.image_size, "colour": self.colour,
                "sizes": [list(size) for size in self.sizes]}

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        return cls(image_size=int(data["image_size"]), colour=str(data["colour"]),
                   sizes=tuple((int(w), int(h)) for w, h in data.get("sizes", ())))


def colour_of(pil_mode: str) -> str:
    """'gray' for single-channel PIL modes (1, L, LA, I, I;16, F), else 'rgb'."""
    return "gray" if pil_mode in _GRAY_MODES else "rgb"


def probe_image(path: str | Path) -> tuple[int, int, str]:
    """(width, height, colour) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size[0], image.size[1], colour_of(image.mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: unreadable image ({error})") from error


def input_spec_from_paths(paths: Sequence[str | Path], image_size: int) -> InputSpec:
    """The spec of a training set: its single colour mode and its on-disk sizes.

    Raises InputMismatchError when the training images mix grayscale and colour storage.
    """
    if not paths:
        raise ValueError("input_spec_from_paths: no training image paths")
    probes = [probe_image(path) for path in paths]
    colours = {colour for _, _, colour in probes}
    if len(colours) > 1:
        examples = {colour: str(path) for path, (_, _, colour) in zip(paths, probes)}
        raise InputMismatchError(f"training images mix grayscale and colour files: {examples}")
    sizes = tuple(sorted({(w, h) for w, h, _ in probes}))
    return InputSpec(image_size=int(image_size), colour=colours.pop(), sizes=sizes)


def load_checked(path: str | Path, spec: InputSpec) -> np.ndarray:
    """Read an image for scoring: float32 (3, S, S) in [0, 1], S = spec.image_size.

    Raises ImageReadError (missing, unreadable, truncated) or InputMismatchError (on-disk size
    not among the training sizes; grayscale file for a colour model or the reverse), each with a
    message naming the file.
    """
    array = read_image(path, size=spec.image_size)  # decodes fully: catches truncated files
    width, height, colour = probe_image(path)
    if spec.sizes and (width, height) not in spec.sizes:
        expected = ", ".join(f"{w}x{h}" for w, h in spec.sizes)
        raise InputMismatchError(
            f"{path}: wrong size {width}x{height} (width x height); the bundle was trained on "
            f"{expected}")
    if colour != spec.colour:
        raise InputMismatchError(
            f"{path}: {colour} image but the bundle was trained on {spec.colour} images")
    return array


def list_images(folder: str | Path) -> list[Path]:
    """Every file under `folder` (recursive, sorted) with an image suffix (case-insensitive).

    Unreadable files with an image suffix are listed too: scoring reports them as errors.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"score input folder {folder} does not exist or is not a folder")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------------------------
# explanations


def contribution_groups(columns: Sequence[str]) -> list[str]:
    """Group of each feature column: 'seg<l>' for segment statistics, 'global' otherwise."""
    groups = []
    for column in columns:
        match = _SEGMENT_COLUMN.match(column)
        groups.append(f"seg{int(match.group(1))}" if match else GLOBAL_GROUP)
    return groups


def group_contributions(contribs: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Sum SHAP contributions per segment.

    Args:
        contribs: float (N, F + 1): one column per feature (in `columns` order) and the bias last,
            as ``Booster.predict(..., pred_contribs=True)`` returns.
        columns: the F feature column names.
    Returns:
        float64 frame (N, L + 2): ``contrib_seg0..contrib_seg<L-1>``, ``contrib_global``,
        ``contrib_bias``; each row sums to the raw margin.
    """
    contribs = np.asarray(contribs, dtype=np.float64)
    if contribs.ndim != 2 or contribs.shape[1] != len(columns) + 1:
        raise ValueError(f"contributions {contribs.shape} do not match {len(columns)} features + bias")
    groups = contribution_groups(columns)
    segments = sorted({g for g in groups if g != GLOBAL_GROUP}, key=lambda g: int(g[3:]))
    out = {}
    for name in [*segments, GLOBAL_GROUP]:
        mask = np.array([g == name for g in groups])
        out[f"contrib_{name}"] = contribs[:, :-1][:, mask].sum(axis=1)
    out[f"contrib_{BIAS_GROUP}"] = contribs[:, -1]
    return pd.DataFrame(out)


def detector_contributions(contribs: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Sum SHAP contributions per detector: ``contrib_det_<detector>`` (N, K), bias excluded.

    A detector's group holds its segment statistics and its map maximum; the classifier score,
    when present, is its own group ``classifier``.
    """
    contribs = np.asarray(contribs, dtype=np.float64)
    if contribs.ndim != 2 or contribs.shape[1] != len(columns) + 1:
        raise ValueError(f"contributions {contribs.shape} do not match {len(columns)} features + bias")
    owners = []
    for column in columns:
        parts = column.split("__")
        owners.append(parts[1] if _SEGMENT_COLUMN.match(column) else parts[0])
    out = {}
    for owner in dict.fromkeys(owners):
        mask = np.array([o == owner for o in owners])
        out[f"contrib_det_{owner}"] = contribs[:, :-1][:, mask].sum(axis=1)
    return pd.DataFrame(out)


def top_segment(grouped: pd.DataFrame) -> np.ndarray:
    """Index of the segment with the largest positive contribution per row; -1 if none is > 0."""
    seg_columns = [c for c in grouped.columns if _CONTRIB_SEGMENT.match(c)]
    if not seg_columns:
        return np.full(len(grouped), -1, dtype=np.int64)
    values = grouped[seg_columns].to_numpy()
    best = values.argmax(axis=1)
    index = np.array([int(c.removeprefix("contrib_seg")) for c in seg_columns])[best]
    return np.where(values.max(axis=1) > 0, index, -1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# overlays


def render_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    segments: np.ndarray,
    highlight: int | None,
    title: str = "",
) -> np.ndarray:
    """Side-by-side picture of a rejected part: uint8 (S, 2S, 3), plus a title strip on top.

    Left: the image with the `highlight` segment (the one that pushed the score most) tinted red
    and its outline drawn. Right: the anomaly map as a heat map over the image, min-max scaled
    per image (for looking at, not for comparing images). A non-empty `title` is written in a
    black strip of `TITLE_HEIGHT` pixels above the pictures.

    Args:
        image: float (3, S, S) in [0, 1].
        anomaly_map: float (S, S).
        segments: int (S, S) segment labels.
        highlight: segment index to highlight, or None / -1 for none.
    """
    from matplotlib import colormaps
    from PIL import ImageDraw

    rgb = np.clip(np.asarray(image, dtype=np.float32).transpose(1, 2, 0), 0.0, 1.0)
    left = rgb.copy()
    if highlight is not None and highlight >= 0:
        mask = np.asarray(segments) == highlight
        left[mask] = 0.55 * left[mask] + 0.45 * np.array([1.0, 0.0, 0.0], dtype=np.float32)
        edge = mask & ~_erode(mask)
        left[edge] = (1.0, 0.0, 0.0)
    amap = np.asarray(anomaly_map, dtype=np.float64)
    finite = np.isfinite(amap)
    lo, hi = (amap[finite].min(), amap[finite].max()) if finite.any() else (0.0, 1.0)
    scaled = np.where(finite, (amap - lo) / (hi - lo if hi > lo else 1.0), 0.0)
    heat = colormaps["jet"](scaled)[..., :3].astype(np.float32)
    right = 0.5 * rgb + 0.5 * heat
    both = (np.concatenate([left, right], axis=1) * 255.0 + 0.5).astype(np.uint8)
    if title:
        strip = Image.new("RGB", (both.shape[1], TITLE_HEIGHT), (0, 0, 0))
        ImageDraw.Draw(strip).text((2, 1), title, fill=(255, 255, 0))
        both = np.concatenate([np.asarray(strip), both], axis=0)
    return both


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (border pixels count as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
            & padded[1:-1, :-2] & padded[1:-1, 2:])




# --------------------------------------------------------------------------------------------
# scoring a list of images with a bundle

OK = "ok"
EXPLAIN_MODES = ("all", "rejected", "none")
STAGES = ("read", "detector", "features", "brf", "explain", "overlay")


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


def overlay_name(image: str) -> str:
    """File name of the overlay of `image`: its sanitised relative path ('/' -> '__') + '-' + the
    first 8 hex digits of the SHA-1 of `image`, so two images never share an overlay name."""
    stem = Path(image).with_suffix("").as_posix().lstrip("/")
    digest = hashlib.sha1(image.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", stem.replace("/", "__")) + f"-{digest}.png"


def score_images(
    paths: Sequence[str | Path],
    bundle,
    models: dict,
    *,
    root: str | Path | None = None,
    batch_size: int = 16,
    explain: str = "rejected",
    overlays: bool = True,
    progress: bool = True,
) -> ScoringResult:
    """Score image files with a loaded bundle (`segad.production.bundle.load_bundle`) and its detectors.

    Per batch: read and check each image (`load_checked`: a failing image becomes an error row,
    the batch goes on); raw maps of every detector (`segad.detection.inference.predict_maps`); per-segment
    statistics and maxima (`segad.segments.features`); the BRF score (`segad.meta.brf.brf_scores`); the
    decision at the bundle's threshold; per-segment and per-detector SHAP contributions for the
    rows `explain` selects; an overlay per rejected part (`render_overlay`, map of the detector
    with the largest contribution, or of the first detector when not explained).

    Args:
        paths: image files.
        bundle: a `segad.production.bundle.Bundle`.
        models: detector name -> fitted model (`Bundle.load_detectors`).
        root: column ``image`` is the path relative to `root` (default: the path as given).
        batch_size: images per detector forward pass.
        explain: "rejected" (default), "all" or "none".
        overlays: render an overlay per rejected part.
        progress: show a tqdm bar with images/s.

    Returns:
        `ScoringResult`. Table columns, in order: image, path (absolute), status (ok | error),
        decision (accept | reject | error), score (float64 raw margin, NaN on error), threshold,
        error (message, None when ok), top_segment (int64, -1 = none or not explained),
        top_segment_name, ``contrib_seg<l>`` per segment, contrib_global, contrib_bias,
        ``contrib_det_<detector>`` per detector (float64, NaN where not explained),
        ``<detector>__max`` (float64), overlay (file name or None), bundle_id.
    """
    from tqdm.auto import tqdm

    from segad.segments.features import SegmentLayout

    if explain not in EXPLAIN_MODES:
        raise ValueError(f"explain must be one of {EXPLAIN_MODES}, got {explain!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    missing = [name for name in bundle.detectors if name not in models]
    if missing:
        raise ValueError(f"no loaded model for the bundled detectors {missing}")
    root = Path(root).resolve() if root is not None else None
    layout = SegmentLayout.from_labels(bundle.segments, bundle.n_segments)
    clock = _Clock()
    rows: list[dict] = []
    pictures: dict[str, np.ndarray] = {}
    bar = tqdm(total=len(paths), desc="scoring", unit="img", disable=not progress, smoothing=0.1)
    for start in range(0, len(paths), batch_size):
        batch = [Path(p) for p in paths[start : start + batch_size]]
        batch_rows: list[dict] = []
        arrays: list[np.ndarray] = []
        ok: list[int] = []
        with clock("read"):
            for path in batch:
                absolute = path.resolve()
                image = (absolute.relative_to(root).as_posix()
                         if root is not None and absolute.is_relative_to(root) else str(path))
                row = {"image": image, "path": str(absolute), "status": OK, "error": None}
                try:
                    arrays.append(load_checked(path, bundle.input_spec))
                    ok.append(len(batch_rows))
                except (ImageReadError, InputMismatchError) as error:
                    row.update(status=ERROR, decision=ERROR, error=str(error))
                batch_rows.append(row)
        if ok:
            _score_batch(np.stack(arrays), [batch_rows[i] for i in ok], bundle, models, layout,
                         explain, overlays, pictures, clock)
        rows.extend(batch_rows)
        bar.update(len(batch))
    bar.close()
    return ScoringResult(table=_table(rows, bundle), overlays=pictures, seconds=clock.wall,
                         cpu_seconds=clock.cpu)


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


def _score_batch(x, rows, bundle, models, layout, explain, overlays, pictures, clock) -> None:
    """Fill `rows` (one per image of `x`) in place; add overlays of rejected parts."""
    from segad.detection.inference import predict_maps
    from segad.meta.brf import brf_scores
    from segad.segments.features import feature_matrix, segment_statistics

    n, detectors, op = x.shape[0], bundle.detectors, bundle.operating_point
    with clock("detector"):
        maps = {name: predict_maps(models[name], x) for name in detectors}

    with clock("features"):
        finite = np.ones(n, dtype=bool)
        for name in detectors:
            finite &= np.isfinite(maps[name].reshape(n, -1)).all(axis=1)
        # A non-finite map makes that image an error row; the rest of the batch is scored.
        maxima = [np.where(finite, np.nan_to_num(maps[name].reshape(n, -1), nan=-np.inf).max(axis=1), np.nan)
                  for name in detectors]
        features = np.full((n, len(bundle.feature_columns)), np.nan)
        if finite.any():
            stats = [segment_statistics(maps[name][finite], layout) for name in detectors]
            features[finite] = feature_matrix(stats, [m[finite] for m in maxima])[:, bundle.column_positions]

    with clock("brf"):
        scores = np.full(n, np.nan)
        if finite.any():
            scores[finite] = brf_scores(bundle.brf, features[finite])
        decisions = decide(scores, op.threshold)  # NaN -> 'error': never decide on a broken map

    with clock("explain"):
        wanted, segment_part, detector_part, tops = _explain(features, finite, decisions, explain, bundle)
    _fill_rows(x, rows, bundle, maps, maxima, finite, scores, decisions, wanted, segment_part, detector_part,
               tops, overlays, pictures, clock)


def _explain(features, finite, decisions, explain, bundle):
    """(rows explained, per-segment frame, per-detector frame, top segment) of one batch."""
    import xgboost

    n, detectors = features.shape[0], bundle.detectors
    wanted = {"all": finite, "rejected": decisions == REJECT, "none": np.zeros(n, bool)}[explain]
    segment_part = pd.DataFrame(np.nan, index=range(n), columns=_segment_columns(bundle))
    detector_part = pd.DataFrame(np.nan, index=range(n), columns=[f"contrib_det_{d}" for d in detectors])
    if wanted.any():
        dmatrix = xgboost.DMatrix(features[wanted], feature_names=bundle.feature_columns)
        contribs = bundle.brf.get_booster().predict(dmatrix, pred_contribs=True)
        segment_part.loc[wanted, :] = group_contributions(contribs, bundle.feature_columns).to_numpy()
        per_detector = detector_contributions(contribs, bundle.feature_columns)
        detector_part.loc[wanted, :] = per_detector[detector_part.columns].to_numpy()
    tops = np.where(wanted, top_segment(segment_part.fillna(-np.inf)), -1)
    return wanted, segment_part, detector_part, tops


def _fill_rows(x, rows, bundle, maps, maxima, finite, scores, decisions, wanted, segment_part, detector_part,
               tops, overlays, pictures, clock) -> None:
    detectors, op = bundle.detectors, bundle.operating_point
    names = bundle.segment_names
    for i, row in enumerate(rows):
        row.update(decision=decisions[i], score=float(scores[i]), top_segment=int(tops[i]),
                   top_segment_name=names[tops[i]] if tops[i] >= 0 else None,
                   **segment_part.iloc[i].to_dict(), **detector_part.iloc[i].to_dict(),
                   **{f"{name}__max": float(maxima[k][i]) for k, name in enumerate(detectors)})
        if not finite[i]:
            broken = [d for d in detectors if not np.isfinite(maps[d][i]).all()]
            row.update(status=ERROR, error=f"{row['path']}: non-finite values in the "
                                           f"{', '.join(broken)} anomaly map")
        if overlays and decisions[i] == REJECT:
            contribution = detector_part.iloc[i].to_numpy()
            strongest = detectors[int(np.nanargmax(contribution))] if wanted[i] else detectors[0]
            label = f" | {names[tops[i]]}" if tops[i] >= 0 else ""
            name = overlay_name(row["image"])
            with clock("overlay"):
                pictures[name] = render_overlay(
                    x[i], maps[strongest][i], bundle.segments, int(tops[i]),
                    title=f"reject {scores[i]:.2f} >= {op.threshold:.2f} | {strongest}{label}")
            row["overlay"] = name


def _segment_columns(bundle) -> list[str]:
    return [f"contrib_seg{l}" for l in range(bundle.n_segments)] + [
        f"contrib_{GLOBAL_GROUP}", f"contrib_{BIAS_GROUP}"]


def _table(rows: list[dict], bundle) -> pd.DataFrame:
    """Rows -> the inspection table with fixed columns and dtypes (also when every row failed)."""
    columns = (["image", "path", "status", "decision", "score", "threshold", "error",
                "top_segment", "top_segment_name"] + _segment_columns(bundle)
               + [f"contrib_det_{d}" for d in bundle.detectors]
               + [f"{d}__max" for d in bundle.detectors] + ["overlay", "bundle_id"])
    table = pd.DataFrame(rows, columns=columns)
    table["threshold"] = float(bundle.operating_point.threshold)
    table["bundle_id"] = bundle.bundle_id
    table["top_segment"] = table["top_segment"].fillna(-1).astype("int64")
    floats = ["score", *_segment_columns(bundle), *[f"contrib_det_{d}" for d in bundle.detectors],
              *[f"{d}__max" for d in bundle.detectors]]
    table[floats] = table[floats].astype("float64")
    for column in ("image", "path", "status", "decision", "error", "top_segment_name", "overlay"):
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table
