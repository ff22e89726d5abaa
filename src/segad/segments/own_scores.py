"""A detector's own image score beside its map: the ``<detector>__score`` feature columns.

A detector whose map index has a ``pred_score`` column (the supervised SuperSimpleNet,
`segad.detection.supervised_stage`) contributes its own image score to the feature table as
`segad.columns.score_column` (``<detector>__score``), after the maxima.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def own_scores(rows: pd.DataFrame, map_indexes: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Detector -> float64 (N,) own image scores of `rows` (image_id, split_seed), for the map
    indexes with a ``pred_score`` column; ValueError naming the detector when a row has none."""
    own = {}
    for detector, map_index in map_indexes.items():
        if "pred_score" not in map_index.columns:
            continue
        keys = map_index[["image_id", "split_seed", "pred_score"]].drop_duplicates(["image_id", "split_seed"])
        merged = rows[["image_id", "split_seed"]].merge(keys, on=["image_id", "split_seed"], how="left")
        if merged["pred_score"].isna().any():
            raise ValueError(f"{detector}.map_index lacks pred_score for {int(merged['pred_score'].isna().sum())} rows")
        own[detector] = merged["pred_score"].to_numpy(np.float64)
    return own
