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
from persona_gen.engines.base import Message, Sampling
from persona_gen.personas.attributes import LLM_ATTRIBUTES
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.lists import ITEM_SEPARATOR
from persona_gen.personas.render import render_persona
from persona_gen.personas.structured import PersonaJsonStage

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

SYSTEM_PROMPT = (
    "You invent realistic details for a fictional person built from US census records. "
    "Reply with one JSON object and nothing else. Each value is one or two short, plain "
    "sentences that agree with every fact you are given."
)


@lru_cache(maxsize=8)
def enriched_attributes_model(max_chars: int) -> type[StrictModel]:
    """The answer's pydantic model: the six attributes, each 1..max_chars characters."""
    text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_chars)]
    fields: dict[str, Any] = {
        name: (text, Field(description=FIELD_GUIDE[name])) for name in LLM_ATTRIBUTES
    }
    return create_model("EnrichedAttributes", __base__=StrictModel, **fields)


def enrich_messages(row: dict[str, Any]) -> list[Message]:
    """The prompt for one persona: its rendered facts, sampled values and focus areas."""
    lines = ["Facts about the person:", render_persona(row)]
    if row.get("core_values"):
        lines.append(f"core values: {ITEM_SEPARATOR.join(row['core_values'])}")
    if row.get("categories"):
        lines.append(f"\nParts of life to bring out: {', '.join(row['categories'])}.")
    lines.append("\nWrite these fields as JSON:")
    lines += [f"- {name}: {guide}" for name, guide in FIELD_GUIDE.items()]
    return [
        Message(role="system", content=SYSTEM_PROMPT),
        Message(role="user", content="\n".join(lines)),
    ]


@dataclass(frozen=True)
class EnrichStage(PersonaJsonStage):
    """ModelStage 'enrich': the six open-ended attributes of one persona."""

    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.8, max_tokens=400))
    max_chars: int = 240
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "enrich"
    needs: ClassVar[tuple[str, ...]] = ("persona_id", "attempt")
    """Plus the census and procedural attributes the persona text renders."""
    prompt_parts: ClassVar[tuple[str, ...]] = ("demographics",)
    outputs: ClassVar[pa.Schema] = pa.schema([(name, pa.string()) for name in LLM_ATTRIBUTES])

    @classmethod
    def from_config(cls, cfg: PersonasConfig, seed: int | None = 0) -> EnrichStage:
        return cls(sampling=Sampling(temperature=cfg.enrich_temperature,
                                     max_tokens=cfg.enrich_max_tokens, seed=seed),
                   max_chars=cfg.enrich_field_max_chars,
                   retry_max_tokens=cfg.enrich_retry_max_tokens or None)

    def answer_model(self) -> type[StrictModel]:
        return enriched_attributes_model(self.max_chars)

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return enrich_messages(row)

    def columns(self, answer: Any) -> dict[str, Any]:
        return {name: getattr(answer, name) for name in LLM_ATTRIBUTES}
