"""Turn a constrained model answer (ChatResult) into a validated pydantic object, or a reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from persona_gen.engines.base import ChatRequest, ChatResult, Message, Sampling

M = TypeVar("M", bound=BaseModel)


def request_seed(persona_seed: Any) -> int | None:
    """Engines take 31-bit seeds; fold the persona's 63-bit seed into that range."""
    return None if persona_seed is None else int(persona_seed) % (2**31 - 1)


def persona_json_requests(batch: pa.Table, stage: str, messages: Callable[[dict], list[Message]],
                          answer: type[BaseModel], temperature: float,
                          max_tokens: int) -> list[ChatRequest]:
    """One JSON-schema request per persona row, seeded by the persona's own seed so a
    retried or resumed row samples the same way (where the engine honours seeds)."""
    schema = answer.model_json_schema()
    return [
        ChatRequest(
            id=f"{stage}:{row['persona_id']}:{row.get('attempt') or 0}",
            messages=messages(row),
            sampling=Sampling(temperature=temperature, max_tokens=max_tokens,
                              seed=request_seed(row.get("persona_seed"))),
            json_schema=schema,
        )
        for row in batch.to_pylist()
    ]


def _schema_problems(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
    )


def parse_structured(result: ChatResult, model: type[M]) -> tuple[M | None, str | None]:
    """(object, None) on success, else (None, a one-line reason). Never raises.

    Prefers the engine's parsed object; falls back to the text, since engines without a
    constrained decoder (HTTP, echo) may only return text.
    """
    if result.error is not None:
        return None, f"engine error: {result.error}"
    candidate = result.parsed[0] if result.parsed and result.parsed[0] is not None else None
    if candidate is None:
        text = result.text.strip()
        if not text:
            return None, "empty output"
        try:
            candidate = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"invalid JSON ({exc.msg} at char {exc.pos})"
    try:
        return model.model_validate(candidate), None
    except ValidationError as exc:
        return None, f"does not match schema ({_schema_problems(exc)})"
