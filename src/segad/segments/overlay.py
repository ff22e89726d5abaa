"""Segments drawn over an image, to check a segment map by eye (the segmentation overlays, the
report's chosen segments and its worst cases)."""

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


def segmentation_figures(image_index, segmentation, n_images: int, names: dict[int, str] | None = None) -> dict:
    """A few images per category (half good, half bad, by image id) with their segments drawn over
    them, as matplotlib figures keyed ``<category>__<image>.png``: the title names the category's
    segmentation (`SegmentMaps.sources`) and its segment count, the legend each segment's colour,
    name (`names`, else ``segment <l>``) and share of the image."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.patches import Patch

    from segad.storage.images import read_image

    figures = {}
    for category, rows in image_index.sort_values("image_id").groupby("category"):
        picked = pd.concat(
            [rows[rows["label"] == 0].head(n_images // 2 or 1), rows[rows["label"] == 1].head(n_images // 2)]
        )
        for _, row in picked.iterrows():
            labels = segmentation.labels_for(category, [row["image_id"]])
            labels = labels[0] if labels.ndim == 3 else labels
            image = read_image(row["path"], size=labels.shape)
            fig, ax = plt.subplots(figsize=(5.2, 4))
            ax.imshow(overlay(image, labels))
            source = segmentation.sources.get(category, segmentation.method)
            ax.set_title(
                f"{category}: {row['image_id']}\n{source}, {segmentation.n_segments[category]} segments", fontsize=7
            )
            ax.axis("off")
            handles = [
                Patch(color=colour, label=f"{text} ({share:.0%})")
                for text, colour, share in legend_entries(labels, names)
            ]
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6, frameon=False)
            fig.tight_layout()
            name = f"{category}__{row['image_id']}".replace("/", "_").rsplit(".", 1)[0]
            figures[f"{name}.png"] = fig
    return figures
