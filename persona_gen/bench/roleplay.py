"""A model role-plays the persona and picks answer A or B: the model side of the human study.

It sees exactly what a human rater sees on a sheet (persona, question, answers A and B)
and its output is constrained to the two letters.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from persona_gen.engines.base import ChatRequest, ChatResult, Message, Sampling
from persona_gen.pipeline.columns import column, with_columns

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
class RoleplayChoiceStage:
    """Input rows: sheet items (item_id, persona_text, question, answer_a, answer_b)."""

    model: str
    seed: int = 0
    name: str = "bench_roleplay"

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        sampling = Sampling(temperature=0.0, max_tokens=4, seed=self.seed, n=1)
        rows = zip(column(batch, "item_id"), column(batch, "persona_text"),
                   column(batch, "question"), column(batch, "answer_a"),
                   column(batch, "answer_b"), strict=True)
        return [ChatRequest(id=item, messages=roleplay_messages(p, q, a, b), sampling=sampling,
                            choices=CHOICES)
                for item, p, q, a, b in rows]

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        choices, errors = [], []
        for r in results:
            text = r.text.strip().upper() if r.ok else ""
            if r.ok and text in CHOICES:
                choices.append(text)
                errors.append(None)
            else:
                choices.append(None)
                errors.append(r.error or f"role-player answered {r.text[:40]!r}, not A or B")
        return with_columns(batch, {
            "roleplay_model": pa.array([self.model] * batch.num_rows, pa.string()),
            "choice": pa.array(choices, pa.string()),
            "error": pa.array(errors, pa.string()),
        })
