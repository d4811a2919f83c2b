"""Turn a constrained model answer (ChatResult) into a validated pydantic object, or a reason."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from persona_gen.engines.base import ChatResult

M = TypeVar("M", bound=BaseModel)


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
