"""Memory and per-token work of a model from its checkpoint: precision, total and active
parameters. The throughput derivation (derive.py) and the layout check read these.

- Memory: the weights take `weights_gb` where the table gives the checkpoint's size
  (gpt-oss's MXFP4 experts beside BF16 attention), else parameters x bytes per parameter
  of the checkpoint's precision (FP8: 1 byte; else the derivation's default, BF16).
- Decode reads, each step, the weights its running sequences route to. A dense model reads
  all of them. A mixture of experts reads its shared weights and the experts that some
  token of the step picked: with E experts, k per token and n sequences, a given expert
  is idle with probability (1 - k/E)^n, so at full batch nearly every expert is read and
  the step costs about the total weights' bandwidth, amortised over the batch.
- Prefill computes 2 x active parameters FLOPs per token: a mixture of experts costs what
  its active parameters cost.
"""

from __future__ import annotations

from persona_gen.cost.tables import Derivation, GpuSpec
from persona_gen.engines.checkpoint import BYTES_PER_PARAM
from persona_gen.engines.settings import Architecture
from persona_gen.errors import UserError


def bytes_per_param(model: Architecture, d: Derivation) -> float:
    """The checkpoint's precision (engines.checkpoint.BYTES_PER_PARAM); 16-bit: the
    derivation's default."""
    if model.quantization is not None:
        return BYTES_PER_PARAM[model.quantization]
    return d.bytes_per_param


def weight_gb(model: Architecture, d: Derivation) -> float:
    """GB the weights take on the GPUs."""
    if model.weights_gb is not None:
        return model.weights_gb
    return model.params_b * bytes_per_param(model, d)


def active_params_b(model: Architecture) -> float:
    return model.active_params_b or model.params_b


def step_weight_gb(model: Architecture, d: Derivation, running: int) -> float:
    """GB of weights one decode step reads with `running` sequences."""
    total = weight_gb(model, d)
    if not (model.experts and model.experts_per_token and model.active_params_b):
        return total
    share = model.experts_per_token / model.experts
    # Expert parameters from total and active: active = shared + share x experts.
    expert_b = (model.params_b - model.active_params_b) / (1 - share)
    shared_b = model.params_b - expert_b
    touched = 1 - (1 - share) ** max(running, 1)
    return total * (shared_b + expert_b * touched) / model.params_b


def usable_weight_gb(gpu: GpuSpec, gpus: int, d: Derivation) -> float:
    """What `gpus` GPUs give the weights (the rest of vLLM's share is KV cache)."""
    return d.max_weight_share * gpus * gpu.memory_gb * d.memory_utilization


def fits(model: Architecture, gpu: GpuSpec, gpus: int, d: Derivation) -> bool:
    return weight_gb(model, d) <= usable_weight_gb(gpu, gpus, d)


def does_not_fit(name: str, model: Architecture, gpu_name: str, gpu: GpuSpec, gpus: int,
                 d: Derivation, field: str) -> UserError:
    """The one-line refusal for a model whose weights do not fit the GPUs it asks for."""
    kind = (f"MoE, {model.params_b:g}B parameters, {active_params_b(model):g}B active"
            if model.experts else f"{model.params_b:g}B parameters")
    precision = model.quantization or "16-bit"
    return UserError(
        f"'{name}' ({kind}, {precision}) needs {weight_gb(model, d):.0f} GB for its weights; "
        f"{gpus} x {gpu_name} (its tensor_parallel_size) give them "
        f"{usable_weight_gb(gpu, gpus, d):.0f} GB ({gpus} x {gpu.memory_gb:g} GB, "
        f"{d.memory_utilization:.0%} for vLLM, {d.max_weight_share:.0%} of that for "
        f"weights): raise tensor_parallel_size in its model file", source=field)


def note(name: str, model: Architecture, d: Derivation) -> str | None:
    """What the cost plan used for a MoE or quantized model, for its notes."""
    if not model.experts and model.quantization is None:
        return None
    parts = []
    if model.experts:
        parts.append(f"MoE, {active_params_b(model):g}B of {model.params_b:g}B parameters "
                     f"active per token ({model.experts_per_token} of {model.experts} "
                     "experts): prefill compute from the active ones; decode reads every "
                     "expert some running sequence picked (nearly all at full batch)")
    parts.append(f"weights {weight_gb(model, d):.1f} GB "
                 f"({model.quantization or 'BF16'})")
    return f"{name}: " + "; ".join(parts)

