"""`create_engine`: a model name (or spec) in, a ready Engine out.

Engine modules are imported here, on demand, so that importing persona_gen never imports
vLLM (seconds of start-up, and absent where only the HTTP or echo engines are used).
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from persona_gen.config.loader import format_validation_error
from persona_gen.engines.base import AsyncEngine, Engine
from persona_gen.engines.registry import ModelSpec, get_spec
from persona_gen.errors import ConfigError
from persona_gen.storage.settings import S3Settings


def resolve_spec(model: str | ModelSpec, **overrides: Any) -> ModelSpec:
    """The registry spec for `model` with `overrides` applied to its fields (validated)."""
    spec = get_spec(model) if isinstance(model, str) else model
    if overrides:
        source = f"model '{spec.name}' (with overrides)"
        try:
            spec = ModelSpec.model_validate({**spec.model_dump(exclude_unset=True), **overrides})
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, source)) from None
        spec.check(source)
    else:
        spec.check(f"model '{spec.name}'")
    return spec


def create_engine(model: str | ModelSpec, *, seed: int = 0, **overrides: Any) -> Engine:
    """Build the engine a model's spec asks for.

    `overrides` replace spec fields for this engine only (e.g. max_model_len=512);
    `seed` seeds the vLLM engine (requests carry their own sampling seeds).
    """
    spec = resolve_spec(model, **overrides)
    if spec.engine == "sim":
        raise ConfigError(f"model '{spec.name}' (engine 'sim') runs only behind an engine host "
                          "(the pipeline); it simulates time, not text")
    if spec.engine == "echo":
        from persona_gen.engines.echo import EchoEngine

        return EchoEngine(spec)
    if spec.engine == "openai":
        from persona_gen.engines.openai_http import OpenAIEngine

        return OpenAIEngine(spec)
    if spec.engine == "custom":
        return custom_engine(spec, seed)
    from persona_gen.engines.vllm_engine import VLLMEngine

    return VLLMEngine(spec, seed=seed)


def custom_engine(spec: ModelSpec, seed: int) -> Any:
    """An engine of the class a model file names (`engine_class: module:Class`), built with
    the spec, the seed and the file's `engine_options`."""
    assert spec.engine_class is not None  # guaranteed by ModelSpec.check
    module, _, name = spec.engine_class.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import '{spec.engine_class}': {exc}",
                          source=f"model '{spec.name}': engine_class") from None
    return cls(spec, seed=seed, **spec.engine_options)


def create_async_engine(model: str | ModelSpec, *, seed: int = 0, s3: S3Settings | None = None,
                        gpu_class: str | None = None, **overrides: Any) -> Engine | AsyncEngine:
    """The engine an engine host serves: async where the engine has an async form.

    vLLM gets its async engine (AsyncLLM) and `sim` is async by nature; echo and HTTP keep
    their synchronous engines, which the host runs in threads. Call from the event loop
    that will drive the engine. `s3`: the run's storage settings, for s3:// weights;
    `gpu_class`: the engine's GPU class where the host knows it (else vLLM's engine
    detects it).
    """
    spec = resolve_spec(model, **overrides)
    if spec.engine == "vllm":
        from persona_gen.engines.vllm_engine import AsyncVLLMEngine

        return AsyncVLLMEngine(spec, seed=seed, s3=s3, gpu_class=gpu_class)
    if spec.engine == "sim":
        from persona_gen.engines.sim import SimEngine

        return SimEngine(spec, seed=seed)
    return create_engine(spec, seed=seed)
