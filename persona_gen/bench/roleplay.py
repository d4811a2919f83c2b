"""A model role-plays the persona and picks answer A or B: the model side of the human study.

It sees exactly what a human rater sees on a sheet (persona, question, answers A and B;
templates/bench_roleplay.jinja) and its output is constrained to the two letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from persona_gen.engines.base import ChatResult, Sampling
from persona_gen.pipeline.columns import with_columns
from persona_gen.pipeline.stage import DeclaredStage, OutputError

CHOICES = ["A", "B"]


@dataclass(frozen=True)
class RoleplayChoiceStage(DeclaredStage):
    """Input rows: sheet items (item_id, persona_text, question, answer_a, answer_b)."""

    sampling: Sampling = field(
        default_factory=lambda: Sampling(temperature=0.0, max_tokens=4, seed=0))
    model: str = ""
    """The role-playing model (each `bench roleplay --model` gets its own stage)."""
    name: ClassVar[str] = "bench_roleplay"
    id_column: ClassVar[str] = "item_id"
    needs: ClassVar[tuple[str, ...]] = ("item_id", "persona_text", "question", "answer_a",
                                        "answer_b")
    variables: ClassVar[tuple[str, ...]] = ("persona", "question", "answer_a", "answer_b")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt", "original", "revision")
    outputs: ClassVar[pa.Schema] = pa.schema([("roleplay_model", pa.string()),
                                              ("choice", pa.string())])

    def choices(self) -> list[str]:
        return CHOICES

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"persona": row["persona_text"].strip(), "question": row["question"].strip(),
                "answer_a": row["answer_a"].strip(), "answer_b": row["answer_b"].strip()}

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        text = result.text.strip().upper()
        if text not in CHOICES:
            raise OutputError(f"role-player answered {result.text[:40]!r}, not A or B")
        return {"roleplay_model": self.model, "choice": text}

    def results(self, batch: pa.Table, results: list[ChatResult],
                retried: set[int] | None = None) -> pa.Table:
        out = super().results(batch, results, retried)
        # Agreement is computed per role-player over every item, failed ones included.
        return with_columns(out, {"roleplay_model": pa.array([self.model] * out.num_rows,
                                                             pa.string())})
