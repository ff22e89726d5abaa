"""Anomaly-map stage: anomalib detectors fitted on detector_train goods -> raw maps + map_index."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
