"""The image index table: its columns and dtypes, and the checks that finish it.

One row per image (schema: `segad.schemas.ImageIndex`, docs/schemas.md); built by
`segad.ingestion.layouts.build_index` from a dataset folder.
"""

from __future__ import annotations

import pandas as pd

from segad.logs import progress
from segad.storage.images import ImageReadError, image_size

#: Column -> dtype of the image index, in column order.
DTYPES: dict[str, str] = {
    "image_id": "string",
    "dataset": "string",
    "category": "string",
    "split": "string",
    "label": "int8",
    "defect_type": "string",
    "unseen": "bool",
    "path": "string",
    "mask_path": "string",
    "width": "int32",
    "height": "int32",
}
INDEX_COLUMNS = list(DTYPES)


class DuplicateImageError(ValueError):
    """Two rows of an index have one image id."""


def check_duplicates(index: pd.DataFrame) -> None:
    """`DuplicateImageError` naming up to 10 image ids that appear more than once."""
    duplicated = index.image_id[index.image_id.duplicated()].unique()
    if len(duplicated):
        raise DuplicateImageError(f"duplicate image ids (each image must appear once): {list(duplicated[:10])}")


def measure_images(index: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every image and mask; returns the readable rows with width/height (pixels), and
    the problems (path, problem) of the others."""
    sizes, problems = [], []
    for path, mask in progress(zip(index.path, index.mask_path), total=len(index), desc="checking images", unit="img"):
        try:
            size = image_size(path)
            if mask is not None:
                image_size(mask)
        except ImageReadError as error:
            problems.append({"path": path, "problem": str(error).split(": ", 1)[-1]})
            size = None
        sizes.append(size)
    keep = [s is not None for s in sizes]
    index = index[keep].copy()
    index["width"] = [s[0] for s in sizes if s is not None]
    index["height"] = [s[1] for s in sizes if s is not None]
    return index, pd.DataFrame(problems, columns=["path", "problem"])


def typed_index(index: pd.DataFrame) -> pd.DataFrame:
    """The index's columns in `INDEX_COLUMNS` order with the `DTYPES`."""
    return index[INDEX_COLUMNS].reset_index(drop=True).astype(DTYPES)
