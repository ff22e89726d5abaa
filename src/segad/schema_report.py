"""Schemas for people: the column tables of docs/schemas.md generated from the models of
`segad.schemas` (the short error summary of a failed validation is `segad.schema_errors`).

Regenerate the tables with ``python -m segad.schema_report [docs/schemas.md]``; a test fails while
the page and the models disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandera.pandas as pa

from segad.schemas import MODELS

# --------------------------------------------------------------------------------------------
# docs/schemas.md: the column tables between `<!-- schema:<name> -->` and `<!-- /schema -->`

DOC = Path(__file__).resolve().parents[2] / "docs" / "schemas.md"
_TYPES = {"str": "string"}
_BLOCK = re.compile(r"(<!-- schema:(?P<name>\w+) -->\n).*?(<!-- /schema -->)", re.S)


def _rule(check: pa.Check) -> str:
    stats = check.statistics or {}
    if check.name == "isin":
        return "one of " + ", ".join(f"`{v}`" for v in stats["allowed_values"])
    if check.name == "greater_than_or_equal_to":
        return f">= {stats['min_value']}"
    if check.name == "greater_than":
        return f"> {stats['min_value']}"
    if check.name == "in_range":
        return f"in [{stats['min_value']}, {stats['max_value']}]"
    if check.name == "str_length":
        return "non-empty"
    return str(check.error)


def markdown_table(model: type[pa.DataFrameModel]) -> str:
    """The column table of one model, with its unique key and table checks below it."""
    schema = model.to_schema()
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    for name, column in schema.columns.items():
        meaning = (column.metadata or {}).get("meaning", column.description or "")
        shown = (column.metadata or {}).get("doc_name", name)
        shown = ", ".join(f"`{n}`" for n in shown.split(", ")) if column.metadata else shown
        kind = [_TYPES.get(str(column.dtype), str(column.dtype))]
        kind += ["nullable"] * column.nullable + ["unique"] * column.unique + ["optional"] * (not column.required)
        kind += [_rule(c) for c in column.checks]
        lines.append(f"| {shown} | {', '.join(kind)} | {meaning} |")
    if schema.unique:
        lines.append(f"\nUnique key: ({', '.join(schema.unique)}).")
    lines += [f"\nChecked: {check.error}." for check in schema.checks]
    if schema.strict:
        lines.append("\nNo other columns.")
    return "\n".join(lines) + "\n"


def markdown_tables() -> dict[str, str]:
    """Model name (as in `MODELS`) -> its generated markdown table."""
    return {name: markdown_table(model) for name, model in MODELS.items()}


def render_doc(text: str) -> str:
    """`text` with every ``<!-- schema:<name> -->`` block replaced by the table of `MODELS[name]`."""
    tables = markdown_tables()

    def table(match: re.Match) -> str:
        if match["name"] not in tables:
            raise KeyError(f"docs/schemas.md names schema {match['name']!r}; known: {sorted(tables)}")
        return f"{match[1]}{tables[match['name']]}{match[3]}"

    return _BLOCK.sub(table, text)


def documented(text: str) -> set[str]:
    """Names of the schema blocks in a docs/schemas.md text."""
    return {m["name"] for m in _BLOCK.finditer(text)}


def main(argv: list[str]) -> int:
    """``python -m segad.schema_report [path]``: regenerate the tables of docs/schemas.md in place."""
    path = Path(argv[0]) if argv else DOC
    text = path.read_text(encoding="utf-8")
    new = render_doc(text)
    path.write_text(new, encoding="utf-8")
    print(f"{path}: {'updated' if new != text else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
