"""Engine settings: explicit scheduler values per GPU class, resolved once, the same for the
real engine, the `sim` engine and `persona-gen cost`.

vLLM picks its batch defaults by usage context (`EngineArgs.get_batch_defaults`,
vllm/engine/arg_utils.py): only the offline `LLM` class and the API server get the large
ones; an `AsyncLLM` built from engine arguments falls back to `SchedulerConfig`'s 128
sequences and 2,048 tokens a step (vllm/config/scheduler.py). So every engine here passes
`max_num_seqs` and `max_num_batched_tokens` explicitly: the model file's value, else its GPU
class's default below, which is at least what the offline `LLM` class gets on that GPU.

The KV-cache capacity in tokens is estimated from the model's shape (its model file's
`architecture`) and the GPU class's memory; the real engine logs the capacity vLLM measured
at start (`kv_cache_tokens`), beside this estimate, so the first GPU run checks it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from persona_gen.config.base import StrictModel

ADMISSION_FACTOR = 1.1
"""Requests in flight per engine, as a multiple of max_num_seqs (Ray Data LLM caps its
pending requests the same way): enough to refill the batch at once as sequences finish,
without the long waiting queue that slows vLLM's scheduler."""
KV_RESERVE_GB_PER_GPU = 2.0
"""Memory vLLM keeps per GPU besides weights and KV cache (activations at the step's token
budget, CUDA graphs, the sampler's logits): an estimate, checked by the real engine's log."""
CPU = "cpu"


class GpuClass(StrictModel):
    """One GPU class: its memory, and the batch defaults an engine on it gets."""

    memory_gb: float = Field(gt=0)
    """Per GPU, decimal GB, as datasheets give it (the same figure as the cost plan's table)."""
    max_num_seqs: int = Field(ge=1)
    max_num_batched_tokens: int = Field(ge=1)


# vLLM 0.32, EngineArgs.get_batch_defaults, UsageContext.LLM_CLASS: 1,024 sequences and
# 16,384 tokens a step on GPUs of >= 70 GiB that are not A100 (and on >= 160 GiB ones),
# 256 and 8,192 elsewhere (A100 explicitly: larger token budgets slowed it, vLLM PR #17885).
GPU_CLASSES: dict[str, GpuClass] = {
    "B200": GpuClass(memory_gb=180, max_num_seqs=1024, max_num_batched_tokens=16384),
    "H200": GpuClass(memory_gb=141, max_num_seqs=1024, max_num_batched_tokens=16384),
    "H100": GpuClass(memory_gb=80, max_num_seqs=1024, max_num_batched_tokens=16384),
    "A100-80GB": GpuClass(memory_gb=80, max_num_seqs=256, max_num_batched_tokens=8192),
    "A100-40GB": GpuClass(memory_gb=40, max_num_seqs=256, max_num_batched_tokens=8192),
    "L40S": GpuClass(memory_gb=48, max_num_seqs=256, max_num_batched_tokens=8192),
    "A10G": GpuClass(memory_gb=24, max_num_seqs=256, max_num_batched_tokens=8192),
    "L4": GpuClass(memory_gb=24, max_num_seqs=256, max_num_batched_tokens=8192),
}
# vLLM's CPU defaults for the LLM class, per tensor-parallel rank.
CPU_MAX_NUM_SEQS = 256
CPU_MAX_NUM_BATCHED_TOKENS = 4096


def gpu_class_named(name: str) -> str:
    """The canonical class for a name ('h100', 'A100-80GB', 'cpu'); ValueError if unknown."""
    if name.lower() == CPU:
        return CPU
    for key in GPU_CLASSES:
        if key.lower() == name.lower():
            return key
    raise ValueError(f"unknown GPU class '{name}'; known: {', '.join([*GPU_CLASSES, CPU])}")


def gpu_class_of(device_name: str, memory_bytes: float) -> str:
    """The class of a device as torch or Ray names it ('NVIDIA H100 80GB HBM3', 'A10G',
    'A100'): by name, with memory telling the A100s apart; else the closest class by vLLM's
    own rule (memory, and whether it is an A100)."""
    name = device_name.lower().replace("nvidia", "").strip()
    gb = memory_bytes / 1e9
    if "a100" in name:
        if "40" in name or (memory_bytes and gb < 60):
            return "A100-40GB"
        return "A100-80GB"
    for key in ("B200", "H200", "H100", "L40S", "A10G", "L4"):
        token = key.lower()
        if token in name.replace("-", " ").split() or name.startswith(token):
            return key
    # Unknown device: the class whose defaults vLLM's rule gives it.
    gib = memory_bytes / 2**30
    if gib >= 160:
        return "B200"
    if gib >= 70:
        return "H100"
    return "L4"


BYTES_PER_PARAM: dict[str | None, float] = {
    None: 2.0,  # BF16/FP16
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    # MXFP4 (OCP Microscaling): 4-bit values plus one 8-bit scale per block of 32.
    "mxfp4": 4.25 / 8,
}
"""Bytes per stored parameter by quantization (None: 16-bit weights)."""


class Architecture(StrictModel):
    """The model's shape, from its config.json: sizes its weights and its KV cache."""

    params_b: float = Field(gt=0)
    layers: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    source: str = Field(min_length=10)
    """Where the figures come from."""
    # A mixture of experts, a quantized checkpoint (persona_gen.cost.model_size).
    active_params_b: float | None = Field(default=None, gt=0)
    """Parameters per token of a mixture of experts (None: dense, all of them)."""
    experts: int | None = Field(default=None, ge=2)
    experts_per_token: int | None = Field(default=None, ge=1)
    quantization: Literal["fp8", "int8", "int4", "mxfp4"] | None = None
    """How the weights are stored (None: 16-bit, or the model file's dtype)."""
    weights_gb: float | None = Field(default=None, gt=0)
    """The checkpoint's size where precision alone would misstate it (mixed MXFP4/BF16)."""

    def kv_bytes_per_token(self, tensor_parallel: int = 1, dtype_bytes: int = 2) -> int:
        """K and V of every layer for one token, over all ranks (KV heads are replicated
        when there are fewer of them than tensor-parallel ranks)."""
        return 2 * self.layers * max(self.kv_heads, tensor_parallel) * self.head_dim * dtype_bytes

    def weight_bytes(self, dtype_bytes: float = 2) -> float:
        """What the weights take on the GPUs: the checkpoint's size where given, else its
        precision's bytes per parameter, else `dtype_bytes` (the engine's dtype)."""
        if self.weights_gb is not None:
            return self.weights_gb * 1e9
        if self.quantization is not None:
            return self.params_b * 1e9 * BYTES_PER_PARAM[self.quantization]
        return self.params_b * 1e9 * dtype_bytes


def dtype_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def kv_cache_tokens_estimate(arch: Architecture, gpu_class: str, tensor_parallel: int,
                             gpu_memory_utilization: float, dtype: str = "bfloat16",
                             kv_cache_dtype: str | None = None, kv_cache_gib: float = 1,
                             ) -> int:
    """Tokens the KV cache holds, before vLLM measures it: on a GPU class, its memory share
    less the weights and a fixed reserve per GPU; on CPU, VLLM_CPU_KVCACHE_SPACE."""
    kv_dtype = 1 if (kv_cache_dtype or "").startswith("fp8") else dtype_bytes(dtype)
    per_token = arch.kv_bytes_per_token(tensor_parallel, kv_dtype)
    if gpu_class == CPU:
        return int(kv_cache_gib * 2**30 // per_token)
    gpu = GPU_CLASSES[gpu_class]
    usable = gpu.memory_gb * 1e9 * gpu_memory_utilization * tensor_parallel
    free = usable - arch.weight_bytes(dtype_bytes(dtype)) - KV_RESERVE_GB_PER_GPU * 1e9 * tensor_parallel
    return max(0, int(free // per_token))


class EngineSettings(StrictModel):
    """The settings one engine runs with: what the host logs at start (one JSON line) and
    the manifest records per model. Built from the model file and the GPU class
    (`resolve_settings`); a started vLLM engine fills the `kv_cache_*` figures it measured."""

    model: str
    gpu_class: str
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_prefix_caching: bool
    enable_chunked_prefill: bool
    gpu_memory_utilization: float | None
    """None on CPU (VLLM_CPU_KVCACHE_SPACE sizes the cache there)."""
    tensor_parallel_size: int
    dtype: str
    quantization: str | None = None
    max_model_len: int
    kv_cache_tokens_estimate: int | None = None
    """From the model's architecture and the GPU class (what sim and the cost plan use)."""
    kv_cache_blocks: int | None = None
    """Measured by vLLM at start (None before, and for engines that are not vLLM)."""
    kv_cache_block_size: int | None = None
    kv_cache_tokens: int | None = None
    resolved_by: str = "model file"
    """'model file' (before start) or 'vllm' (vLLM's own resolved config)."""

    @property
    def admission_limit(self) -> int:
        """Sequences an engine host lets into its engine at once."""
        return admission_limit(self.max_num_seqs)

    def kv_tokens(self) -> int | None:
        """The measured capacity where there is one, else the estimate."""
        return self.kv_cache_tokens if self.kv_cache_tokens is not None else self.kv_cache_tokens_estimate

    def log_fields(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "admission_limit": self.admission_limit}


def admission_limit(max_num_seqs: int) -> int:
    return max(1, math.ceil(ADMISSION_FACTOR * max_num_seqs))


def resolve_settings(spec: Any, gpu_class: str) -> EngineSettings:
    """The settings a model file asks for on a GPU class (or 'cpu'), as vLLM will take them:
    explicit values win; unset ones take the class's defaults (per tensor-parallel rank on
    CPU, as vLLM scales them). `spec` is a registry ModelSpec (typed loosely: the registry
    imports this module)."""
    cls = gpu_class_named(gpu_class)
    tp = spec.tensor_parallel_size
    if cls == CPU:
        seqs, tokens = CPU_MAX_NUM_SEQS * tp, CPU_MAX_NUM_BATCHED_TOKENS * tp
    else:
        seqs, tokens = GPU_CLASSES[cls].max_num_seqs, GPU_CLASSES[cls].max_num_batched_tokens
    max_num_seqs = spec.max_num_seqs or seqs
    batched = spec.max_num_batched_tokens or tokens
    chunked = spec.enable_chunked_prefill
    if not chunked:
        # Without chunked prefill a whole prompt must fit one step (vLLM refuses less).
        batched = max(batched, spec.max_model_len)
    batched = max(batched, max_num_seqs)  # vLLM requires tokens a step >= sequences
    estimate = None
    if spec.architecture is not None:
        estimate = kv_cache_tokens_estimate(
            spec.architecture, cls, tp, spec.gpu_memory_utilization, _dtype(spec),
            spec.vllm_args.get("kv_cache_dtype"), spec.kv_cache_gib)
    return EngineSettings(
        model=spec.name, gpu_class=cls, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=batched, enable_prefix_caching=spec.enable_prefix_caching,
        enable_chunked_prefill=chunked,
        gpu_memory_utilization=None if cls == CPU else spec.gpu_memory_utilization,
        tensor_parallel_size=tp, dtype=_dtype(spec),
        quantization=spec.vllm_args.get("quantization"), max_model_len=spec.max_model_len,
        kv_cache_tokens_estimate=estimate)


def _dtype(spec: Any) -> str:
    return "bfloat16" if spec.dtype == "auto" else str(spec.dtype)


def engine_arguments(settings: EngineSettings) -> dict[str, Any]:
    """The scheduler and cache arguments for vLLM's EngineArgs / LLM, all explicit."""
    return {"max_num_seqs": settings.max_num_seqs,
            "max_num_batched_tokens": settings.max_num_batched_tokens,
            "enable_prefix_caching": settings.enable_prefix_caching,
            "enable_chunked_prefill": settings.enable_chunked_prefill}


def from_vllm_config(declared: EngineSettings, vllm_config: Any) -> EngineSettings:
    """The settings as a started vLLM engine resolved them (its VllmConfig after start:
    the engine core reports its KV-cache blocks back to the client)."""
    sched, cache = vllm_config.scheduler_config, vllm_config.cache_config
    model, parallel = vllm_config.model_config, vllm_config.parallel_config
    blocks = cache.num_gpu_blocks
    block_size = cache.block_size
    tokens = getattr(cache, "kv_cache_size_tokens", None)
    if tokens is None and blocks is not None and block_size:
        tokens = blocks * block_size
    return declared.model_copy(update={
        "max_num_seqs": sched.max_num_seqs,
        "max_num_batched_tokens": sched.max_num_batched_tokens,
        "enable_prefix_caching": bool(cache.enable_prefix_caching),
        "enable_chunked_prefill": bool(sched.enable_chunked_prefill),
        "tensor_parallel_size": parallel.tensor_parallel_size,
        "dtype": str(model.dtype).removeprefix("torch."),
        "quantization": model.quantization,
        "max_model_len": model.max_model_len,
        "kv_cache_blocks": blocks, "kv_cache_block_size": block_size,
        "kv_cache_tokens": tokens, "resolved_by": "vllm"})


def start_timeout_s(spec: Any, base_s: float, s_per_gb: float) -> float:
    """How long an engine may take to load: a fixed part (scheduling, compile, CUDA graphs)
    plus a part per GB of weights (download or copy, then load)."""
    arch = spec.architecture
    gb = arch.weight_bytes(dtype_bytes(_dtype(spec))) / 1e9 if arch is not None else 0.0
    return base_s + s_per_gb * gb
