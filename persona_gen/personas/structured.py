"""Turn a constrained model answer (ChatResult) into a validated pydantic object, or a reason."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from persona_gen.engines.base import ChatResult
from persona_gen.pipeline.stage import DeclaredStage, OutputError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PersonaJsonStage(DeclaredStage):
    """A stage that answers one JSON object per persona attempt, validated by pydantic.

    Rows are persona slots; a slot retried in a later round (a new `attempt`) is another
    row, so its request id and seed differ from the first try's.
    """

    id_column: ClassVar[str] = "persona_id"

    def row_key(self, row: dict[str, Any]) -> str:
        return f"{self.name}:{row['persona_id']}:{row.get('attempt') or 0}"

    def answer_model(self) -> type[BaseModel]:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        return self.answer_model().model_json_schema()

    def columns(self, answer: Any) -> dict[str, Any]:
        """The output columns of one validated answer."""
        raise NotImplementedError

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        answer, problem = parse_structured(result, self.answer_model())
        if answer is None:
            raise OutputError(problem or "no answer")
        return self.columns(answer)


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
