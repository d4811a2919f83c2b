"""Model stage 'consistency': a judge decides whether a whole persona could be one person.

Constrained to `{"consistent": bool, "reason": str}`; `consistent` comes first so a
truncated reason cannot hide the verdict from a lenient parser. Unparseable answers
become the row's `error` (the build treats them as not verified).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import pyarrow as pa
from pydantic import Field, StringConstraints, create_model

from persona_gen.config.base import StrictModel
from persona_gen.engines.base import ChatRequest, ChatResult, Message
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.render import render_persona
from persona_gen.personas.structured import parse_structured, persona_json_requests
from persona_gen.personas.tables import with_columns

SYSTEM_PROMPT = (
    "You check fictional personas for contradictions. Reply with one JSON object and "
    "nothing else."
)
INSTRUCTIONS = (
    "Could one real person have all of these attributes at the same time? Look for facts "
    "that contradict each other, such as a 15-year-old earning $250,000 a year or a "
    "25-year-old described as retired after a long career. Unusual is fine; contradictory "
    "or impossible is not.\n"
    'Answer with "consistent" (true or false) and a one-sentence "reason".'
)


@lru_cache(maxsize=8)
def verdict_model(max_chars: int) -> type[StrictModel]:
    reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_chars)]
    fields: dict[str, Any] = {
        "consistent": (bool, Field(description="true if one real person could fit all facts")),
        "reason": (reason, Field(description="the contradiction found, or why none")),
    }
    return create_model("ConsistencyVerdict", __base__=StrictModel, **fields)


def judge_messages(row: dict[str, Any]) -> list[Message]:
    return [
        Message(role="system", content=SYSTEM_PROMPT),
        Message(role="user", content=f"Persona:\n{render_persona(row)}\n\n{INSTRUCTIONS}"),
    ]


@dataclass(frozen=True)
class JudgeStage:
    """ModelStage 'consistency' (persona_gen.pipeline.stage); picklable for Ray actors."""

    max_tokens: int = 96
    temperature: float = 0.0
    reason_max_chars: int = 160
    name: str = "consistency"

    @classmethod
    def from_config(cls, cfg: PersonasConfig) -> JudgeStage:
        return cls(
            max_tokens=cfg.judge_max_tokens,
            temperature=cfg.judge_temperature,
            reason_max_chars=cfg.judge_reason_max_chars,
        )

    @property
    def answer_model(self) -> type[StrictModel]:
        return verdict_model(self.reason_max_chars)

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        return persona_json_requests(batch, self.name, judge_messages, self.answer_model,
                                     self.temperature, self.max_tokens)

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        consistent: list[bool | None] = []
        reasons: list[str | None] = []
        errors: list[str | None] = []
        for result in results:
            verdict, problem = parse_structured(result, self.answer_model)
            consistent.append(None if verdict is None else verdict.consistent)
            reasons.append(None if verdict is None else verdict.reason)
            errors.append(None if problem is None else f"consistency: {problem}")
        return with_columns(batch, {
            "consistent": pa.array(consistent, type=pa.bool_()),
            "judge_reason": pa.array(reasons, type=pa.string()),
            "error": pa.array(errors, type=pa.string()),
        })
