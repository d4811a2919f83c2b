"""Direct Principle Feedback as model stages (BRIEF 2.3), in our own wording.

Every persona-conditioned prompt starts with the same persona block in the system
message, so requests for one persona share a long prefix and vLLM's prefix cache
serves it once (the plan keeps a persona's pairs together).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa

from persona_gen.engines.base import ChatRequest, ChatResult, Message, Sampling
from persona_gen.pipeline.columns import column, result_columns, with_columns

ORIGINAL_SYSTEM = "You are a helpful, knowledgeable assistant. Answer the question well."

PERSONA_SYSTEM = (
    "You are role-playing the person described below. Think, judge and speak as they "
    "would, given their background, values and circumstances.\n\n{persona}"
)

CRITIQUE_USER = (
    "Someone asked the question below and received a general-purpose answer.\n\n"
    "Question: {instruction}\n\nAnswer: {original}\n\n"
    "Speaking as yourself, critique this answer: which parts suit you, which do not, and "
    "what concrete changes would make it more useful to someone like you. Be specific and "
    "brief."
)

REVISION_USER = (
    "Question: {instruction}\n\nOriginal answer: {original}\n\nYour critique: {critique}\n\n"
    "Rewrite the original answer so it follows the critique and suits you better. Tailor "
    "it subtly: never mention your own attributes (age, job, beliefs, ...) explicitly. "
    "Make it shorter than the original. Reply with the rewritten answer only."
)

VERIFY_USER = (
    "Question: {instruction}\n\nAnswer A: {a}\n\nAnswer B: {b}\n\n"
    "Which answer would you, as this person, prefer to receive? Reply in JSON with the "
    "letter of the preferred answer and a one-sentence reason."
)

VERIFY_SCHEMA = {
    "type": "object",
    "properties": {
        "preferred": {"type": "string", "enum": ["A", "B"]},
        "reason": {"type": "string", "maxLength": 300},
    },
    "required": ["preferred", "reason"],
    "additionalProperties": False,
}


def _persona_system(persona: str) -> Message:
    return Message(role="system", content=PERSONA_SYSTEM.format(persona=persona))


def _row_seed(seed: int | None, key: str) -> int | None:
    """A per-row seed, so a retried or resumed row samples the same way."""
    if seed is None:
        return None
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=4).digest(), "big")


@dataclass(frozen=True)
class OriginalStage:
    """The persona-free answer, generated once per prompt and reused by all its pairs."""

    sampling: Sampling
    name: str = "original"

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        s = self.sampling
        return [
            ChatRequest(
                id=pid,
                messages=[Message(role="system", content=ORIGINAL_SYSTEM),
                          Message(role="user", content=text)],
                sampling=s.model_copy(update={"seed": _row_seed(s.seed, pid)}),
            )
            for pid, text in zip(column(batch, "prompt_id"), column(batch, "text"), strict=True)
        ]

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        return with_columns(batch, result_columns(results, "original"))


def persona_requests(batch: pa.Table, template: str, sampling: Sampling,
                     fields: dict[str, str], json_schema: dict | None = None) -> list[ChatRequest]:
    """One request per pair: the persona block first (shared prefix), then `template`
    filled from the batch columns named in `fields` ({placeholder: column})."""
    ids, personas = column(batch, "pair_id"), column(batch, "persona")
    values = {name: column(batch, col) for name, col in fields.items()}
    return [
        ChatRequest(
            id=pair_id,
            messages=[_persona_system(personas[i]), Message(role="user", content=template.format(
                **{name: vals[i] for name, vals in values.items()}))],
            sampling=sampling.model_copy(update={"seed": _row_seed(sampling.seed, pair_id)}),
            json_schema=json_schema,
        )
        for i, pair_id in enumerate(ids)
    ]


@dataclass(frozen=True)
class CritiqueStage:
    """The persona critiques the original answer (evaluation + suggestions)."""

    sampling: Sampling
    name: str = "critique"

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        return persona_requests(batch, CRITIQUE_USER, self.sampling,
                                {"instruction": "instruction", "original": "original"})

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        return with_columns(batch, result_columns(results, "critique"))


@dataclass(frozen=True)
class RevisionStage:
    """The original rewritten along the critique: the chosen response (`data`)."""

    sampling: Sampling
    name: str = "revision"
    output_column: str = "data"

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        return persona_requests(batch, REVISION_USER, self.sampling, {
            "instruction": "instruction", "original": "original", "critique": "critique"})

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        return with_columns(batch, result_columns(results, "data"))


def revision_first(pair_id: str) -> bool:
    """Which side shows the revision: a stable coin per pair, against position bias."""
    return hashlib.blake2b(pair_id.encode(), digest_size=1).digest()[0] % 2 == 0


@dataclass(frozen=True)
class VerifyStage:
    """A role-playing judge: which answer does the persona prefer?"""

    sampling: Sampling
    judge_model: str
    name: str = "verify"

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        # Which side shows the revision is a stable coin per pair, against position bias.
        first = [revision_first(p) for p in column(batch, "pair_id")]
        orig, rev = column(batch, "original"), column(batch, "data")
        sides = batch.append_column("_a", pa.array(
            [r if f else o for f, o, r in zip(first, orig, rev, strict=True)], pa.string()))
        sides = sides.append_column("_b", pa.array(
            [o if f else r for f, o, r in zip(first, orig, rev, strict=True)], pa.string()))
        return persona_requests(sides, VERIFY_USER, self.sampling,
                                {"instruction": "instruction", "a": "_a", "b": "_b"},
                                json_schema=VERIFY_SCHEMA)

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        preferred, reasons, errors = [], [], []
        for pair_id, r in zip(column(batch, "pair_id"), results, strict=True):
            obj = r.parsed[0] if r.ok and r.parsed else None
            if not isinstance(obj, dict) or obj.get("preferred") not in ("A", "B"):
                preferred.append(None)
                reasons.append(None)
                errors.append(r.error or "judge output is not {preferred: A|B, reason}")
                continue
            picked_first = obj["preferred"] == "A"
            preferred.append("revision" if picked_first == revision_first(pair_id) else "original")
            reasons.append(str(obj.get("reason", "")))
            errors.append(None)
        cols = result_columns(results, "verify")
        cols.pop("verify")
        cols.update(preferred=preferred, reason=reasons, judge_model=[self.judge_model] * len(results),
                    error=errors)
        return with_columns(batch, cols)
