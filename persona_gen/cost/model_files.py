"""Models planned from their model files: `models add` writes a `checkpoint` block (sizes,
experts, precision), from which plan-cost derives figures for a model its throughput
table does not list, the same way derive.py derives the table's own rows."""

from __future__ import annotations

from persona_gen.cost.derive import derive_entry
from persona_gen.cost.tables import ModelSpec, ThroughputTable
from persona_gen.engines.checkpoint import BYTES_PER_PARAM, Checkpoint


def from_checkpoint(checkpoint: Checkpoint, hf_id: str) -> ModelSpec | None:
    """A throughput-table model from a model file's `checkpoint` block (`models add` writes
    one), or None where it lacks the KV-cache shape."""
    c = checkpoint
    if not (c.params_b and c.layers and c.kv_heads and c.head_dim):
        return None
    quant = c.quantization if c.quantization in BYTES_PER_PARAM else None
    return ModelSpec(
        hf_id=hf_id, params_b=c.params_b, layers=c.layers, kv_heads=c.kv_heads,
        head_dim=c.head_dim, weights_gb=c.weights_gb, quantization=quant,  # type: ignore[arg-type]
        active_params_b=c.active_params_b if c.moe else None,
        experts=c.experts if c.moe else None,
        experts_per_token=c.experts_per_token if c.moe else None,
        source=f"its model file's checkpoint block ({c.source or 'no source given'})")


def with_model_files(table: ThroughputTable,
                     checkpoints: dict[str, tuple[Checkpoint, str]]) -> ThroughputTable:
    """The table plus the models it lacks whose model files carry a checkpoint block, each
    with derived figures for every GPU it fits (so a model added with `models add` can be
    planned at once)."""
    added = {name: m for name, (c, source) in checkpoints.items()
             if name not in table.models and (m := from_checkpoint(c, source)) is not None}
    if not added:
        return table
    out = table.model_copy(update={"models": {**table.models, **added}})
    rows = [e for name in added for gpu in out.gpus
            if (e := derive_entry(out, name, gpu)) is not None]
    return out.model_copy(update={"entries": [*out.entries, *rows]})
