"""Evaluation: the metrics, the report and the plots."""
