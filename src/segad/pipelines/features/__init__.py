"""features: anomaly maps + segment maps (+ classifier scores) -> per-segment statistics table (data/04_feature)."""

from segad.pipelines.features.pipeline import create_pipeline

__all__ = ["create_pipeline"]
