"""Small Arrow helpers the persona stages share."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from persona_gen.pipeline.columns import with_columns


def take_rows(table: pa.Table, mask: Sequence[bool]) -> pa.Table:
    return table.filter(pa.array(list(mask), type=pa.bool_()))


def ensure_string_columns(table: pa.Table, names: Sequence[str]) -> pa.Table:
    """Add any missing name as an all-null string column (a census layout may lack it)."""
    missing = {n: pa.nulls(table.num_rows, pa.string()) for n in names if n not in table.column_names}
    return with_columns(table, missing)
