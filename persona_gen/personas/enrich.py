"""Model stage 'enrich': one request per persona returns the six open-ended attributes.

The answer is a JSON object constrained by `enriched_attributes_model(...)`'s schema and
validated against the same pydantic model; a row whose answer fails gets an `error` and
null attributes, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import pyarrow as pa
from pydantic import Field, StringConstraints, create_model

from persona_gen.config.base import StrictModel
from persona_gen.engines.base import Sampling
from persona_gen.personas.attributes import LLM_ATTRIBUTES
from persona_gen.personas.render import render_persona
from persona_gen.personas.structured import PersonaJsonStage
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.template import PromptTemplate

# What each field asks for; shown in the prompt and carried as schema descriptions.
FIELD_GUIDE: dict[str, str] = {
    "detailed_job_description": (
        "what they do for a living, day to day (if not working: how their weekdays go)"
    ),
    "personal_time": "how they spend their free time",
    "lifestyle": "their routines, home life and habits",
    "ideology": "the beliefs about society and people that guide them",
    "political_views": "their political leaning and the issues they care about",
    "religion": "their faith, or lack of one, and how much it matters to them",
}
assert tuple(FIELD_GUIDE) == LLM_ATTRIBUTES



class EnrichSettings(StageSettings):
    field_max_chars: int = Field(default=240, ge=8)
    """Upper bound on each written attribute, put into the JSON schema so that a
    constrained decoder stops in time and the answer fits in max_tokens."""


@lru_cache(maxsize=8)
def enriched_attributes_model(max_chars: int) -> type[StrictModel]:
    """The answer's pydantic model: the six attributes, each 1..max_chars characters."""
    text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_chars)]
    fields: dict[str, Any] = {
        name: (text, Field(description=FIELD_GUIDE[name])) for name in LLM_ATTRIBUTES
    }
    return create_model("EnrichedAttributes", __base__=StrictModel, **fields)


@dataclass(frozen=True)
class EnrichStage(PersonaJsonStage):
    """ModelStage 'enrich': the six open-ended attributes of one persona."""

    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.8, max_tokens=400))
    max_chars: int = 240
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "enrich"
    needs: ClassVar[tuple[str, ...]] = ("persona_id", "attempt")
    """Plus the census and procedural attributes the persona text renders."""
    variables: ClassVar[tuple[str, ...]] = ("persona", "core_values", "categories", "fields")
    prompt_parts: ClassVar[tuple[str, ...]] = ("demographics",)
    outputs: ClassVar[pa.Schema] = pa.schema([(name, pa.string()) for name in LLM_ATTRIBUTES])
    settings_type: ClassVar[type[StageSettings]] = EnrichSettings

    @classmethod
    def build(cls, settings: StageSettings, template: PromptTemplate, seed: int) -> EnrichStage:
        assert isinstance(settings, EnrichSettings)
        return cls(sampling=settings.sampling(seed), retry_max_tokens=settings.retry_limit(),
                   template=template, max_chars=settings.field_max_chars)

    def answer_model(self) -> type[StrictModel]:
        return enriched_attributes_model(self.max_chars)

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        """The rendered facts, sampled values and focus areas of one persona."""
        return {"persona": render_persona(row), "core_values": row.get("core_values") or [],
                "categories": row.get("categories") or [], "fields": FIELD_GUIDE}

    def columns(self, answer: Any) -> dict[str, Any]:
        return {name: getattr(answer, name) for name in LLM_ATTRIBUTES}
