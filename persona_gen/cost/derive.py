"""How the `basis: derived` rows of data/throughput.yaml were computed (and are re-checked).

Batch generation with vLLM is decode-bound: every step reads all weights plus the KV cache of
every running sequence, so tokens/s ~ running sequences / (bytes read per step / bandwidth).
The roofline below is calibrated by two measured figures (one GPU, tensor-parallel), whose
ratio measured/roofline is the efficiency applied to every other model and GPU. Prefill is
compute-bound: 2 x params FLOPs per prompt token at an assumed fraction of peak.

`python -m persona_gen.cost.derive` prints the derived rows as YAML for the table.
"""

from __future__ import annotations

from persona_gen.cost.model_size import active_params_b, fits, step_weight_gb, weight_gb
from persona_gen.cost.tables import (
    Derivation,
    GpuSpec,
    ModelSpec,
    ThroughputEntry,
    ThroughputTable,
    load_table,
)


def replica_gpus(model: ModelSpec, gpu: GpuSpec, d: Derivation) -> int | None:
    """Fewest GPUs (a power of two) whose usable memory holds the weights with room for KV."""
    g = 1
    while g <= d.max_gpus_per_replica:
        if fits(model, gpu, g, d):
            return g
        g *= 2
    return None


def roofline_decode_tok_s(model: ModelSpec, gpu: GpuSpec, g: int, d: Derivation) -> float:
    """Memory-bound decode rate of one replica before efficiency losses."""
    usable = g * gpu.memory_gb * 1e9 * d.memory_utilization
    weights = weight_gb(model, d) * 1e9
    kv_per_seq = model.kv_bytes_per_token * d.seq_tokens
    running = min(d.max_num_seqs, int((usable - weights) // kv_per_seq))
    if running < 1:
        return 0.0
    # A mixture of experts reads only the experts its running sequences route to.
    read = step_weight_gb(model, d, running) * 1e9
    step_s = (read + running * kv_per_seq) / (g * gpu.bandwidth_gb_s * 1e9)
    return running / step_s


def prefill_tok_s(model: ModelSpec, gpu: GpuSpec, g: int, d: Derivation) -> float:
    return d.prefill_mfu * g * gpu.bf16_dense_tflops * 1e12 / (2 * active_params_b(model) * 1e9)


def _anchor(table: ThroughputTable, ref: str) -> tuple[ThroughputEntry, float]:
    model, gpu = ref.split("@")
    e = next(x for x in table.entries if x.model == model and x.gpu == gpu)
    if e.basis != "measured":
        raise ValueError(f"anchor {ref} must be a measured entry")
    roof = roofline_decode_tok_s(table.models[model], table.gpus[gpu], e.gpus_per_replica,
                                 table.derivation)
    return e, e.output_tok_s / roof


def efficiencies(table: ThroughputTable) -> tuple[float, float]:
    """(one-GPU efficiency, tensor-parallel efficiency) = measured / roofline at the anchors."""
    return _anchor(table, table.derivation.anchor_single)[1], _anchor(
        table, table.derivation.anchor_parallel)[1]


def derive_entry(table: ThroughputTable, model: str, gpu: str) -> ThroughputEntry | None:
    """The estimate for `model` on `gpu`, or None where it does not fit a replica."""
    d = table.derivation
    m, s = table.models[model], table.gpus[gpu]
    g = replica_gpus(m, s, d)
    if g is None:
        return None
    roof = roofline_decode_tok_s(m, s, g, d)
    if roof <= 0:
        return None
    eff_single, eff_parallel = efficiencies(table)
    eff = eff_single if g == 1 else eff_parallel
    anchor = d.anchor_single if g == 1 else d.anchor_parallel
    return ThroughputEntry(
        model=model, gpu=gpu, gpus_per_replica=g,
        output_tok_s=round(eff * roof), prefill_tok_s=round(prefill_tok_s(m, s, g, d)),
        basis="derived",
        source=(f"estimate: KV-aware bandwidth roofline x {eff:.3f} efficiency calibrated on "
                f"{anchor}; prefill at {d.prefill_mfu:.0%} of dense BF16 peak (derive.py)"),
    )


def at_gpus(table: ThroughputTable, e: ThroughputEntry, g: int) -> tuple[float, float] | None:
    """(output tok/s, prefill tok/s) of `e`'s model and GPU on `g` GPUs per replica instead
    of `e.gpus_per_replica`: the row's figure times the ratio of the decode rooflines (so a
    measured row keeps its measured efficiency), prefill in proportion to the GPUs. None
    where the weights do not fit on `g` GPUs."""
    m, s, d = table.models[e.model], table.gpus[e.gpu], table.derivation
    if not fits(m, s, g, d):
        return None
    base = roofline_decode_tok_s(m, s, e.gpus_per_replica, d)
    roof = roofline_decode_tok_s(m, s, g, d)
    if base <= 0 or roof <= 0:
        return None
    return e.output_tok_s * roof / base, e.prefill_tok_s * g / e.gpus_per_replica


def main() -> None:
    import yaml

    table = load_table()
    measured = {(e.model, e.gpu) for e in table.entries if e.basis == "measured"}
    rows = []
    for model in table.models:
        for gpu in table.gpus:
            if (model, gpu) in measured:
                continue
            e = derive_entry(table, model, gpu)
            if e is not None:
                row = e.model_dump()
                row["output_tok_s"] = int(e.output_tok_s)
                row["prefill_tok_s"] = int(e.prefill_tok_s)
                rows.append(row)
    print(yaml.safe_dump(rows, sort_keys=False, width=200), end="")


if __name__ == "__main__":
    main()
