"""SegAD."""
