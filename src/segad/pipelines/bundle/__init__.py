"""The production bundle of a training run (detectors, segments, BRF, schema, operating point)."""

from segad.pipelines.bundle.pipeline import create_pipeline

__all__ = ["create_pipeline"]
