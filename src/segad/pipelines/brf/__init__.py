"""brf: features -> XGBoost boosted random forests (one per category, split seed, method) + scores."""

from segad.pipelines.brf.pipeline import create_pipeline

__all__ = ["create_pipeline"]
