"""Built-in static segment map of the aligned 300 x 300 ELPV solar cells.

Both busbar layouts of the dataset get their own segment: 3-busbar cells (rows 52, 150, 248)
and 2-busbar poly cells (rows 79, 221); shares and centres measured by
``benchmarks/elpv_busbars.py`` (docs/features.md).
"""

from __future__ import annotations

import numpy as np

ELPV_SEGMENTS = {0: "interior", 1: "busbars_3", 2: "busbars_2", 3: "border", 4: "corners"}
#: busbar centre rows of 3-busbar cells (px of the 300 x 300 cell)
ELPV_BUSBAR_ROWS = (52, 150, 248)
#: busbar centre rows of 2-busbar (poly) cells (px of the 300 x 300 cell)
ELPV_BUSBAR_ROWS_2 = (79, 221)
ELPV_BUSBAR_HALF_WIDTH = 10
ELPV_BORDER = 12
ELPV_CORNER = 42


def elpv_segment_map(size: int | tuple[int, int] = 300) -> np.ndarray:
    """Static map of an aligned ELPV cell, drawn at 300 x 300 then resized (nearest): int64 (H, W).

    Labels (`ELPV_SEGMENTS`): 0 interior, 1 busbars of 3-busbar cells (+-10 px around rows 52,
    150, 248), 2 busbars of 2-busbar cells (+-10 px around rows 79, 221), 3 border (12 px
    frame), 4 corners (triangles with legs of 42 px: the chamfered corners of mono cells).
    Later labels win where they overlap.
    """
    from segad.storage.images import resize_labels

    n = 300
    rows, cols = np.mgrid[0:n, 0:n]
    labels = np.zeros((n, n), dtype=np.int64)
    for label, centres in ((1, ELPV_BUSBAR_ROWS), (2, ELPV_BUSBAR_ROWS_2)):
        for centre in centres:
            labels[np.abs(rows - centre) <= ELPV_BUSBAR_HALF_WIDTH] = label
    border = (rows < ELPV_BORDER) | (cols < ELPV_BORDER) | (rows >= n - ELPV_BORDER) | (cols >= n - ELPV_BORDER)
    labels[border] = 3
    r, c = np.minimum(rows, n - 1 - rows), np.minimum(cols, n - 1 - cols)
    labels[r + c < ELPV_CORNER] = 4
    return resize_labels(labels, size)
