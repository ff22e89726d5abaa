"""Segments drawn over an image, to check a segment map by eye (the segmentation overlays and
the report's worst cases)."""

from __future__ import annotations

import numpy as np

from segad.storage.images import resize_labels


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 (H, W, 3): `image` (float (3, H, W) or (H, W) in [0, 1]) blended with label colours.

    Segment borders are drawn in white.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image.transpose(1, 2, 0)
    else:
        image = np.repeat(image[..., None], 3, axis=2)
    labels = resize_labels(labels, image.shape[:2])
    colours = segment_colours(labels)
    blended = (1 - alpha) * image + alpha * colours
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    blended[edge] = 1.0
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)


def segment_colours(labels: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1], shape ``labels.shape + (3,)``: each segment's colour in `overlay`
    (matplotlib's tab10, cycling after 10 segments)."""
    from matplotlib import colormaps

    return np.asarray(colormaps["tab10"](np.asarray(labels) % 10))[..., :3]


def legend_entries(labels: np.ndarray, names: dict[int, str] | None = None) -> list[tuple[str, tuple, float]]:
    """One ``(text, RGB colour, share of pixels)`` per segment present in `labels`, in label order,
    as `overlay` colours them; text = its name from `names`, else ``segment <l>``.

    >>> [(t, round(s, 2)) for t, _, s in legend_entries(np.array([[0, 0, 0, 2]]), {2: "pins"})]
    [('segment 0', 0.75), ('pins', 0.25)]
    """
    present, counts = np.unique(np.asarray(labels), return_counts=True)
    names = names or {}
    return [
        (
            names.get(int(label), f"segment {int(label)}"),
            tuple(segment_colours(np.array(label)).tolist()),
            float(count / counts.sum()),
        )
        for label, count in zip(present, counts)
    ]
