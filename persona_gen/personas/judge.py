"""Model stage 'consistency': a judge decides whether a whole persona could be one person.

Constrained to `{"reason": str, "consistent": bool}`: the reason comes first, so the
verdict is decoded after (and conditioned on) the judge's reasoning rather than justified
after the fact. The reason has a length cap in the schema so the verdict always fits in
judge_max_tokens; an answer cut anyway is retried once with judge_retry_max_tokens.
Unparseable answers become the row's `error` (the build sends those slots round again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import pyarrow as pa
from pydantic import Field, StringConstraints, create_model

from persona_gen.config.base import StrictModel
from persona_gen.engines.base import Message, Sampling
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.render import render_persona
from persona_gen.personas.structured import PersonaJsonStage

SYSTEM_PROMPT = (
    "You check fictional personas for contradictions. Reply with one JSON object and "
    "nothing else."
)
INSTRUCTIONS = (
    "Could one real person have all of these attributes at the same time? Look for facts "
    "that contradict each other, such as a 15-year-old earning $250,000 a year or a "
    "25-year-old described as retired after a long career. Unusual is fine; contradictory "
    "or impossible is not.\n"
    'Answer with a one-sentence "reason" first, then "consistent" (true or false).'
)


@lru_cache(maxsize=8)
def verdict_model(max_chars: int) -> type[StrictModel]:
    reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_chars)]
    # Field order is the decoding order of a schema-constrained answer: reason, then verdict.
    fields: dict[str, Any] = {
        "reason": (reason, Field(description="the contradiction found, or why none")),
        "consistent": (bool, Field(description="true if one real person could fit all facts")),
    }
    return create_model("ConsistencyVerdict", __base__=StrictModel, **fields)


def judge_messages(row: dict[str, Any]) -> list[Message]:
    return [
        Message(role="system", content=SYSTEM_PROMPT),
        Message(role="user", content=f"Persona:\n{render_persona(row)}\n\n{INSTRUCTIONS}"),
    ]


@dataclass(frozen=True)
class JudgeStage(PersonaJsonStage):
    """ModelStage 'consistency': could one real person have all of these attributes?"""

    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=96))
    reason_max_chars: int = 160
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "consistency"
    needs: ClassVar[tuple[str, ...]] = ("persona_id", "attempt")
    """Plus every attribute the persona text renders."""
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona",)
    outputs: ClassVar[pa.Schema] = pa.schema([("consistent", pa.bool_()),
                                              ("judge_reason", pa.string())])

    @classmethod
    def from_config(cls, cfg: PersonasConfig, seed: int | None = 0) -> JudgeStage:
        return cls(sampling=Sampling(temperature=cfg.judge_temperature,
                                     max_tokens=cfg.judge_max_tokens, seed=seed),
                   reason_max_chars=cfg.judge_reason_max_chars,
                   retry_max_tokens=cfg.judge_retry_max_tokens or None)

    def answer_model(self) -> type[StrictModel]:
        return verdict_model(self.reason_max_chars)

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return judge_messages(row)

    def columns(self, answer: Any) -> dict[str, Any]:
        return {"consistent": answer.consistent, "judge_reason": answer.reason}
