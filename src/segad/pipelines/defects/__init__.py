"""defects: brf_train good images -> synthetic defective images + synthetic_index.

one_class: the bad class; other regimes: an opt-in top-up beside the real bad images.
"""

from segad.pipelines.defects.pipeline import create_pipeline

__all__ = ["create_pipeline"]
