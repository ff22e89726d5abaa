"""Synthetic defects: the bad training images of the one-class regime, and a top-up beside real ones.

In ``one_class`` every brf_train good image gets ``per_image`` synthetic defects (the paper's
protocol). In the regimes with real bad training images, where a split seed and category has fewer
than ``top_up_below`` real bad ones, ``top_up_share`` of its brf_train good images (a seeded draw)
get ``per_image`` each too: extra bad rows for the BRF and the classifier where real bad images are
few (docs/journal.md, "Few real bad images").

As in the SegAD paper (section 4.1), a synthetic defect is one of

- ``synthetic_blur``: a Gaussian blur (sigma drawn from ``blur_sigma``, in pixels of the stored
  image) applied inside a region;
- ``synthetic_rectangle``: a thin rectangle of one random gray level, random length, thickness,
  angle and position, drawn inside a region;

where the region is a random non-empty segment of the image's segment map, either the whole
segment (probability ``whole_segment_prob``) or a part of it: the segment intersected with a
random box (side ``part_size`` x image side) centred on a random pixel of the segment. The
segment map is resized to the stored image by nearest neighbour. Everything is drawn from
``numpy.random.default_rng([seed, split_seed, row])``, so a run is reproducible.

Example:
    >>> import numpy as np
    >>> from segad.ingestion.defects import DefectConfig, synthesize
    >>> image = np.full((64, 64, 3), 120, np.uint8)
    >>> labels = np.repeat(np.arange(2), 2048).reshape(64, 64)
    >>> out, kind, segment = synthesize(image, labels, np.random.default_rng(0), DefectConfig())
    >>> out.shape, kind in ("synthetic_blur", "synthetic_rectangle")
    ((64, 64, 3), True)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from pydantic import Field
from pydantic.dataclasses import dataclass

from segad.config import PARAMS
from segad.schemas import SyntheticIndex, columns
from segad.storage.images import read_image
from segad.vocabulary import DEFECT_KINDS

SYNTHETIC_COLUMNS = columns(SyntheticIndex)


Range = tuple[Annotated[float, Field(ge=0.0)], Annotated[float, Field(ge=0.0)]]


@dataclass(config=PARAMS)
class DefectConfig:
    """Synthetic defect settings (conf/base/parameters_defects.yml, `defects`).

    Attributes:
        per_image: synthetic images made from each brf_train good image.
        kinds: subset of ("blur", "rectangle"), drawn uniformly.
        blur_sigma: (min, max) Gaussian sigma in pixels of the stored image.
        rect_length: (min, max) rectangle length as a share of the image side.
        rect_thickness: (min, max) rectangle thickness as a share of the image side (>= 1 px).
        whole_segment_prob: probability that the region is a whole segment, not a part of one.
        part_size: (min, max) side of the box that cuts a part of a segment, share of the side.
        max_sources: cap on source images per seed and category (None = all), the first ones
            in a seeded shuffle.
        top_up_share: regimes with real bad training images: share of the brf_train good images
            (per seed and category, the first ones in the same seeded shuffle, at least one) whose
            synthetic defects join the real bad ones; 0 = none (the paper's protocols).
        top_up_below: the top-up applies only to a (split seed, category) with fewer real bad
            brf_train images than this (None = to every one).
        seed: base seed, combined with the split seed.
        output_dir: folder of the written images, the path of the catalog entry
            `synthetic_images` (both read `synthetic_dir` from conf/<env>/globals.yml).
    """

    per_image: Annotated[int, Field(ge=1)] = 1
    kinds: Annotated[tuple[Literal["blur", "rectangle"], ...], Field(min_length=1)] = ("blur", "rectangle")
    blur_sigma: Range = (2.0, 6.0)
    rect_length: Range = (0.05, 0.3)
    rect_thickness: Range = (0.005, 0.02)
    whole_segment_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    part_size: Range = (0.1, 0.4)
    max_sources: Annotated[int, Field(ge=1)] | None = None
    top_up_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    top_up_below: Annotated[int, Field(ge=1)] | None = 50
    seed: int = 0
    output_dir: str = "data/02_intermediate/synthetic"

    def __post_init__(self) -> None:
        for name in ("blur_sigma", "rect_length", "rect_thickness", "part_size"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"defects.{name} must be (min, max), got {(low, high)}")


def empty_synthetic_index() -> pd.DataFrame:
    """`synthetic_index` with its columns and no rows (no synthetic defect in the run)."""
    return SyntheticIndex.empty()


def choose_region(labels: np.ndarray, rng: np.random.Generator, config: DefectConfig) -> tuple[np.ndarray, int]:
    """A boolean (H, W) region inside one random non-empty segment, and that segment's label."""
    present = np.unique(labels)
    segment = int(rng.choice(present))
    region = labels == segment
    if rng.random() >= config.whole_segment_prob:
        height, width = labels.shape
        ys, xs = np.nonzero(region)
        pick = int(rng.integers(len(ys)))
        side = rng.uniform(*config.part_size)
        half_h, half_w = max(1, int(side * height / 2)), max(1, int(side * width / 2))
        box = np.zeros_like(region)
        box[max(0, ys[pick] - half_h) : ys[pick] + half_h + 1, max(0, xs[pick] - half_w) : xs[pick] + half_w + 1] = True
        region &= box
    return region, segment


def blur_region(image: np.ndarray, region: np.ndarray, sigma: float) -> np.ndarray:
    """`image` uint8 (H, W[, C]) with a Gaussian blur of `sigma` px applied where `region` is true."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))
    out = image.copy()
    out[region] = blurred[region]
    return out


def rectangle_in_region(
    image: np.ndarray, region: np.ndarray, rng: np.random.Generator, config: DefectConfig
) -> np.ndarray:
    """`image` uint8 with a thin rectangle of a random gray level, centred in `region`, clipped to it."""
    height, width = region.shape
    side = min(height, width)
    ys, xs = np.nonzero(region)
    pick = int(rng.integers(len(ys)))
    cy, cx = float(ys[pick]), float(xs[pick])
    length = rng.uniform(*config.rect_length) * side
    thickness = max(1.0, rng.uniform(*config.rect_thickness) * side)
    angle = rng.uniform(0, np.pi)
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    corners = [
        np.array([cx, cy]) + a * u * length / 2 + b * v * thickness / 2 for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(c) for c in corners], fill=255)
    stroke = (np.asarray(canvas) > 0) & region
    if not stroke.any():
        stroke = np.zeros_like(region)
        stroke[int(cy), int(cx)] = True
    gray = int(rng.integers(0, 256))
    out = image.copy()
    out[stroke] = gray
    return out


def synthesize(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, config: DefectConfig
) -> tuple[np.ndarray, str, int]:
    """One synthetic defect on uint8 `image` (H, W[, C]) with labels (H, W): (image, defect_type, segment)."""
    if image.shape[:2] != labels.shape:
        labels = _resize_nearest(labels, image.shape[:2])
    region, segment = choose_region(labels, rng, config)
    kind = config.kinds[int(rng.integers(len(config.kinds)))]
    if kind == "blur":
        out = blur_region(image, region, rng.uniform(*config.blur_sigma))
    else:
        out = rectangle_in_region(image, region, rng, config)
    return out, DEFECT_KINDS[kind], segment


def _resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from segad.storage.images import resize_labels

    return resize_labels(labels, shape)


SYNTHETIC_PREFIX = "synthetic/"


def synthetic_image_id(split_seed: int, source_image_id: str, k: int) -> str:
    """``synthetic/<split_seed>/<source id without suffix, / -> _>__<k>.png`` (unique per source)."""
    stem = str(PurePosixPath(source_image_id).with_suffix("")).replace("/", "_")
    return f"{SYNTHETIC_PREFIX}{int(split_seed)}/{stem}__{k}.png"


def is_synthetic(image_ids: pd.Series) -> pd.Series:
    """True where an image id names a synthetic defect (`synthetic_image_id`), bool like `image_ids`."""
    return image_ids.astype(str).str.startswith(SYNTHETIC_PREFIX)


def plan_synthetic(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    labels_for: Callable[[str, str], np.ndarray],
    config: DefectConfig,
    share: float = 1.0,
    below_real_bad: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Callable[[], Image.Image]]]:
    """The synthetic_index and, per image, a callable that renders it (for lazy saving).

    Args:
        image_index, splits: the project tables (docs/schemas.md).
        labels_for: ``(category, image_id) -> int (H, W)`` segment map of a source image.
        config: the defect settings.
        share: share of each (split seed, category)'s brf_train good images used as sources (the
            first ones in a seeded shuffle, at least one; ``max_sources`` caps it further): 1.0 in
            one_class, ``config.top_up_share`` beside real bad images.
        below_real_bad: only a (split seed, category) with fewer real bad brf_train images than
            this gets synthetic ones (None = every one; ``config.top_up_below`` for the top-up).
    Returns: (synthetic_index, {partition key ``<split_seed>/<name>`` without suffix: render()}).
    """
    brf_train = splits[(splits["role"] == "brf_train")].merge(
        image_index[["image_id", "category", "label", "path"]], on="image_id", how="left"
    )
    real_bad = brf_train[brf_train["label"] == 1].groupby(["split_seed", "category"]).size()
    goods = brf_train[brf_train["label"] == 0]
    rows, renders = [], {}
    output_dir = Path(config.output_dir).resolve()
    for (split_seed, category), group in goods.groupby(["split_seed", "category"], sort=True):
        if below_real_bad is not None and real_bad.get((split_seed, category), 0) >= below_real_bad:
            continue
        order = np.random.default_rng([config.seed, int(split_seed)]).permutation(len(group))
        if share < 1.0:
            order = order[: max(1, round(share * len(group)))]
        if config.max_sources is not None:
            order = order[: config.max_sources]
        for row_number in np.sort(order):
            source = group.iloc[int(row_number)]
            for k in range(config.per_image):
                image_id = synthetic_image_id(split_seed, source["image_id"], k)
                row_seed = [config.seed, int(split_seed), int(row_number), k]
                kind = config.kinds[int(np.random.default_rng(row_seed).integers(len(config.kinds)))]
                key = image_id[len(SYNTHETIC_PREFIX) : -len(".png")]
                renders[key] = _renderer(source["path"], category, source["image_id"], labels_for, config, row_seed)
                rows.append(
                    {
                        "image_id": image_id,
                        "split_seed": int(split_seed),
                        "source_image_id": source["image_id"],
                        "category": category,
                        "defect_type": DEFECT_KINDS[kind],
                        "label": 1,
                        "role": "brf_train",
                        "path": str(output_dir / f"{key}.png"),
                    }
                )
    if not rows:
        return empty_synthetic_index(), {}
    table = pd.DataFrame(rows, columns=list(SYNTHETIC_COLUMNS))
    return table.astype({"split_seed": "int64", "label": "int8"}), renders


def _renderer(path, category, image_id, labels_for, config, row_seed):
    def render() -> Image.Image:
        image = (read_image(path).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)  # stored size, RGB
        rng = np.random.default_rng(row_seed)
        kinds_draw = int(rng.integers(len(config.kinds)))  # same first draw as the planned kind
        cfg = DefectConfig(**{**config.__dict__, "kinds": (config.kinds[kinds_draw],)})
        out, _, _ = synthesize(image, labels_for(category, image_id), rng, cfg)
        return Image.fromarray(out)

    return render
