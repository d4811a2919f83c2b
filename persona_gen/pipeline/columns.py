"""Small Arrow helpers shared by model stages: columns set by name, per-row errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc


def column(batch: pa.Table, name: str) -> list:
    return batch.column(name).to_pylist()


def with_columns(batch: pa.Table, columns: Mapping[str, pa.Array | pa.ChunkedArray | Sequence]) -> pa.Table:
    """Add or replace columns (replacing keeps a resumed batch idempotent)."""
    for name, values in columns.items():
        arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        if name in batch.column_names:
            batch = batch.set_column(batch.column_names.index(name), name, arr)
        else:
            batch = batch.append_column(name, arr)
    return batch


def ok_rows(batch: pa.Table) -> pa.Table:
    if "error" not in batch.column_names:
        return batch
    return batch.filter(pc.is_null(batch.column("error")))


def error_rows(batch: pa.Table) -> pa.Table:
    if "error" not in batch.column_names:
        return batch.slice(0, 0)
    return batch.filter(pc.is_valid(batch.column("error")))
