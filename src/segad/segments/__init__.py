"""Segments: segment maps and the per-segment statistics that make SegAD's feature vectors."""
