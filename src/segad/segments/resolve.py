"""Resolving the segmentation of a run: the `SegmentMaps` of every category from the
`segmentation` settings (`SegmentMapConfig`), the image index's good training images and the
map resolution (file, built-in, k-means, per-image clusters or the choice between them)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from segad.segments.alignment import alignment, choose_method
from segad.segments.auto_segments import FeatureClusters, auto_segment_map, fit_feature_clusters
from segad.segments.elpv import ELPV_SEGMENTS, elpv_segment_map
from segad.segments.label_maps import SegmentMapError, read_label_map, segment_count, single_segment_map
from segad.segments.segment_maps import CANDIDATES, Alternative, SegmentMapConfig, SegmentMaps, rgb_images
from segad.storage.images import ImageSize, SizeLike
from segad.storage.map_store import MapStore

log = logging.getLogger(__name__)


def _fit_per_image(config: SegmentMapConfig, category: str, images: np.ndarray) -> FeatureClusters:
    try:
        return fit_feature_clusters(
            images,
            config.auto_segments,
            config.seed,
            config.auto_layers,
            config.auto_pca,
            config.auto_smooth,
            border=config.auto_border,
        )
    except ValueError as error:
        raise SegmentMapError(f"auto_per_image segmentation of {category!r}: {error}") from error


def _auto_source(config: SegmentMapConfig, n_images: int) -> str:
    return f"auto:kmeans({config.auto_segments}) on {n_images} good train images"


def _per_image_source(config: SegmentMapConfig, n_images: int) -> str:
    return (
        f"auto_per_image:kmeans({config.auto_segments}) of {'+'.join(config.auto_layers)} "
        f"features, centres from {n_images} good train images, assigned per image"
        + (f", image-border band {config.auto_border:g}" if config.auto_border else "")
    )


def _candidates(
    config: SegmentMapConfig, category: str, images: np.ndarray, size: tuple[int, int]
) -> dict[str, Alternative]:
    """The `CANDIDATES` of an `auto_select` category, fitted on its good training `images`; a
    candidate these images cannot make (e.g. too few distinct features for per-image clusters) is
    left out with a warning naming why (one segment always exists)."""

    def per_image() -> Alternative:
        clusters = _fit_per_image(config, category, images)
        return Alternative(_per_image_source(config, len(images)), clusters.n_segments, clusters=clusters)

    makers = {
        "single": lambda: Alternative("builtin:single", 1, labels=single_segment_map(size)),
        "auto": lambda: Alternative(
            _auto_source(config, len(images)),
            config.auto_segments,
            labels=auto_segment_map(images, config.auto_segments, config.seed),
        ),
        "auto_per_image": per_image,
    }
    built = {}
    for name in CANDIDATES:
        try:
            built[name] = makers[name]()
        except (SegmentMapError, ValueError) as error:
            log.warning("segmentation: category %s has no %s candidate: %s", category, name, error)
    return built


def resolve_segmentation(
    config: SegmentMapConfig,
    categories: Sequence[str],
    map_size: SizeLike,
    good_train_paths: Mapping[str, Sequence[str]] | None = None,
    image_paths: Mapping[str, str] | None = None,
    label_store: MapStore | None = None,
) -> SegmentMaps:
    """Build the `SegmentMaps` of every category at map resolution `map_size` (pixels: an
    `ImageSize`, (H, W) or an int N for N x N).

    `good_train_paths[category]` (image paths) is needed for methods `auto`, `auto_per_image` and
    `auto_select`. Per-image labels read each image when asked for: from `image_paths`
    (image_id -> file) when given, else ``config.image_root / image_id``; with `label_store`
    they are kept on disk and read back by a later run.
    """
    if config.method is None:
        raise ValueError("segmentation method not chosen: call SegmentMapConfig.for_dataset(layout, root) first")
    size = ImageSize.parse(map_size).hw
    seg = SegmentMaps(
        method=config.method,
        size=size,
        n_segments={},
        image_paths=image_paths,
        image_root=config.image_root,
        label_store=label_store,
    )
    for category in categories:
        method: str = config.method
        if method in ("auto", "auto_per_image", "auto_select"):
            paths = list((good_train_paths or {}).get(category, []))[: config.auto_max_images]
            if not paths:
                raise SegmentMapError(f"{method} segmentation: no good training images for {category!r}")
            images = rgb_images(paths, size)
            if method == "auto_select":
                seg.alternatives[category] = _candidates(config, category, images, size)
                value = seg.alignment[category] = alignment(images)
                aligned = method = choose_method(value, config.alignment_threshold)
                relation = ">=" if aligned == "auto" else "<"
                why = f"alignment {value:.2f} {relation} {config.alignment_threshold:g}"
                if method not in seg.alternatives[category]:  # it could not be made: the next simpler one
                    simpler = CANDIDATES[: CANDIDATES.index(method)]
                    method = [n for n in simpler if n in seg.alternatives[category]][-1]
                    why += f", no {aligned} candidate"
                log.info(
                    "segmentation: category %s %s -> %s until the features stage chooses among %s out of fold "
                    "(share of %d good train images in register)",
                    category,
                    why,
                    method,
                    "/".join(seg.alternatives[category]),
                    len(paths),
                )
                seg = seg.with_choice({category: method}, why=why)
                continue
        if method == "static":
            path = config.path[category] if isinstance(config.path, Mapping) else config.path
            if path is None:
                raise SegmentMapError(f"segmentation.path has no map for category {category!r}")
            expected = segment_count(config.n_segments, category)
            labels = read_label_map(path, expected, size)
            n = expected or int(labels.max()) + 1
            seg.sources[category] = str(path)
        elif method == "elpv":
            labels, n = elpv_segment_map(size), len(ELPV_SEGMENTS)
            seg.sources[category] = "builtin:elpv"
        elif method == "single":
            labels, n = single_segment_map(size), 1
            seg.sources[category] = "builtin:single"
        elif method == "auto":
            labels = auto_segment_map(images, config.auto_segments, config.seed)
            n = config.auto_segments
            seg.sources[category] = _auto_source(config, len(paths))
        elif method == "auto_per_image":
            seg.clusters[category] = _fit_per_image(config, category, images)
            seg.n_segments[category] = seg.clusters[category].n_segments
            seg.sources[category] = _per_image_source(config, len(paths))
            continue
        else:  # per_image
            n_category = segment_count(config.n_segments, category)
            if n_category is None:
                raise SegmentMapError("per_image segmentation needs segmentation.n_segments")
            seg.n_segments[category] = n_category
            seg.folder = str(config.folder)
            seg.sources[category] = f"per_image:{config.folder}"
            continue
        seg.static_maps[category] = labels
        seg.n_segments[category] = n
    return seg
