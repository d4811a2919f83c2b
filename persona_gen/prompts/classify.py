"""The controversy filter: a zero-shot model classifier with choice-constrained output.

Only prompts the model calls controversial / value-laden survive (PERSONA, arXiv
2407.17387, prompts: 3,868 of PRISM's 8,011 opening prompts were kept). As a ModelStage it
runs the same in-process (`run_in_process`) and in Ray Data actors. A row whose call fails,
or whose output is not one of the labels, gets a null label and an `error`; it never raises.

The wording belongs to the model family (`classifier_instruction` in the model's YAML),
because it changes which prompts survive: `controversial` (the default, for 7B+ models)
asks the paper's question in so many words (templates/controversy.jinja); `debatable`
(templates/controversy-debatable.jinja) is for the bundled 135M model. The words the answer
is constrained to come with the wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from persona_gen.engines.base import ChatResult, Sampling
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.stage import DeclaredStage, OutputError
from persona_gen.pipeline.template import PromptTemplate, shipped

CONTROVERSIAL = "controversial"
NOT_CONTROVERSIAL = "not_controversial"
LABELS = (CONTROVERSIAL, NOT_CONTROVERSIAL)
LABEL_COLUMN = "controversy"
INSTRUCTIONS: dict[str, dict[str, str]] = {
    # The paper's question, for models that can answer it (7B and up).
    "controversial": {"controversial": CONTROVERSIAL, "not_controversial": NOT_CONTROVERSIAL},
    # The bundled 135M model cannot tell the two kinds of question apart under any wording
    # we tried (it gives nearly every question the same answer). Offered
    # "controversial"/"not_controversial" it dropped 96 of our 100 value-laden questions;
    # offered "debatable"/"factual" it keeps them, so on CPU the filter errs toward keeping
    # prompts the rule filters already screened.
    "debatable": {"debatable": CONTROVERSIAL, "factual": NOT_CONTROVERSIAL},
}
"""classifier_instruction -> {word the model may answer: label}."""
DEFAULT_INSTRUCTION = "controversial"
# Long PRISM prompts are rare, but a small model's context is not: the opening of a
# prompt is enough to tell whether it is value-laden.
MAX_PROMPT_CHARS = 2000


def parse_label(text: str, answers: dict[str, str] | None = None) -> str | None:
    """The label a model's output means, or None.

    Engines that honour `choices` return one of ANSWERS exactly; tolerating case, spaces,
    punctuation and the label names themselves lets engines that cannot constrain output
    (some HTTP servers) still be used.
    """
    norm = "_".join(text.strip().lower().replace("-", " ").split())
    offered = answers if answers is not None else {
        k: v for words in INSTRUCTIONS.values() for k, v in words.items()}
    # Longest first, so that no offered word is shadowed by a shorter one it starts with.
    for answer, label in sorted((*offered.items(), *((lab, lab) for lab in LABELS)),
                                key=lambda kv: -len(kv[0])):
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
    retry_max_tokens: int | None = 64
    instruction: str = DEFAULT_INSTRUCTION
    """Key of INSTRUCTIONS: the model family's `classifier_instruction`."""
    name: ClassVar[str] = "controversy"
    id_column: ClassVar[str] = "prompt_id"
    needs: ClassVar[tuple[str, ...]] = ("prompt_id", "text")
    variables: ClassVar[tuple[str, ...]] = ("text",)
    prompt_parts: ClassVar[tuple[str, ...]] = ("prompt",)
    outputs: ClassVar[pa.Schema] = pa.schema([(LABEL_COLUMN, pa.string())])

    def __post_init__(self) -> None:
        if self.instruction not in INSTRUCTIONS:
            raise ValueError(f"unknown classifier instruction {self.instruction!r}; "
                             f"expected one of {', '.join(INSTRUCTIONS)}")

    @classmethod
    def build(cls, settings: StageSettings, template: PromptTemplate | None,
              seed: int | None = None) -> ControversyStage:
        # No per-request seed (see above), whatever the run's seed.
        return cls(sampling=settings.sampling(None), retry_max_tokens=settings.retry_limit(),
                   template=template, instruction=instruction_for(settings.model))

    def default_template(self) -> PromptTemplate:
        suffix = "" if self.instruction == DEFAULT_INSTRUCTION else f"-{self.instruction}"
        return shipped(f"{self.name}{suffix}")

    def choices(self) -> list[str]:
        return list(INSTRUCTIONS[self.instruction])

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"text": row["text"][:MAX_PROMPT_CHARS]}

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        return {LABEL_COLUMN: _read_result(row["prompt_id"], result, INSTRUCTIONS[self.instruction])}


def instruction_for(model: str | None) -> str:
    """The wording the model's family asks for (its registry YAML's classifier_instruction)."""
    from persona_gen.engines.registry import discover

    registered = discover().get(model or "")
    return registered.spec.classifier_instruction if registered is not None else DEFAULT_INSTRUCTION


def _read_result(pid: str, res: ChatResult, answers: dict[str, str]) -> str:
    if res.id != pid:
        raise OutputError(f"result id {res.id!r} does not match request {pid!r}")
    label = parse_label(res.text, answers)
    if label is None:
        raise OutputError(f"unexpected classifier output {res.text[:80]!r}")
    return label
