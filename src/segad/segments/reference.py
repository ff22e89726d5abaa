"""The per-segment statistics by their definition: a plain loop, as the SegAD reference code.

Slow; it is the oracle that the compiled path (`segad.segments.statistics.segment_statistics`),
the torch path and the benchmark are checked against.
"""

from __future__ import annotations

import numpy as np

from segad.segments.statistics import QUANTILE


def reference_segment_statistics(anomaly_map: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
    """Straightforward per-segment loop, as the SegAD reference code: float64 (L, 4).

    Boolean mask per segment, ``numpy.quantile``, ``scipy.stats.skew``/``kurtosis``. Slow; the
    definition the vectorised path is tested against.
    """
    from scipy.stats import kurtosis, skew

    out = np.zeros((n_segments, 4), dtype=np.float64)
    for segment in range(n_segments):
        sel = anomaly_map[labels == segment]
        if sel.size:
            out[segment] = (
                np.quantile(sel, QUANTILE),
                skew(sel),
                kurtosis(sel),
                sel.mean(),
            )
    return out
