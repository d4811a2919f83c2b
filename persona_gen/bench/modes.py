"""The four ways the model under test answers a question for a persona, and their parsing.

Every persona-bearing mode puts the persona text first in the system message, so all
requests for one persona share a prompt prefix (vLLM prefix caching) whatever the mode
or question.

`summary` is one request in two marked steps (relevant-profile notes, then the answer),
not two chained stages: it halves the requests, keeps the notes in context for free, and
leaves one answer stage per model for the pipeline to schedule and resume. It shares the
final-answer marker and parser with `cot`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from persona_gen.bench.config import Mode
from persona_gen.engines.base import Message

ParseKind = Literal["direct", "marker", "fallback"]
"""How the judged answer was obtained: the whole text (direct modes), the text after the
final-answer marker, or the whole text because the marker was missing or empty."""

FINAL_MARKER = "Final answer:"
# Tolerates case, markdown emphasis and a missing colon: "**Final Answer**:", "final answer -".
_MARKER_RE = re.compile(r"(?:\*\*|__)?\s*final\s+answer\s*(?:\*\*|__)?\s*[:\-]?(?:\*\*|__)?", re.I)

_PERSONA_HEAD = "About the person you are answering:\n{persona}\n\n"

_SYSTEM: dict[Mode, str] = {
    "baseline": "You are a helpful assistant. Answer the user's question clearly and concisely.",
    "output_only": (
        _PERSONA_HEAD
        + "Answer the question in the way that best serves this person: their circumstances, "
        "values and needs. Do not list or name their attributes; let them shape the answer."
    ),
    "cot": (
        _PERSONA_HEAD
        + "Before answering, reason step by step about what this person needs from the answer "
        "and which parts of their profile matter. Then write a line that starts with "
        f"'{FINAL_MARKER}' followed by the answer itself. Only the text after "
        f"'{FINAL_MARKER}' reaches the person, so it must stand on its own and must not "
        "name their attributes."
    ),
    "summary": (
        _PERSONA_HEAD
        + "Work in two steps. Step 1: under the heading 'Relevant about this person:', note "
        "in a few short bullet points only the parts of the profile that bear on the "
        f"question. Step 2: write a line that starts with '{FINAL_MARKER}' followed by an "
        "answer tailored to those points. Only the text after the marker reaches the "
        "person, so it must stand on its own and must not name their attributes."
    ),
}


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


def build_messages(mode: Mode, question: str, persona_text: str | None) -> list[Message]:
    """Chat messages for one request; persona-bearing modes require the persona text."""
    if mode not in _SYSTEM:
        raise ValueError(f"unknown bench mode {mode!r}")
    system = _SYSTEM[mode]
    if uses_persona(mode):
        if not persona_text:
            raise ValueError(f"mode {mode!r} needs a persona text")
        system = system.format(persona=persona_text.strip())
    return [Message(role="system", content=system), Message(role="user", content=question.strip())]


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
