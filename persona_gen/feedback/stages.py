"""Direct Principle Feedback as model stages (PERSONA, arXiv 2407.17387: feedback pairs).

Who speaks in each stage follows the method: the original is a plain assistant answer;
the critique is the persona speaking (role-play); the revision is the assistant again,
rewriting *its own* answer for that user along the critique, so the chosen answer is
written to the persona, never as the persona; the verification judge role-plays the
persona again. The words are in persona_gen/templates/{original,critique,revision,verify}.jinja.

Every persona-conditioned prompt starts with the same persona block in the system
message (before the role instruction), so all of one persona's critique, revision and
verification requests share a long prefix that vLLM's prefix cache serves once (the plan
keeps a persona's pairs together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from persona_gen.engines.base import ChatResult
from persona_gen.hashing import coin
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.stage import DeclaredStage, OutputError, TextKind
from persona_gen.pipeline.template import PromptTemplate

ORIGINAL = TextKind("original", output="original", id_column="prompt_id",
                    needs=("prompt_id", "text"), prompt_parts=("prompt",))
"""The persona-free answer, generated once per prompt and reused by all its pairs."""
CRITIQUE = TextKind("critique", output="critique", id_column="pair_id",
                    needs=("pair_id", "persona", "instruction", "original"),
                    prompt_parts=("persona", "prompt", "original"))
"""The persona critiques the original answer (evaluation + suggestions)."""
REVISION = TextKind("revision", output="data", id_column="pair_id",
                    needs=("pair_id", "persona", "instruction", "original", "critique"),
                    prompt_parts=("persona", "prompt", "original", "critique"))
"""The assistant rewrites its original answer for this user along the persona's critique:
the chosen response (`data`, the released column's name)."""

VERIFY_SCHEMA = {
    "type": "object",
    # Property order is the decoding order of a schema-constrained answer: the reason comes
    # first, so the verdict is conditioned on it rather than justified after the fact (as the
    # consistency judge and the bench judge do).
    "properties": {
        "reason": {"type": "string", "maxLength": 300},
        "preferred": {"type": "string", "enum": ["A", "B"]},
    },
    "required": ["reason", "preferred"],
    "additionalProperties": False,
}


def revision_first(pair_id: str) -> bool:
    """Which side shows the revision: a stable coin per pair, against position bias."""
    return coin(pair_id)


@dataclass(frozen=True)
class VerifyStage(DeclaredStage):
    """A role-playing judge: which answer does the persona prefer?"""

    judge_model: str = ""
    name: ClassVar[str] = "verify"
    id_column: ClassVar[str] = "pair_id"
    needs: ClassVar[tuple[str, ...]] = ("pair_id", "persona", "instruction", "original", "data")
    variables: ClassVar[tuple[str, ...]] = ("persona", "instruction", "answer_a", "answer_b")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt", "original", "revision")
    outputs: ClassVar[pa.Schema] = pa.schema([
        ("preferred", pa.string()), ("reason", pa.string()), ("judge_model", pa.string())])

    @classmethod
    def build(cls, settings: StageSettings, template: PromptTemplate, seed: int) -> VerifyStage:
        return cls(sampling=settings.sampling(seed), retry_max_tokens=settings.retry_limit(),
                   template=template, judge_model=settings.model or "")

    def json_schema(self) -> dict[str, Any]:
        return VERIFY_SCHEMA

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        first = revision_first(row["pair_id"])
        a, b = (row["data"], row["original"]) if first else (row["original"], row["data"])
        return {"persona": row["persona"], "instruction": row["instruction"],
                "answer_a": a, "answer_b": b}

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        obj = result.parsed[0] if result.parsed else None
        if not isinstance(obj, dict) or obj.get("preferred") not in ("A", "B"):
            raise OutputError("judge output is not {reason, preferred: A|B}")
        picked_first = obj["preferred"] == "A"
        preferred = "revision" if picked_first == revision_first(row["pair_id"]) else "original"
        return {"preferred": preferred, "reason": str(obj.get("reason", "")),
                "judge_model": self.judge_model}
