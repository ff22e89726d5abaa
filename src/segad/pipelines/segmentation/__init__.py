"""segmentation: the segment map(s) of every category at map resolution (data/04_feature)."""

from segad.pipelines.segmentation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
