"""What the map stage plans to fit: one `ModelPlan` per (category, split seed).

Made by `segad.detection.stage.plan_models`, carried out in one loop there or as Dask tasks by
`segad.detection.distribute`; its own module so that neither of those imports the other's plan.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPlan:
    """One detector to fit: its model_key, detector_train image paths and EfficientAD's quantile
    image paths (None = the detector_train images)."""

    key: str
    train_paths: list[str]
    quantile_paths: list[str] | None = None
