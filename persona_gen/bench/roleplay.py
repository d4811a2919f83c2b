"""A model role-plays the persona and picks answer A or B: the model side of the human study.

It sees exactly what a human rater sees on a sheet (persona, question, answers A and B)
and its output is constrained to the two letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from persona_gen.engines.base import ChatResult, Message, Sampling
from persona_gen.pipeline.columns import with_columns
from persona_gen.pipeline.stage import DeclaredStage, OutputError

CHOICES = ["A", "B"]

ROLEPLAY_SYSTEM = (
    "You are the person described below. Answer as they would, from their background, "
    "values and circumstances.\n\nAbout you:\n{persona}"
)
ROLEPLAY_USER = (
    "You asked: {question}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\n"
    "Which of the two answers would you rather receive? Reply with the letter only."
)


def roleplay_messages(persona_text: str, question: str, a: str, b: str) -> list[Message]:
    return [
        Message(role="system", content=ROLEPLAY_SYSTEM.format(persona=persona_text.strip())),
        Message(role="user", content=ROLEPLAY_USER.format(question=question.strip(),
                                                           a=a.strip(), b=b.strip())),
    ]


@dataclass(frozen=True)
class RoleplayChoiceStage(DeclaredStage):
    """Input rows: sheet items (item_id, persona_text, question, answer_a, answer_b)."""

    model: str
    seed: int = 0
    name: ClassVar[str] = "bench_roleplay"
    id_column: ClassVar[str] = "item_id"
    needs: ClassVar[tuple[str, ...]] = ("item_id", "persona_text", "question", "answer_a",
                                        "answer_b")
    outputs: ClassVar[pa.Schema] = pa.schema([("roleplay_model", pa.string()),
                                              ("choice", pa.string())])

    @property
    def sampling(self) -> Sampling:  # type: ignore[override]
        return Sampling(temperature=0.0, max_tokens=4, seed=self.seed)

    def choices(self) -> list[str]:
        return CHOICES

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return roleplay_messages(row["persona_text"], row["question"], row["answer_a"],
                                 row["answer_b"])

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
