"""The model registry: one YAML file per model, shipped in persona_gen/models/ plus a user folder.

Adding a model family is adding one file. A user folder (env PERSONA_GEN_MODELS_DIR) is read
after the shipped one and may replace a shipped model by using the same name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from persona_gen.config.base import StrictModel
from persona_gen.config.loader import read_yaml, validate_model
from persona_gen.engines.base import Sampling
from persona_gen.engines.checkpoint import Checkpoint
from persona_gen.engines.reasoning import ReasoningSpec
from persona_gen.engines.settings import Architecture, gpu_class_named
from persona_gen.errors import ConfigError

MODELS_DIR_ENV = "PERSONA_GEN_MODELS_DIR"
EngineKind = Literal["vllm", "openai", "echo", "sim", "custom"]


class SimSpec(StrictModel):
    """A continuous-batching server in time only (engine 'sim', persona_gen.engines.sim).

    It runs with the engine settings the real engine would get for `model` on `gpu_class`
    (persona_gen.engines.settings: max_num_seqs, and the KV-cache capacity in tokens that
    bounds how many sequences fit at once), so it never assumes a batch the real engine
    would not run. A decode step takes `step_ms + step_ms_per_seq x running +
    step_ms_per_1k_context x context tokens / 1000`: the weights' read, then every running
    sequence's KV cache. Defaults: Llama 3.1 8B in bf16 on one H100 with vLLM, on the same
    calibration as the cost plan's roofline (persona_gen.cost.derive): 16.06 GB of weights and
    128 KiB of KV a token at 3.35 TB/s x 0.563 (the efficiency that matches the measured
    8,088 output tokens/s at 256 sequences of 1,300 tokens) give 8.52 ms a step plus
    0.0695 ms per 1,000 context tokens. Output lengths are lognormal (median 220, capped at
    the request's max_tokens and `max_len`), drawn from a seed and the request id.
    """

    model: str | None = None
    """The model file whose engine settings the sim runs with (None: the sim's own file)."""
    gpu_class: str = "H100"
    step_ms: float = Field(default=8.52, gt=0)
    step_ms_per_seq: float = Field(default=0.0, ge=0)
    step_ms_per_1k_context: float = Field(default=0.0695, ge=0)
    median_len: float = Field(default=220.0, gt=0)
    sigma: float = Field(default=0.6, ge=0)
    """Spread of log(output length)."""
    max_len: int = Field(default=512, ge=1)
    time_scale: float = Field(default=1.0, gt=0)
    """Wall seconds per simulated second: 0.01 runs a 100x faster rehearsal."""

    @field_validator("gpu_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        return gpu_class_named(value)


class ModelSpec(StrictModel):
    """One model: which engine runs it, where its weights come from, how it is laid out."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    engine: EngineKind
    description: str = ""
    source: str | None = None
    """vllm: a Hugging Face id, a local folder, an s3:// folder or bundled:<name>."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_model_len: int = Field(default=4096, ge=32)
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    accelerator_type: str | None = None
    """Ray accelerator type the engine's GPUs must be (e.g. H100, A10G); None: any. Wins
    over pipeline.accelerator_type."""
    chat_template: str | None = None
    """Override the tokenizer's chat template: Jinja text, or a path to a .jinja file."""
    system_role: bool = True
    """False for templates that reject a system message (Gemma): it is merged into the first user turn."""
    runs_on: list[Literal["cpu", "gpu"]] = Field(default_factory=lambda: ["gpu"])
    """Where loading the model makes sense; `models check` skips the load elsewhere."""
    sampling: Sampling = Field(default_factory=Sampling)
    """Defaults for the sampling fields a request leaves unset."""
    classifier_instruction: Literal["controversial", "debatable"] = "controversial"
    """Wording of the prompt classifier (persona_gen.prompts.classify) for this family."""
    json_retries: int = Field(default=2, ge=0)
    """Extra attempts for samples whose output fails JSON parsing or the schema."""
    enforce_eager: bool | None = None
    """None: eager on CPU (no graph capture there), compiled on GPU."""
    kv_cache_gib: int = Field(default=1, ge=1)
    """CPU only: KV cache size (VLLM_CPU_KVCACHE_SPACE) unless that variable is already set."""
    trust_remote_code: bool = False
    vllm_args: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for vllm.LLM (e.g. quantization), for families that need them."""
    # ---- engine settings (persona_gen.engines.settings): explicit, resolved once per host --
    max_num_seqs: int | None = Field(default=None, ge=1)
    """Sequences the engine runs at once; None: the GPU class's default (H100, H200: 1,024;
    A100, L40S, A10G, L4: 256; CPU: 256), at least what vLLM's offline LLM class gets."""
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    """Tokens one engine step may schedule; None: the GPU class's default (H100, H200:
    16,384; other GPUs: 8,192; CPU: 4,096)."""
    enable_prefix_caching: bool = True
    """The persona text leads many requests of a stage: its KV cache is computed once."""
    enable_chunked_prefill: bool = True
    tokenizer_mode: Literal["auto", "hf", "slow", "mistral"] = "auto"
    """vLLM's tokenizer choice. 'hf' for Mistral repos with a Hugging Face tokenizer: vLLM's
    'auto' picks mistral_common's tokenizer there, which encodes [INST] markup in rendered
    chat text as plain text. 'mistral': mistral_common's tokenizer builds the chat prompt
    itself from the messages (Mistral Small 3.x, whose card asks for it)."""
    architecture: Architecture | None = None
    """The model's shape (config.json): sizes the KV-cache estimate that sim and the cost plan
    use, and the start timeout."""
    engine_class: str | None = None
    """engine 'custom': 'module:Class' of an engine (Engine or AsyncEngine) built from the
    spec, e.g. a fault-injecting engine in tests."""
    engine_options: dict[str, Any] = Field(default_factory=dict)
    """engine 'custom': keyword arguments for its class."""
    sim: SimSpec | None = None
    """engine 'sim': the simulated server's timing (defaults: an 8B model on one H100)."""
    # ---- model family: reasoning, checkpoint, layout (docs/models.md) ------------------------
    reasoning: ReasoningSpec = Field(default_factory=ReasoningSpec)
    """How the family reasons and how thinking is switched (persona_gen.engines.reasoning)."""
    checkpoint: Checkpoint | None = None
    """What the weights are: parameters (total and active), experts, precision, size on
    disk. The cost plan sizes memory and throughput from it; `models add` writes it."""
    expert_parallel: bool = False
    """MoE: spread experts over the engine's GPUs instead of slicing every expert
    (vLLM's enable_expert_parallel); attention stays tensor-parallel."""
    verified_on_cpu: bool = False
    """A tiny random-weight checkpoint of this architecture and chat template loads and
    answers in vllm-cpu (tests/test_families.py); False: nothing of it ran here."""
    # ---- a LoRA adapter served on top of `source` (vLLM's LoRA support) ---------------------
    lora_adapter: str | None = None
    """A PEFT LoRA adapter folder (local, s3:// or a Hugging Face id) for the base in
    `source`: vLLM loads the base with LoRA enabled and applies the adapter to every request."""
    max_lora_rank: int = Field(default=16, ge=1)
    """vLLM's max_lora_rank: at least the adapter's rank `r` (`bench run --model` reads it
    from adapter_config.json)."""
    # OpenAI-compatible HTTP engine.
    base_url: str | None = None
    model: str | None = None
    """Model name sent to the server; defaults to `name`."""
    api_key_env: str | None = None
    """Environment variable holding the API key (the key itself never lives in YAML)."""
    concurrency: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    """Retries after a 429, a 5xx, a timeout or a dropped connection."""
    backoff_s: float = Field(default=1.0, ge=0)
    """First retry delay; doubles per retry (a server's Retry-After wins when given)."""

    @field_validator("vllm_args")
    @classmethod
    def _no_shadowing(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = {"model", "tokenizer", "dtype", "max_model_len", "tensor_parallel_size",
                 "gpu_memory_utilization", "enable_prefix_caching", "seed", "enforce_eager",
                 "trust_remote_code", "chat_template", "tokenizer_mode",
                 "enable_expert_parallel", "reasoning_parser", "max_num_seqs",
                 "max_num_batched_tokens", "enable_chunked_prefill"}
        clash = sorted(owned & set(value))
        if clash:
            raise ValueError(f"set {', '.join(clash)} as top-level keys, not in vllm_args")
        return value

    @model_validator(mode="after")
    def _shape_from_checkpoint(self) -> ModelSpec:
        # One shape for every estimate: a file with a checkpoint block (today's families,
        # `models add`) needs no separate architecture block.
        if self.architecture is None and self.checkpoint is not None:
            shape = self.checkpoint.shape(self.source or self.name)
            if shape is not None:
                object.__setattr__(self, "architecture", shape)
        return self

    def problem(self) -> tuple[str, str] | None:
        """A cross-field problem as (dotted field, message), or None.

        Kept out of pydantic validators so the message names the field, not the root.
        """
        if self.engine == "vllm" and not self.source:
            return "source", "engine 'vllm' needs a source (HF id, folder, s3:// or bundled:NAME)"
        if self.engine == "openai" and not self.base_url:
            return "base_url", "engine 'openai' needs a base_url"
        if self.lora_adapter and self.engine != "vllm":
            return "lora_adapter", "a LoRA adapter needs engine 'vllm'"
        found = self.reasoning.problem()
        if found is not None:
            return f"reasoning.{found[0]}", found[1]
        if self.engine == "custom" and not self.engine_class:
            return "engine_class", "engine 'custom' needs an engine_class ('module:Class')"
        if "max_tokens" in self.sampling.model_fields_set and (
            self.sampling.max_tokens >= self.max_model_len
        ):
            return "sampling.max_tokens", f"must be below max_model_len ({self.max_model_len})"
        return None

    def check(self, source: str) -> ModelSpec:
        """Raise ConfigError naming `source` and the field if a cross-field rule is broken."""
        found = self.problem()
        if found is not None:
            raise ConfigError(f"'{found[0]}': {found[1]}", source=source)
        return self

    @property
    def served_model(self) -> str:
        return self.model or self.name

    @property
    def is_bundled(self) -> bool:
        return bool(self.source and self.source.startswith("bundled:"))


@dataclass(frozen=True)
class RegisteredModel:
    spec: ModelSpec
    path: str
    """The YAML file it came from (for messages and `models list`)."""


def shipped_dir() -> Path:
    return Path(str(resources.files("persona_gen.models")))


def user_dir() -> Path | None:
    value = os.environ.get(MODELS_DIR_ENV)
    return Path(value).expanduser() if value else None


def load_spec(path: str | Path) -> ModelSpec:
    """Read one model YAML; a problem raises ConfigError naming the file and the dotted field."""
    path = Path(path)
    data = read_yaml(path)
    spec = validate_model(ModelSpec, data, str(path)).check(str(path))
    if spec.name != path.stem:
        raise ConfigError(f"'name': '{spec.name}' must match the file name '{path.stem}'",
                          source=str(path))
    return spec


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def discover() -> dict[str, RegisteredModel]:
    """Every model, shipped first, then the user folder (which may replace a shipped name)."""
    found: dict[str, RegisteredModel] = {}
    folders = [shipped_dir()]
    extra = user_dir()
    if extra is not None:
        if not extra.is_dir():
            raise ConfigError("not a folder", source=f"{MODELS_DIR_ENV}={extra}")
        folders.append(extra)
    for folder in folders:
        seen_here: dict[str, Path] = {}
        for path in _yaml_files(folder):
            spec = load_spec(path)
            if spec.name in seen_here:
                raise ConfigError(f"'name': '{spec.name}' is also defined in {seen_here[spec.name]}",
                                  source=str(path))
            seen_here[spec.name] = path
            found[spec.name] = RegisteredModel(spec, str(path))
    return found


def get_spec(name: str) -> ModelSpec:
    """The spec for a model name; unknown names list what exists."""
    models = discover()
    if name in models:
        return models[name].spec
    # A path to a YAML file works too, for a one-off model outside both folders.
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_spec(candidate)
    known = ", ".join(sorted(models))
    raise ConfigError(f"unknown model '{name}' (known: {known}; add a YAML file to "
                      f"persona_gen/models/ or ${MODELS_DIR_ENV})")
