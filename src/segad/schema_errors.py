"""The short error summary of a failed table validation (`segad.schemas.validate`): per column
and check, the count and a few failing values, instead of pandera's full report."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

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
