"""Production scoring of a folder of new images with a trained SegAD bundle."""

from segad.pipelines.score.pipeline import create_pipeline

__all__ = ["create_pipeline"]
