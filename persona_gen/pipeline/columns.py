"""Small Arrow helpers shared by model stages: result columns, per-row errors, lookups."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.engines.base import ChatResult


def column(batch: pa.Table, name: str) -> list:
    return batch.column(name).to_pylist()


def with_columns(batch: pa.Table, columns: dict[str, pa.Array | Sequence]) -> pa.Table:
    """Add or replace columns (replacing keeps a resumed batch idempotent)."""
    for name, values in columns.items():
        arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        if name in batch.column_names:
            batch = batch.set_column(batch.column_names.index(name), name, arr)
        else:
            batch = batch.append_column(name, arr)
    return batch


def result_columns(results: Sequence[ChatResult], prefix: str) -> dict[str, list]:
    """The standard per-stage columns: text, token counts, latency, error."""
    return {
        prefix: [r.text if r.ok else None for r in results],
        f"{prefix}_prompt_tokens": [r.prompt_tokens for r in results],
        f"{prefix}_output_tokens": [r.output_tokens for r in results],
        "error": [r.error for r in results],
    }


def ok_rows(batch: pa.Table) -> pa.Table:
    if "error" not in batch.column_names:
        return batch
    return batch.filter(pc.is_null(batch.column("error")))


def error_rows(batch: pa.Table) -> pa.Table:
    if "error" not in batch.column_names:
        return batch.slice(0, 0)
    return batch.filter(pc.is_valid(batch.column("error")))


def lookup(keys: Sequence[str], table: dict[str, str], what: str) -> list[str]:
    missing = [k for k in keys if k not in table]
    if missing:
        raise KeyError(f"{len(missing)} {what} ids not found, e.g. {missing[0]!r}")
    return [table[k] for k in keys]
