"""Ingestion: a dataset folder (or the built-in demo) -> image_index."""

from segad.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
