"""`StageSettings`: everything a config can say about one model stage, as one typed value.

A run's config holds one per stage under the stage's own name (`stages.critique`,
`stages.consistency`, ...) and a shared `stages.defaults`. Resolution, per field: the
stage's own value, else `stages.defaults`, else the stage's built-in default (declared with
the stage in the recipe), else the default below. Unset fields are None, so a config dumped
and read back (the manifest does) resolves the same way.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from persona_gen.config.base import StrictModel
from persona_gen.engines.base import Sampling, Thinking

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The bundled CPU model: every stage's model unless a config names another."""
SHARED = ("model", "temperature", "top_p", "max_tokens", "retry_max_tokens", "thinking",
          "thinking_budget")
"""The fields `stages.defaults` may set (a template, a switch or a sample count belong to
one stage)."""
BUILT_IN: dict[str, Any] = {"model": DEFAULT_MODEL, "enabled": True, "temperature": 0.7,
                            "top_p": 1.0, "max_tokens": 256, "n": 1, "thinking": "off"}


class StageSettings(StrictModel):
    model: str | None = None
    """Registry model (persona_gen/models/*.yaml or $PERSONA_GEN_MODELS_DIR) that runs it."""
    enabled: bool | None = None
    """False skips the stage; a stage reading its output reads its input instead."""
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    """Output cap per request."""
    retry_max_tokens: int | None = Field(default=None, ge=0)
    """A row cut at max_tokens is asked once more with this cap (default: twice max_tokens;
    0: no retry). Still cut after that: kept, `<stage>_finish_reason` = 'length'. Why
    twice: our choice (arXiv 2407.17387 states no limits); it bounds the extra cost at one
    more call."""
    n: int | None = Field(default=None, ge=1)
    """Samples per request; only stages that keep several samples accept more than 1."""
    thinking: Literal["off", "on"] | None = None
    """Whether a reasoning model may think before it answers (the model file says how its
    family does). Off by default: the paper's method (arXiv 2407.17387) has no reasoning
    step. With it on, the stage's text columns hold only the answer and the reasoning goes
    to `<stage>_reasoning`."""
    thinking_budget: int | None = Field(default=None, ge=1)
    """Most reasoning tokens per sample where the family supports a budget (added to
    max_tokens); None: the reasoning shares max_tokens with the answer."""
    template: str | dict[str, str] | None = None
    """Prompt template: a .jinja file, inline Jinja text, or {system, user}; default:
    persona_gen/templates/<stage>.jinja."""

    def sampling(self, seed: int | None) -> Sampling:
        """The request sampling of a resolved value (row seeds derive from `seed`)."""
        return Sampling(temperature=self.temperature, top_p=self.top_p,  # type: ignore[arg-type]
                        max_tokens=self.max_tokens, n=self.n, seed=seed)  # type: ignore[arg-type]

    def thinking_value(self) -> Thinking:
        """What a resolved value asks of a reasoning model, as requests carry it."""
        return Thinking(on=self.thinking == "on", budget=self.thinking_budget)

    def retry_limit(self) -> int | None:
        """Cap of the one retry for answers cut by length (None: no retry)."""
        if self.retry_max_tokens is None:
            return 2 * int(self.max_tokens or BUILT_IN["max_tokens"])
        return self.retry_max_tokens or None

    def resolve(self, defaults: StageSettings, built_in: dict[str, Any]) -> Self:
        """Every field filled: this stage's own, the shared defaults', the built-in ones."""
        data = {**BUILT_IN, **built_in}
        data.update({k: v for k, v in defaults.model_dump().items()
                     if k in SHARED and v is not None})
        data.update({k: v for k, v in self.model_dump().items() if v is not None})
        if data.get("retry_max_tokens") is None:
            data["retry_max_tokens"] = 2 * int(data["max_tokens"])
        return type(self).model_validate(data)


class SharedDefaults(StageSettings):
    """`stages.defaults`: only the fields every stage shares."""

    @model_validator(mode="after")
    def _shared_only(self) -> SharedDefaults:
        extra = sorted(k for k, v in self.model_dump().items() if k not in SHARED and v is not None)
        if extra:
            raise ValueError(f"{', '.join(extra)} cannot be shared; set it per stage "
                             f"(stages.defaults takes {', '.join(SHARED)})")
        return self
