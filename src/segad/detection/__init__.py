"""Detection: one-class detectors (anomalib) fitted on good images, and the anomaly-map store."""
