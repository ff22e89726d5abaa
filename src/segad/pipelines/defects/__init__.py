"""defects: brf_train good images -> synthetic defective images + synthetic_index (one_class only)."""

from segad.pipelines.defects.pipeline import create_pipeline

__all__ = ["create_pipeline"]
