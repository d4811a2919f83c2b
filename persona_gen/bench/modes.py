"""The four ways the model under test answers a question for a persona, and their parsing.

Every persona-bearing mode puts the persona text first in the system message, so all
requests for one persona share a prompt prefix (vLLM prefix caching) whatever the mode
or question. The words of each mode are in persona_gen/templates/bench_answer.jinja.

`summary` is one request in two marked steps (relevant-profile notes, then the answer),
not two chained stages: it halves the requests, keeps the notes in context for free, and
leaves one answer stage per model for the pipeline to schedule and resume. It shares the
final-answer marker and parser with `cot`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from persona_gen.bench.config import ALL_MODES, Mode
from persona_gen.engines.base import Message
from persona_gen.pipeline.template import PromptTemplate, shipped

ParseKind = Literal["direct", "marker", "fallback"]
"""How the judged answer was obtained: the whole text (direct modes), the text after the
final-answer marker, or the whole text because the marker was missing or empty."""

FINAL_MARKER = "Final answer:"
# Tolerates case, markdown emphasis and a missing colon: "**Final Answer**:", "final answer -".
_MARKER_RE = re.compile(r"(?:\*\*|__)?\s*final\s+answer\s*(?:\*\*|__)?\s*[:\-]?(?:\*\*|__)?", re.I)

@dataclass(frozen=True)
class ParsedAnswer:
    answer: str
    """The part a judge sees."""
    preamble: str
    """Reasoning or persona notes before the marker ('' when none)."""
    kind: ParseKind


def uses_persona(mode: Mode) -> bool:
    return mode != "baseline"


def uses_marker(mode: Mode) -> bool:
    return mode in ("cot", "summary")


def build_messages(mode: Mode, question: str, persona_text: str | None,
                   template: PromptTemplate | None = None) -> list[Message]:
    """Chat messages for one request (templates/bench_answer.jinja unless another is given);
    persona-bearing modes require the persona text."""
    if mode not in ALL_MODES:
        raise ValueError(f"unknown bench mode {mode!r}")
    if uses_persona(mode) and not persona_text:
        raise ValueError(f"mode {mode!r} needs a persona text")
    return (template or shipped("bench_answer")).render({
        "mode": mode, "persona": (persona_text or "").strip(), "question": question.strip(),
        "final_marker": FINAL_MARKER})


def split_final_answer(text: str) -> ParsedAnswer:
    """The text after the last final-answer marker; the whole text when there is none.

    The last marker wins because models often announce the format ("I will end with
    Final answer: ...") before reasoning.
    """
    matches = list(_MARKER_RE.finditer(text))
    if matches:
        last = matches[-1]
        answer = text[last.end():].strip()
        if answer:
            return ParsedAnswer(answer, text[: last.start()].strip(), "marker")
    return ParsedAnswer(text.strip(), "", "fallback")


def parse_answer(mode: Mode, text: str) -> ParsedAnswer:
    if uses_marker(mode):
        return split_final_answer(text)
    return ParsedAnswer(text.strip(), "", "direct")
