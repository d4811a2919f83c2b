"""Models planned from their model files alone: a model the throughput table has no rows
for (one added with `models add`, whose `checkpoint` block gives its shape) gets derived
figures for every GPU it fits, the same way derive.py derives the table's own rows."""

from __future__ import annotations

from persona_gen.cost.derive import derive_entry
from persona_gen.cost.tables import ThroughputTable


def with_model_files(table: ThroughputTable) -> ThroughputTable:
    """The table plus derived rows for every registered model with a shape and no rows."""
    listed = {e.model for e in table.entries}
    rows = [e for name in table.models if name not in listed for gpu in table.gpus
            if (e := derive_entry(table, name, gpu)) is not None]
    return table if not rows else table.model_copy(update={"entries": [*table.entries, *rows]})
