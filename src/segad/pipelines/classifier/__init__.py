"""classifier: the supervised image classifier g(I), whose score is one more feature (data/04_feature)."""

from segad.pipelines.classifier.pipeline import create_pipeline

__all__ = ["create_pipeline"]
