"""Report: metrics, test scores, plot lists and the bundle's operating point -> report.md."""

from segad.pipelines.report.pipeline import create_pipeline

__all__ = ["create_pipeline"]
