"""Evaluation: scores + image_index + splits -> metrics.csv, plots and report.md."""

from segad.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
