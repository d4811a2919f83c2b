"""The throughput table (data/throughput.yaml): GPUs and per-replica token rates; the models'
shapes come from their model files (`architecture`, persona_gen/models/*.yaml), the same
figures the engines' KV-cache estimate reads.

Every figure carries its source. Lookups fail with one-line UserErrors that list what is known.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from persona_gen.config.base import StrictModel
from persona_gen.config.loader import load_yaml_model
from persona_gen.engines.settings import Architecture
from persona_gen.errors import ConfigError, UserError

TABLE_PATH = Path(__file__).parent / "data" / "throughput.yaml"


class GpuSpec(StrictModel):
    memory_gb: float = Field(gt=0)
    bandwidth_gb_s: float = Field(gt=0)
    """Peak memory bandwidth, GB/s (decimal)."""
    bf16_dense_tflops: float = Field(gt=0)
    """Peak dense (no 2:4 sparsity) BF16/FP16 tensor throughput."""
    instances: list[str] = []
    """Cloud instance types that carry this GPU (for the guide; not used in the math)."""
    source: str = Field(min_length=10)


class Derivation(StrictModel):
    """Assumptions behind every `basis: derived` figure (see persona_gen/cost/derive.py)."""

    bytes_per_param: float = 2.0
    memory_utilization: float = 0.9
    max_weight_share: float = 0.8
    seq_tokens: int = 1300
    anchor_max_num_seqs: int = 256
    """The running-sequence cap the measured anchors ran with (every row's figure is at
    this cap; the plan rescales it to the engine's resolved settings)."""
    prefill_mfu: float = 0.4
    max_gpus_per_replica: int = 8
    anchor_single: str
    """`model@GPU` of the measured one-GPU figure that calibrates one-GPU estimates."""
    anchor_parallel: str
    """`model@GPU` of the measured tensor-parallel figure that calibrates multi-GPU estimates."""


class ThroughputEntry(StrictModel):
    model: str
    gpu: str
    gpus_per_replica: int = Field(ge=1)
    """GPUs one engine spans (tensor parallelism); a cluster runs count // this many engines."""
    output_tok_s: float = Field(gt=0)
    """Generated tokens per second for one replica under full batching."""
    prefill_tok_s: float = Field(gt=0)
    """Prompt tokens per second for one replica (compute-bound)."""
    basis: Literal["measured", "derived"]
    source: str = Field(min_length=10)


class ThroughputTable(StrictModel):
    derivation: Derivation
    gpus: dict[str, GpuSpec]
    models: dict[str, Architecture] = {}
    """Filled from the model registry by load_table (each model file's `architecture`)."""
    no_gpu_models: list[str] = []
    """Engines that call no model (the echo test engine): zero GPU time."""
    entries: list[ThroughputEntry]

    @model_validator(mode="after")
    def _consistent(self) -> ThroughputTable:
        seen: set[tuple[str, str]] = set()
        for e in self.entries:
            if e.gpu not in self.gpus:
                raise ValueError(f"entry {e.model}@{e.gpu}: GPU not in gpus")
            if (e.model, e.gpu) in seen:
                raise ValueError(f"entry {e.model}@{e.gpu} appears twice")
            seen.add((e.model, e.gpu))
        return self

    def gpu(self, name: str) -> tuple[str, GpuSpec]:
        """Case-insensitive GPU lookup -> (canonical name, spec)."""
        for key, spec in self.gpus.items():
            if key.lower() == name.lower():
                return key, spec
        raise UserError(f"unknown GPU type '{name}'; known: {', '.join(sorted(self.gpus))}",
                        source="--cluster")

    def entry(self, model: str, gpu: str, *, field: str) -> ThroughputEntry:
        """The figure for `model` on `gpu`; `field` names the config key for the message."""
        if model not in self.models:
            known = ", ".join(sorted([*self.models, *self.no_gpu_models]))
            raise UserError(f"unknown model '{model}': no throughput figures; known: {known}",
                            source=field)
        for e in self.entries:
            if e.model == model and e.gpu == gpu:
                return e
        fits = sorted(e.gpu for e in self.entries if e.model == model)
        raise UserError(
            f"no throughput figure for '{model}' on {gpu} (it does not fit in "
            f"{self.derivation.max_gpus_per_replica} of them); GPUs with figures: {', '.join(fits)}",
            source=field,
        )


def load_table(path: Path | str | None = None) -> ThroughputTable:
    """The table, with every registered model's architecture (read afresh: the registry
    includes $PERSONA_GEN_MODELS_DIR)."""
    from persona_gen.engines.registry import discover

    table = _load(str(path or TABLE_PATH))
    models = {name: m.spec.architecture for name, m in discover().items()
              if m.spec.architecture is not None}
    for e in table.entries:
        if e.model not in models:
            raise ConfigError(f"entry {e.model}@{e.gpu}: no model file with an 'architecture' "
                              f"for '{e.model}' (persona_gen/models/)", source=str(path or TABLE_PATH))
    return table.model_copy(update={"models": models})


@cache
def _load(path: str) -> ThroughputTable:
    return load_yaml_model(ThroughputTable, path)
