"""Ingestion: dataset folder layouts, the demo dataset, the split into roles, synthetic defects."""
