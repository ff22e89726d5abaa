"""Thin node over segad.meta.classifier_protocol: the supervised classifier g(I) and its scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segad.meta.classifier import ClassifierConfig, empty_scores
from segad.meta.classifier_protocol import classifier_scores as _classifier_scores
from segad.storage.images import resolve_image_size
from segad.storage.map_store import MapStore


def train_classifier(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame,
    config: ClassifierConfig,
    image_size: int | list[int] | str,
    device: str,
    store: MapStore,
    models: Path | None = None,
) -> pd.DataFrame:
    """Supervised classifier scores (image_id, split_seed, score, model_key); empty when disabled.
    Images are resized to ``image_size`` resolved from ``image_index`` (`segad.storage.images.resolve_image_size`);
    each seed's scores are kept in `store` and reused while nothing they depend on changes, the
    model(s) that produced them in the folder `models` (for the production bundle)."""
    if not config.enabled:
        return empty_scores()
    size = resolve_image_size(image_size, image_index)
    return _classifier_scores(image_index, splits, synthetic_index, config, size, device, store, models)
