"""The controversy filter: a zero-shot model classifier with choice-constrained output.

Only prompts the model calls value-laden survive (BRIEF 2.2). As a ModelStage it runs the
same in-process (`run_in_process`) and in Ray Data actors. A row whose call fails, or whose
output is not one of the labels, gets a null label and an `error`; it never raises.
"""

from __future__ import annotations

import pyarrow as pa

from persona_gen.engines.base import ChatRequest, ChatResult, Message, Sampling

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


class ControversyStage:
    """Rows with `prompt_id` and `text` in; the same rows plus `controversy` and `error` out."""

    name = "controversy"

    def __init__(self, max_tokens: int = 32) -> None:
        # Constrained decoding may spell a word in many small tokens (8 tokens once cut
        # "not_controversial" short); the grammar ends the answer at the word anyway.
        self.max_tokens = max_tokens

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        ids = batch.column("prompt_id").to_pylist()
        texts = batch.column("text").to_pylist()
        # Greedy decoding: a filter should give the same verdict every run. No per-request
        # seed: greedy needs none, and vLLM on CPU crashes when a seeded request's prefill is
        # split across steps ("CPU Generator does not use offset"), which big batches cause.
        sampling = Sampling(temperature=0.0, max_tokens=self.max_tokens, seed=None)
        return [
            ChatRequest(id=pid, messages=self.messages(text), sampling=sampling,
                        choices=list(ANSWERS))
            for pid, text in zip(ids, texts, strict=True)
        ]

    def messages(self, text: str) -> list[Message]:
        return [
            Message(role="system", content=SYSTEM),
            Message(role="user", content=USER.format(text=text[:MAX_PROMPT_CHARS])),
        ]

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        labels: list[str | None] = []
        errors: list[str | None] = []
        ids = batch.column("prompt_id").to_pylist() if batch.num_rows else []
        for pid, res in zip(ids, results, strict=True):
            label, error = _read_result(pid, res)
            labels.append(label)
            errors.append(error)
        out = batch
        for name, values in ((LABEL_COLUMN, labels), ("error", errors)):
            if name in out.column_names:
                out = out.drop_columns([name])
            out = out.append_column(name, pa.array(values, pa.string()))
        return out


def _read_result(pid: str, res: ChatResult) -> tuple[str | None, str | None]:
    if res.id != pid:
        return None, f"result id {res.id!r} does not match request {pid!r}"
    if res.error is not None:
        return None, res.error
    label = parse_label(res.text)
    if label is None:
        return None, f"unexpected classifier output {res.text[:80]!r}"
    return label, None
