"""What a model's weights are: parameters (total and active), experts, precision, size.

A model file's `checkpoint` block. `persona-gen models add` fills it from the checkpoint's
config.json and safetensors headers; shipped model files fill it from the model card. It
sizes memory (weights on disk) and per-token cost (active parameters) in the cost plan.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from persona_gen.config.base import StrictModel
from persona_gen.engines.settings import BYTES_PER_PARAM, Architecture

__all__ = ["BYTES_PER_PARAM", "Checkpoint"]



class Checkpoint(StrictModel):
    """Sizes of one checkpoint; every figure optional, `source` says where they come from."""

    architecture: str | None = None
    """The Hugging Face class in config.json, e.g. Qwen3MoeForCausalLM."""
    params_b: float | None = Field(default=None, gt=0)
    """Total parameters, billions."""
    active_params_b: float | None = Field(default=None, gt=0)
    """Parameters used per token, billions (MoE: shared weights plus the routed experts);
    None: all of them (a dense model)."""
    experts: int | None = Field(default=None, ge=1)
    experts_per_token: int | None = Field(default=None, ge=1)
    quantization: str | None = None
    """How the weights are stored: fp8, mxfp4, int8, int4; None: 16-bit."""
    weights_gb: float | None = Field(default=None, gt=0)
    """Bytes of the weight files, GB (decimal); None: params_b x bytes per parameter."""
    layers: int | None = Field(default=None, ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    context: int | None = Field(default=None, ge=1)
    """Native context length (max_position_embeddings)."""
    source: str = ""
    """Where the figures come from (a model card, config.json, `models add`)."""

    @model_validator(mode="after")
    def _consistent(self) -> Checkpoint:
        if self.active_params_b and self.params_b and self.active_params_b > self.params_b:
            raise ValueError(f"active_params_b ({self.active_params_b}) is more than "
                             f"params_b ({self.params_b})")
        if self.experts and self.experts_per_token and self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) is more than "
                             f"experts ({self.experts})")
        return self

    def shape(self, name: str) -> Architecture | None:
        """The model's shape for KV-cache and throughput estimates (engines.settings), or
        None where the block lacks the KV-cache sizes."""
        if not (self.params_b and self.layers and self.kv_heads and self.head_dim):
            return None
        quant = self.quantization if self.quantization in BYTES_PER_PARAM else None
        return Architecture(
            params_b=self.params_b, layers=self.layers, kv_heads=self.kv_heads,
            head_dim=self.head_dim, weights_gb=self.weights_gb, quantization=quant,  # type: ignore[arg-type]
            active_params_b=self.active_params_b if self.moe else None,
            experts=self.experts if self.moe else None,
            experts_per_token=self.experts_per_token if self.moe else None,
            source=f"{name}: its model file's checkpoint block ({self.source or 'no source'})")

    @property
    def moe(self) -> bool:
        return bool(self.experts and self.experts > 1)

    @property
    def active_b(self) -> float | None:
        return self.active_params_b or self.params_b

    @property
    def bytes_per_param(self) -> float:
        return BYTES_PER_PARAM.get(self.quantization, 2.0)

    @property
    def weight_gb(self) -> float | None:
        """What the GPUs must hold for the weights, GB."""
        if self.weights_gb is not None:
            return self.weights_gb
        return None if self.params_b is None else self.params_b * self.bytes_per_param
