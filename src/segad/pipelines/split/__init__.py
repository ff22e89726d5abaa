"""Split: image_index + benchmark regime + seeds -> splits."""

from segad.pipelines.split.pipeline import create_pipeline

__all__ = ["create_pipeline"]
