"""Schemas for people: the short error summary of a failed validation, and the column tables of
docs/schemas.md generated from the models of `segad.schemas`.

Regenerate the tables with ``python -m segad.schema_report [docs/schemas.md]``; a test fails while
the page and the models disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from segad.schemas import MODELS

#: Shown in the error: at most this many problems, each with at most `EXAMPLES` failing values.
MAX_PROBLEMS, EXAMPLES = 8, 3


def summary(failures: pd.DataFrame, model: type[pa.DataFrameModel], name: str) -> str:
    """A few lines from pandera's failure cases: per column and check, the count and some failing values."""
    shown = {n: (c.metadata or {}).get("doc_name", n) for n, c in model.to_schema().columns.items()}
    problems = [_problem(check, rows, shown) for check, rows in _groups(failures)]
    lines = [f"{name} does not match segad.schemas.{model.__name__} (docs/schemas.md):"]
    lines += [f"  {p}" for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_PROBLEMS} more problems")
    return "\n".join(lines)


def _groups(failures: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(check, failure rows) per problem: missing / extra columns first, then per column, then table checks."""
    failures = failures.assign(column=failures["column"].astype(str), check=failures["check"].astype(str))
    about_columns = failures["check"].str.startswith("column_in_")
    table_level = (failures["schema_context"] == "DataFrameSchema") & ~about_columns
    failures = failures.assign(
        _rank=about_columns.map({True: 0, False: 1}) + table_level, _column=failures["column"].where(~table_level, "")
    )
    failures = failures.sort_values("_rank", kind="stable")
    return [
        (str(rows["check"].iloc[0]), rows) for _, rows in failures.groupby(["_rank", "_column", "check"], sort=False)
    ]


def _problem(check: str, rows: pd.DataFrame, shown_names: dict[str, str]) -> str:
    columns = list(dict.fromkeys(rows["column"]))
    if check in ("column_in_schema", "column_in_dataframe"):
        names = rows["failure_case"].astype(str).tolist()
        listed = ", ".join(map(repr, names[:10])) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        return f"{'unexpected' if check == 'column_in_schema' else 'missing'} column(s) {listed}"
    if check.startswith("no_regex_column_match"):
        return f"missing column(s): none matches {shown_names.get(columns[0], columns[0])}"
    if rows["schema_context"].iloc[0] == "DataFrameSchema":  # a check over several columns
        if rows["index"].isna().all():
            return f"table: {check} could not run ({rows['failure_case'].iloc[0]})"
        if check.endswith("uniqueness"):
            keys = rows.groupby("index", sort=False)["failure_case"].agg(tuple)
            shown = ", ".join(map(str, dict.fromkeys(keys.head(EXAMPLES * 2)).keys()))
            return f"key ({', '.join(columns)}): {len(keys)} row(s) share a key, e.g. {shown}"
        index = list(dict.fromkeys(rows["index"]))
        return f"table: {check} in {len(index)} row(s), e.g. at index {', '.join(map(str, index[:EXAMPLES]))}"
    where = f"column {columns[0]!r}"
    values = rows["failure_case"].tolist()
    shown = ", ".join(repr(v) for v in list(dict.fromkeys(values))[:EXAMPLES])
    if check.startswith("dtype("):
        return f"{where}: dtype {values[0]}, expected {check[len('dtype(') : -1].strip(chr(39))}"
    if check == "not_nullable":
        return f"{where}: {len(rows)} null value(s)"
    if check == "field_uniqueness":
        return f"{where}: {len(rows)} row(s) with a duplicated value, e.g. {shown}"
    return f"{where}: {check} fails for {len(rows)} row(s), e.g. {shown}"


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
    """``python -m segad.schemas [path]``: regenerate the tables of docs/schemas.md in place."""
    path = Path(argv[0]) if argv else DOC
    text = path.read_text(encoding="utf-8")
    new = render_doc(text)
    path.write_text(new, encoding="utf-8")
    print(f"{path}: {'updated' if new != text else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
