"""Field metadata shared by the table models: the doc name and meaning of a regex column, read by
`segad.schema_report` (docs/schemas.md) and `segad.schema_errors`."""

from __future__ import annotations


def doc(name: str, meaning: str) -> dict:
    """Field metadata: the column name shown in the doc (regex columns) and its meaning."""
    return {"doc_name": name, "meaning": meaning}
