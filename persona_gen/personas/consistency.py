"""Model stage 'consistency': a judge decides whether a whole persona could be one person.

Constrained to `{"reason": str, "consistent": bool}`: the reason comes first, so the
verdict is decoded after (and conditioned on) the judge's reasoning rather than justified
after the fact. The reason has a length cap in the schema so the verdict always fits in
the stage's max_tokens; an answer cut anyway is retried once with its retry_max_tokens.
Unparseable answers become the row's `error` (the build sends those slots round again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import pyarrow as pa
from pydantic import Field, StringConstraints, create_model

from persona_gen.config.base import StrictModel
from persona_gen.engines.base import Sampling
from persona_gen.personas.render import render_persona
from persona_gen.personas.structured import PersonaJsonStage
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.template import PromptTemplate


class ConsistencySettings(StageSettings):
    reason_max_chars: int = Field(default=160, ge=8)
    """Cap on the judge's reason, in the schema, so the verdict always fits in max_tokens."""


@lru_cache(maxsize=8)
def verdict_model(max_chars: int) -> type[StrictModel]:
    reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_chars)]
    # Field order is the decoding order of a schema-constrained answer: reason, then verdict.
    fields: dict[str, Any] = {
        "reason": (reason, Field(description="the contradiction found, or why none")),
        "consistent": (bool, Field(description="true if one real person could fit all facts")),
    }
    return create_model("ConsistencyVerdict", __base__=StrictModel, **fields)


@dataclass(frozen=True)
class ConsistencyStage(PersonaJsonStage):
    """ModelStage 'consistency': could one real person have all of these attributes?"""

    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=96))
    reason_max_chars: int = 160
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "consistency"
    needs: ClassVar[tuple[str, ...]] = ("persona_id", "attempt")
    """Plus every attribute the persona text renders."""
    variables: ClassVar[tuple[str, ...]] = ("persona",)
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona",)
    outputs: ClassVar[pa.Schema] = pa.schema([("consistent", pa.bool_()),
                                              ("judge_reason", pa.string())])
    settings_type: ClassVar[type[StageSettings]] = ConsistencySettings

    @classmethod
    def build(cls, settings: StageSettings, template: PromptTemplate, seed: int) -> ConsistencyStage:
        assert isinstance(settings, ConsistencySettings)
        return cls(sampling=settings.sampling(seed), retry_max_tokens=settings.retry_limit(),
                   template=template, reason_max_chars=settings.reason_max_chars)

    def answer_model(self) -> type[StrictModel]:
        return verdict_model(self.reason_max_chars)

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"persona": render_persona(row)}

    def columns(self, answer: Any) -> dict[str, Any]:
        return {"consistent": answer.consistent, "judge_reason": answer.reason}
