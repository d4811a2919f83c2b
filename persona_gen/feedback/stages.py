"""Direct Principle Feedback as model stages (PERSONA, arXiv 2407.17387: feedback pairs),
in our own wording.

Who speaks in each stage follows the method: the original is a plain assistant answer;
the critique is the persona speaking (role-play); the revision is the assistant again,
rewriting *its own* answer for that user along the critique, so the chosen answer is
written to the persona, never as the persona; the verification judge role-plays the
persona again.

Every persona-conditioned prompt starts with the same persona block in the system
message (before the role instruction), so all of one persona's critique, revision and
verification requests share a long prefix that vLLM's prefix cache serves once (the plan
keeps a persona's pairs together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from persona_gen.engines.base import ChatResult, Message, Sampling
from persona_gen.hashing import coin
from persona_gen.pipeline.stage import DeclaredStage, OutputError

if TYPE_CHECKING:
    from persona_gen.config.run import RunConfig

ORIGINAL_SYSTEM = "You are a helpful, knowledgeable assistant. Answer the question well."

PERSONA_BLOCK = "About the person:\n{persona}\n\n"

PERSONA_SYSTEM = PERSONA_BLOCK + (
    "You are role-playing the person described above. Think, judge and speak as they "
    "would, given their background, values and circumstances."
)
"""Critique and verification: the persona's own voice."""

ASSISTANT_SYSTEM = PERSONA_BLOCK + (
    "You are a helpful assistant, and the person described above is the user you are "
    "answering. Write to them, not as them: no first-person opinions or mannerisms of "
    "theirs."
)
"""Revision: the assistant improving its answer for this user."""

CRITIQUE_USER = (
    "Someone asked the question below and received a general-purpose answer.\n\n"
    "Question: {instruction}\n\nAnswer: {original}\n\n"
    "Speaking as yourself, critique this answer: which parts suit you, which do not, and "
    "what concrete changes would make it more useful to someone like you. Be specific and "
    "brief."
)

REVISION_USER = (
    "The user asked: {instruction}\n\nYour answer was: {original}\n\n"
    "The user's critique of your answer: {critique}\n\n"
    "Rewrite your answer for this user, following their critique. Tailor it subtly: never "
    "mention their attributes (age, job, beliefs, ...) explicitly. Make it shorter than "
    "your original answer. Reply with the rewritten answer only."
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


def sampling(cfg: RunConfig, stage: str) -> Sampling:
    """Sampling for the original, critique or revision (row seeds derive from run.seed)."""
    fb = cfg.feedback
    return Sampling(temperature=fb.temperature, top_p=fb.top_p,
                    max_tokens=getattr(fb, f"{stage}_max_tokens"), seed=cfg.run.seed)


def retry_limit(cfg: RunConfig, stage: str) -> int | None:
    """The cap of the one retry for a stage's answers cut by length (None: no retry)."""
    return getattr(cfg.feedback, f"{stage}_retry_max_tokens") or None


def judge_sampling(cfg: RunConfig) -> Sampling:
    """Greedy verification: a verdict should depend on the answers, not on sampling noise."""
    return Sampling(temperature=0.0, max_tokens=cfg.feedback.verify_max_tokens,
                    seed=cfg.run.seed)


def _text(name: str) -> pa.Schema:
    return pa.schema([(name, pa.string())])


def persona_messages(row: dict[str, Any], user: str,
                     system: str = PERSONA_SYSTEM) -> list[Message]:
    """The persona block first (the shared prefix), then the stage's question."""
    return [Message(role="system", content=system.format(persona=row["persona"])),
            Message(role="user", content=user)]


@dataclass(frozen=True)
class OriginalStage(DeclaredStage):
    """The persona-free answer, generated once per prompt and reused by all its pairs."""

    sampling: Sampling
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "original"
    id_column: ClassVar[str] = "prompt_id"
    needs: ClassVar[tuple[str, ...]] = ("prompt_id", "text")
    prompt_parts: ClassVar[tuple[str, ...]] = ("prompt",)
    outputs: ClassVar[pa.Schema] = _text("original")

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return [Message(role="system", content=ORIGINAL_SYSTEM),
                Message(role="user", content=row["text"])]

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        return {"original": result.text}


@dataclass(frozen=True)
class CritiqueStage(DeclaredStage):
    """The persona critiques the original answer (evaluation + suggestions)."""

    sampling: Sampling
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "critique"
    id_column: ClassVar[str] = "pair_id"
    needs: ClassVar[tuple[str, ...]] = ("pair_id", "persona", "instruction", "original")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt", "original")
    outputs: ClassVar[pa.Schema] = _text("critique")

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return persona_messages(row, CRITIQUE_USER.format(**row))

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        return {"critique": result.text}


@dataclass(frozen=True)
class RevisionStage(DeclaredStage):
    """The assistant rewrites its original answer for this user along the persona's
    critique: the chosen response (`data`)."""

    sampling: Sampling
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "revision"
    id_column: ClassVar[str] = "pair_id"
    needs: ClassVar[tuple[str, ...]] = ("pair_id", "persona", "instruction", "original",
                                        "critique")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt", "original", "critique")
    outputs: ClassVar[pa.Schema] = _text("data")

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return persona_messages(row, REVISION_USER.format(**row), ASSISTANT_SYSTEM)

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        return {"data": result.text}


def revision_first(pair_id: str) -> bool:
    """Which side shows the revision: a stable coin per pair, against position bias."""
    return coin(pair_id)


@dataclass(frozen=True)
class VerifyStage(DeclaredStage):
    """A role-playing judge: which answer does the persona prefer?"""

    sampling: Sampling
    judge_model: str
    retry_max_tokens: int | None = None
    name: ClassVar[str] = "verify"
    id_column: ClassVar[str] = "pair_id"
    needs: ClassVar[tuple[str, ...]] = ("pair_id", "persona", "instruction", "original", "data")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt", "original", "revision")
    outputs: ClassVar[pa.Schema] = pa.schema([
        ("preferred", pa.string()), ("reason", pa.string()), ("judge_model", pa.string())])

    def json_schema(self) -> dict[str, Any]:
        return VERIFY_SCHEMA

    def messages(self, row: dict[str, Any]) -> list[Message]:
        first = revision_first(row["pair_id"])
        a, b = (row["data"], row["original"]) if first else (row["original"], row["data"])
        return persona_messages(row, VERIFY_USER.format(instruction=row["instruction"], a=a, b=b))

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        obj = result.parsed[0] if result.parsed else None
        if not isinstance(obj, dict) or obj.get("preferred") not in ("A", "B"):
            raise OutputError("judge output is not {preferred: A|B, reason}")
        picked_first = obj["preferred"] == "A"
        preferred = "revision" if picked_first == revision_first(row["pair_id"]) else "original"
        return {"preferred": preferred, "reason": str(obj.get("reason", "")),
                "judge_model": self.judge_model}
