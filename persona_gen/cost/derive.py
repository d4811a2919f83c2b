"""How the `basis: derived` rows of data/throughput.yaml were computed (and are re-checked),
and how a row's figure follows an engine's resolved settings.

Batch generation with vLLM is decode-bound: every step reads all weights plus the KV cache of
every running sequence, so tokens/s ~ running sequences / (bytes read per step / bandwidth).
The running sequences are the engine's max_num_seqs, or fewer when the KV cache cannot hold
that many (persona_gen.engines.settings: the same capacity estimate the `sim` engine uses).
The roofline below is calibrated by two measured figures (one GPU, tensor-parallel), whose
ratio measured/roofline is the efficiency applied to every other model and GPU. Every row is
a figure at the anchors' batch (derivation.anchor_max_num_seqs); `rate_with_settings`
rescales it to an engine's resolved settings by the ratio of the two rooflines. Prefill is
compute-bound: 2 x params FLOPs per prompt token at an assumed fraction of peak.

`python -m persona_gen.cost.derive` prints the derived rows as YAML for the table.
"""

from __future__ import annotations

from persona_gen.cost.model_size import active_params_b, fits, step_weight_gb, weight_gb
from persona_gen.cost.tables import (
    Derivation,
    GpuSpec,
    ThroughputEntry,
    ThroughputTable,
    load_table,
)
from persona_gen.engines.settings import Architecture, EngineSettings, kv_cache_tokens_estimate


def replica_gpus(model: Architecture, gpu: GpuSpec, d: Derivation) -> int | None:
    """Fewest GPUs (a power of two) whose usable memory holds the weights with room for KV."""
    g = 1
    while g <= d.max_gpus_per_replica:
        if fits(model, gpu, g, d):
            return g
        g *= 2
    return None


def running_seqs(max_num_seqs: int, kv_tokens: int | None, seq_tokens: int) -> int:
    """Sequences an engine keeps running: its cap, or as many as its KV cache holds."""
    if kv_tokens is None:
        return max_num_seqs
    return min(max_num_seqs, int(kv_tokens // max(1, seq_tokens)))


def roofline_decode_tok_s(model: Architecture, gpu: GpuSpec, g: int, d: Derivation,
                          running: int | None = None, seq_tokens: int | None = None,
                          gpu_name: str | None = None) -> float:
    """Memory-bound decode rate of one replica before efficiency losses: at `running`
    sequences of `seq_tokens` each, or (by default) at the anchors' batch, as far as the
    KV cache at the derivation's memory share holds it. A step reads the weights its
    running sequences route to (a mixture of experts: the experts some sequence picked)."""
    seq = seq_tokens or d.seq_tokens
    if running is None:
        kv = (kv_cache_tokens_estimate(model, gpu_name, g, d.memory_utilization)
              if gpu_name is not None else _kv_tokens(model, gpu, g, d))
        running = running_seqs(d.anchor_max_num_seqs, kv, seq)
    if running < 1:
        return 0.0
    read = step_weight_gb(model, d, running) * 1e9
    step_s = (read + running * model.kv_bytes_per_token(g) * seq) / (g * gpu.bandwidth_gb_s * 1e9)
    return running / step_s


def _kv_tokens(model: Architecture, gpu: GpuSpec, g: int, d: Derivation) -> int:
    """KV-cache tokens of a GPU the engines' classes do not know (a table-only GPU)."""
    usable = g * gpu.memory_gb * 1e9 * d.memory_utilization
    return max(0, int((usable - weight_gb(model, d) * 1e9) // model.kv_bytes_per_token(g)))


def prefill_tok_s(model: Architecture, gpu: GpuSpec, g: int, d: Derivation) -> float:
    """Compute-bound: 2 x active parameters FLOPs per prompt token."""
    return d.prefill_mfu * g * gpu.bf16_dense_tflops * 1e12 / (2 * active_params_b(model) * 1e9)


def _roof(table: ThroughputTable, model: str, gpu: str, g: int, running: int | None = None,
          seq_tokens: int | None = None) -> float:
    from persona_gen.engines.settings import GPU_CLASSES

    return roofline_decode_tok_s(table.models[model], table.gpus[gpu], g, table.derivation,
                                 running, seq_tokens, gpu if gpu in GPU_CLASSES else None)


def _anchor(table: ThroughputTable, ref: str) -> tuple[ThroughputEntry, float]:
    model, gpu = ref.split("@")
    e = next(x for x in table.entries if x.model == model and x.gpu == gpu)
    if e.basis != "measured":
        raise ValueError(f"anchor {ref} must be a measured entry")
    return e, e.output_tok_s / _roof(table, model, gpu, e.gpus_per_replica)


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
    roof = _roof(table, model, gpu, g)
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
    of `e.gpus_per_replica`, at the anchors' batch: the row's figure times the ratio of the
    decode rooflines (so a measured row keeps its measured efficiency), prefill in
    proportion to the GPUs. None where the weights do not fit on `g` GPUs."""
    return _rescaled(table, e, g, None, None)


def rate_with_settings(table: ThroughputTable, e: ThroughputEntry, settings: EngineSettings,
                       seq_tokens: int, context_tokens: int | None = None,
                       ) -> tuple[float, float, int] | None:
    """(output tok/s, prefill tok/s, running sequences) of an engine with these resolved
    settings (GPUs per engine, max_num_seqs, KV-cache tokens) on sequences that each hold
    `seq_tokens` of the KV cache (their own prompt and output) and read `context_tokens` a
    step on average (shared prefix included; default seq_tokens): the row's figure rescaled
    from the anchors' batch to the one the engine runs. None where the weights do not fit."""
    g = settings.tensor_parallel_size
    running = running_seqs(settings.max_num_seqs, settings.kv_tokens(), seq_tokens)
    out = _rescaled(table, e, g, running, context_tokens or seq_tokens)
    return None if out is None else (*out, running)


def _rescaled(table: ThroughputTable, e: ThroughputEntry, g: int, running: int | None,
              seq_tokens: int | None) -> tuple[float, float] | None:
    m, s, d = table.models[e.model], table.gpus[e.gpu], table.derivation
    if not fits(m, s, g, d):
        return None
    base = _roof(table, e.model, e.gpu, e.gpus_per_replica)
    roof = _roof(table, e.model, e.gpu, g, running, seq_tokens)
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
