"""Busbar layouts of the ELPV cells: share of 3-bar vs 2-bar cells per cell type, measured centres.

Each 300 x 300 cell's row profile (mean gray level per row, shape (300,)) is compared with the
bands (+-3 px) around each layout's busbar rows (`ELPV_BUSBAR_ROWS`, `ELPV_BUSBAR_ROWS_2`): the
layout whose bands are darker relative to the image's median row wins. The centres are the
lowest points of the average profile of each layout's cells within +-20 px of the constants.

Run: PYTHONPATH=src .venv/bin/python benchmarks/elpv_busbars.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from segad.segments.elpv import ELPV_BUSBAR_ROWS, ELPV_BUSBAR_ROWS_2

LAYOUTS = {"3-bar": ELPV_BUSBAR_ROWS, "2-bar": ELPV_BUSBAR_ROWS_2}


def row_profile(image: np.ndarray) -> np.ndarray:
    """Mean gray level per row of a (H, W) image: float (H,)."""
    return image.astype(np.float64).mean(axis=1)


def band_contrast(profile: np.ndarray, centres: tuple[int, ...], half_width: int = 3) -> float:
    """Mean of the rows within +-half_width px of the centres minus the median row (gray levels)."""
    rows = np.arange(len(profile))
    band = np.any([np.abs(rows - c) <= half_width for c in centres], axis=0)
    return float(profile[band].mean() - np.median(profile))


def busbar_layout(image: np.ndarray) -> str:
    """'3-bar' or '2-bar': the layout whose busbar bands are darker in a 300 x 300 cell."""
    profile = row_profile(image)
    return min(LAYOUTS, key=lambda name: band_contrast(profile, LAYOUTS[name]))


def measured_centres(profile: np.ndarray, centres: tuple[int, ...], search: int = 20) -> list[int]:
    """Darkest row of the profile within +-search px of each expected centre (row indices)."""
    return [int(c - search + np.argmin(profile[c - search : c + search + 1])) for c in centres]


def main() -> None:
    import elpv_dataset

    root = Path(elpv_dataset.__file__).parent / "data"
    table = pd.read_csv(root / "labels.csv", sep=r"\s+", header=None, names=["file", "probability", "type"])
    profiles = {(t, name): [] for t in sorted(table["type"].unique()) for name in LAYOUTS}
    for row in table.itertuples():
        image = np.asarray(Image.open(root / row.file).convert("L"))
        profiles[(row.type, busbar_layout(image))].append(row_profile(image))
    print("type  layout  cells  share   measured centres (rows)")
    for cell_type in sorted(table["type"].unique()):
        total = sum(len(profiles[(cell_type, name)]) for name in LAYOUTS)
        for name, centres in LAYOUTS.items():
            found = profiles[(cell_type, name)]
            where = measured_centres(np.mean(found, axis=0), centres) if found else []
            print(f"{cell_type:5s} {name:6s} {len(found):6d} {len(found) / total:6.1%}   {where}")


if __name__ == "__main__":
    main()
