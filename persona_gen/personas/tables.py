"""Small Arrow helpers the persona stages share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc


def with_columns(table: pa.Table, columns: Mapping[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    """Set each column, replacing one of the same name (stages may run more than once)."""
    for name, values in columns.items():
        idx = table.schema.get_field_index(name)
        if idx >= 0:
            table = table.set_column(idx, name, values)
        else:
            table = table.append_column(name, values)
    return table


def take_rows(table: pa.Table, mask: Sequence[bool]) -> pa.Table:
    return table.filter(pa.array(list(mask), type=pa.bool_()))


def ensure_string_columns(table: pa.Table, names: Sequence[str]) -> pa.Table:
    """Add any missing name as an all-null string column (a census layout may lack it)."""
    missing = {n: pa.nulls(table.num_rows, pa.string()) for n in names if n not in table.column_names}
    return with_columns(table, missing)


def error_count(table: pa.Table, column: str = "error") -> int:
    if column not in table.column_names:
        return 0
    return table.num_rows - int(pc.sum(pc.is_null(table.column(column))).as_py() or 0)
