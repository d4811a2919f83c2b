"""The engine interface: a batch of chat requests in, one result per request out.

A failing request yields a result with `error` set; it never raises for the batch.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from persona_gen.config.base import StrictModel

M = TypeVar("M", bound=BaseModel)


class Message(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Sampling(StrictModel):
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    n: int = Field(default=1, ge=1)


class Thinking(StrictModel):
    """Whether a request lets a reasoning model think before it answers.

    Off by default: the paper's method (arXiv 2407.17387) has no reasoning step, and
    reasoning eats token limits sized for answers. A family that cannot stop reasoning
    (gpt-oss) reasons briefly when off; its reasoning is still kept out of the answer.
    Frozen: a stage (a frozen dataclass) holds one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    on: bool = False
    budget: int | None = Field(default=None, ge=1)
    """Most reasoning tokens per sample, where the family supports a budget (its model
    file's `reasoning.budget`); None: no limit but the request's max_tokens."""


class ChatRequest(StrictModel):
    id: str
    messages: list[Message]
    sampling: Sampling = Field(default_factory=Sampling)
    thinking: Thinking = Field(default_factory=Thinking)
    json_schema: dict[str, Any] | None = None
    """Constrain output to this JSON schema; results carry the parsed object."""
    choices: list[str] | None = None
    """Constrain output to exactly one of these strings."""


class ChatResult(StrictModel):
    id: str
    texts: list[str] = Field(default_factory=list)
    """One text per sample (n of them)."""
    parsed: list[Any] = Field(default_factory=list)
    """Parsed JSON per sample when a schema was asked for."""
    finish_reasons: list[str | None] = Field(default_factory=list)
    """Why each sample ended, as the engine says: 'stop', 'length' (cut at max_tokens), ..."""
    reasonings: list[str | None] = Field(default_factory=list)
    """Per sample, the reasoning the model wrote before its answer (None: none); `texts`
    then hold only the answers. Empty where the engine reports no reasoning at all."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    """Every generated token, reasoning included (as OpenAI's completion_tokens)."""
    reasoning_tokens: int = 0
    """The part of output_tokens that was reasoning, all samples and attempts together."""
    latency_s: float = 0.0
    error: str | None = None

    @property
    def finish_reason(self) -> str | None:
        """The first sample's finish reason (None where the engine does not say)."""
        return self.finish_reasons[0] if self.finish_reasons else None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    @property
    def reasoning(self) -> str | None:
        """The first sample's reasoning (None where it wrote none)."""
        return self.reasonings[0] if self.reasonings else None

    def parsed_as(self, model: type[M]) -> list[M]:
        """The parsed samples validated into `model` (raises if the row failed)."""
        if self.error is not None:
            raise ValueError(f"request {self.id} failed: {self.error}")
        return [model.model_validate(p) for p in self.parsed]


def prompt_too_long(prompt_tokens: int, max_model_len: int) -> str:
    """The row error every engine reports for a prompt that leaves no room to answer."""
    return f"prompt is {prompt_tokens} tokens, over the model's context of {max_model_len}"


@runtime_checkable
class Engine(Protocol):
    """What every engine provides. Engines are created once per actor and reused."""

    name: str

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncEngine(Protocol):
    """An engine that serves many calls at once from one event loop (vLLM's AsyncLLM, sim).

    Engine hosts (pipeline.engine_host) await `agenerate` for every block in flight, so
    requests from several blocks share the engine's running batch. Same results and
    per-row errors as `Engine.generate`.
    """

    name: str

    async def agenerate(self, requests: list[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...
