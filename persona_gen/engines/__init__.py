"""Engines: one interface for every language-model call (vLLM, HTTP, no-model echo).

`create_engine(name)` builds the engine a model's YAML asks for; vLLM is imported only
when a vLLM engine is created.
"""

from persona_gen.engines.base import ChatRequest, ChatResult, Engine, Message, Sampling, Thinking
from persona_gen.engines.factory import create_engine
from persona_gen.engines.registry import ModelSpec, get_spec

__all__ = ["ChatRequest", "ChatResult", "Engine", "Message", "ModelSpec", "Sampling",
           "Thinking", "create_engine", "get_spec"]
