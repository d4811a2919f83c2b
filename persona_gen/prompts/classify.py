"""The controversy filter: a zero-shot model classifier with choice-constrained output.

Only prompts the model calls value-laden survive (PERSONA, arXiv 2407.17387: prompts). As a ModelStage it runs the
same in-process (`run_in_process`) and in Ray Data actors. A row whose call fails, or whose
output is not one of the labels, gets a null label and an `error`; it never raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from persona_gen.engines.base import ChatResult, Message, Sampling
from persona_gen.pipeline.stage import DeclaredStage, OutputError

CONTROVERSIAL = "controversial"
NOT_CONTROVERSIAL = "not_controversial"
LABELS = (CONTROVERSIAL, NOT_CONTROVERSIAL)
LABEL_COLUMN = "controversy"
# What the model is offered (constrained to exactly these words), and the label each means.
# Why these words: the bundled 135M model cannot tell the two kinds of question apart under
# any wording we tried (it gives nearly every question the same answer). Offered
# "controversial"/"not_controversial" it dropped 96 of our 100 value-laden questions;
# offered "debatable"/"factual" it keeps them, so on CPU the filter errs toward keeping
# prompts the rule filters already screened. Larger models separate the two properly.
ANSWERS = {"debatable": CONTROVERSIAL, "factual": NOT_CONTROVERSIAL}

SYSTEM = (
    "You sort questions for a study of how people with different backgrounds and values "
    "answer them. Reply with one word."
)
USER = (
    "Question: {text}\n\n"
    "Is this question debatable (thoughtful people would answer it differently because their "
    "values, beliefs or life experiences differ) or factual (it has one correct or practical "
    "answer that most people would share)? Answer 'debatable' or 'factual'."
)
# Long PRISM prompts are rare, but a small model's context is not: the opening of a
# prompt is enough to tell whether it is value-laden.
MAX_PROMPT_CHARS = 2000


def parse_label(text: str) -> str | None:
    """The label a model's output means, or None.

    Engines that honour `choices` return one of ANSWERS exactly; tolerating case, spaces,
    punctuation and the label names themselves lets engines that cannot constrain output
    (some HTTP servers) still be used.
    """
    norm = "_".join(text.strip().lower().replace("-", " ").split())
    for answer, label in (*ANSWERS.items(), *((lab, lab) for lab in LABELS)):
        if norm.startswith(answer):
            return label
    return None


@dataclass(frozen=True)
class ControversyStage(DeclaredStage):
    """Rows with `prompt_id` and `text` in; the same rows plus `controversy` and `error` out."""

    # Greedy decoding: a filter should give the same verdict every run. No per-request
    # seed: greedy needs none, and vLLM on CPU crashes when a seeded request's prefill is
    # split across steps ("CPU Generator does not use offset"), which big batches cause.
    # Constrained decoding may spell a word in many small tokens (8 tokens once cut
    # "not_controversial" short); the grammar ends the answer at the word anyway.
    sampling: Sampling = field(
        default_factory=lambda: Sampling(temperature=0.0, max_tokens=32, seed=None))
    name: ClassVar[str] = "controversy"
    id_column: ClassVar[str] = "prompt_id"
    needs: ClassVar[tuple[str, ...]] = ("prompt_id", "text")
    prompt_parts: ClassVar[tuple[str, ...]] = ("prompt",)
    outputs: ClassVar[pa.Schema] = pa.schema([(LABEL_COLUMN, pa.string())])

    def choices(self) -> list[str]:
        return list(ANSWERS)

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return [
            Message(role="system", content=SYSTEM),
            Message(role="user", content=USER.format(text=row["text"][:MAX_PROMPT_CHARS])),
        ]

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        return {LABEL_COLUMN: _read_result(row["prompt_id"], result)}


def _read_result(pid: str, res: ChatResult) -> str:
    if res.id != pid:
        raise OutputError(f"result id {res.id!r} does not match request {pid!r}")
    label = parse_label(res.text)
    if label is None:
        raise OutputError(f"unexpected classifier output {res.text[:80]!r}")
    return label
