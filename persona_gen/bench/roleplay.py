"""A model role-plays the persona and picks answer A or B: the model side of the human study.

It sees exactly what a human rater sees on a sheet (persona, question, answers A and B;
templates/bench_roleplay.jinja). Variants, as the bench's modes (PERSONA, arXiv 2407.17387,
role-plays with the full persona, a demographic summary and chain of thought):
`full`: the letter alone (output constrained to A or B); `summary`: first the facts about
the persona that matter for the question, then the letter; `cot`: reasoning, then the
letter. The two reasoning variants answer a JSON object whose `notes` come before `choice`,
so the choice is decoded after them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pyarrow as pa

from persona_gen.engines.base import ChatResult, Sampling
from persona_gen.pipeline.columns import with_columns
from persona_gen.pipeline.stage import DeclaredStage, OutputError

CHOICES = ["A", "B"]
Variant = Literal["full", "summary", "cot"]
VARIANTS: tuple[Variant, ...] = ("full", "summary", "cot")
NOTES_CHARS = 600
"""Cap on a reasoning variant's notes, so the choice after them fits in max_tokens."""
REASONING_MAX_TOKENS = 320
"""Token limit of the reasoning variants (the letter alone needs 4)."""


def notes_schema() -> dict[str, Any]:
    return {"type": "object",
            "properties": {"notes": {"type": "string", "maxLength": NOTES_CHARS},
                           "choice": {"type": "string", "enum": CHOICES}},
            "required": ["notes", "choice"], "additionalProperties": False}


@dataclass(frozen=True)
class RoleplayChoiceStage(DeclaredStage):
    """Input rows: sheet items (item_id, persona_text, question, answer_a, answer_b)."""

    sampling: Sampling = field(
        default_factory=lambda: Sampling(temperature=0.0, max_tokens=4, seed=0))
    model: str = ""
    """The role-playing model (each `bench roleplay --model` gets its own stage)."""
    variant: Variant = "full"
    """How it role-plays: the letter alone, or notes (summary / cot) first."""
    name: ClassVar[str] = "bench_roleplay"
    id_column: ClassVar[str] = "item_id"
    needs: ClassVar[tuple[str, ...]] = ("item_id", "persona_text", "question", "answer_a",
                                        "answer_b")
    variables: ClassVar[tuple[str, ...]] = ("persona", "question", "answer_a", "answer_b",
                                            "variant")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt", "original", "revision")
    outputs: ClassVar[pa.Schema] = pa.schema([("roleplay_model", pa.string()),
                                              ("roleplay_variant", pa.string()),
                                              ("roleplay_notes", pa.string()),
                                              ("choice", pa.string())])

    def choices(self) -> list[str] | None:
        return CHOICES if self.variant == "full" else None

    def json_schema(self) -> dict[str, Any] | None:
        return None if self.variant == "full" else notes_schema()

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"persona": row["persona_text"].strip(), "question": row["question"].strip(),
                "answer_a": row["answer_a"].strip(), "answer_b": row["answer_b"].strip(),
                "variant": self.variant}

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        out = {"roleplay_model": self.model, "roleplay_variant": self.variant,
               "roleplay_notes": None}
        if self.variant == "full":
            text = result.text.strip().upper()
            if text not in CHOICES:
                raise OutputError(f"role-player answered {result.text[:40]!r}, not A or B")
            return {**out, "choice": text}
        obj: Any = result.parsed[0] if result.parsed else None
        if obj is None:
            try:
                obj = json.loads(result.text)
            except (json.JSONDecodeError, TypeError):
                raise OutputError(f"role-player output is not JSON: {result.text[:60]!r}") from None
        choice = str(obj.get("choice", "")).strip().upper() if isinstance(obj, dict) else ""
        if choice not in CHOICES:
            raise OutputError(f"role-player chose {choice!r}, not A or B")
        return {**out, "roleplay_notes": str(obj.get("notes", "")), "choice": choice}

    def results(self, batch: pa.Table, results: list[ChatResult],
                retried: set[int] | None = None) -> pa.Table:
        out = super().results(batch, results, retried)
        # Agreement is computed per role-player over every item, failed ones included.
        return with_columns(out, {
            "roleplay_model": pa.array([self.model] * out.num_rows, pa.string()),
            "roleplay_variant": pa.array([self.variant] * out.num_rows, pa.string())})
