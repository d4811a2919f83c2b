"""The bench judge: role-plays the persona, weighs two critiques, returns a 0/1 verdict.

The judge writes a personalization critique (does the answer fit *this* person?) and a
helpfulness critique (is it a good answer at all?) before the verdict, so the verdict is
conditioned on both; the schema fixes that field order. Verdict 1 means the answer needs
no revision for this person. The judge always sees the full persona, also for
leave-one-out rows (see ablation.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from persona_gen.bench.ids import judgment_id
from persona_gen.engines.base import ChatResult, Message, Sampling
from persona_gen.pipeline.columns import with_columns
from persona_gen.pipeline.stage import DeclaredStage, OutputError


def judge_schema(critique_chars: int = 600) -> dict[str, Any]:
    """The verdict object; critiques are capped so the verdict always fits in max_tokens."""
    return {
        "type": "object",
        "properties": {
            "personalization_critique": {"type": "string", "maxLength": critique_chars},
            "helpfulness_critique": {"type": "string", "maxLength": critique_chars},
            "verdict": {"type": "integer", "enum": [0, 1]},
        },
        "required": ["personalization_critique", "helpfulness_critique", "verdict"],
        "additionalProperties": False,
    }


JUDGE_SCHEMA = judge_schema()

JUDGE_SYSTEM = (
    "You are the person described below. Stay in character: judge as they would, from "
    "their background, values and circumstances.\n\nAbout you:\n{persona}"
)

JUDGE_USER = (
    "You asked an assistant this question:\n{question}\n\n"
    "It replied:\n{answer}\n\n"
    "Decide whether this reply already works for you or should be revised.\n"
    "1. personalization_critique: from your own point of view, what in the reply fits or "
    "ignores your situation, values and needs, and what you would want changed.\n"
    "2. helpfulness_critique: setting your own profile aside, is the reply accurate, clear "
    "and actually useful?\n"
    "3. verdict: weigh the two critiques. A reply that is helpful in general but wrong "
    "for you needs revision, and so does one that flatters you but does not help. Give 1 "
    "if the reply needs no revision for you, otherwise 0.\n"
    "Reply with a JSON object with exactly these three fields."
)


def judge_messages(persona_text: str, question: str, answer: str) -> list[Message]:
    return [
        Message(role="system", content=JUDGE_SYSTEM.format(persona=persona_text.strip())),
        Message(role="user", content=JUDGE_USER.format(question=question.strip(),
                                                        answer=answer.strip())),
    ]


def parse_verdict(result: ChatResult) -> tuple[dict[str, Any] | None, str | None]:
    """(judgment, None) or (None, why not). Uses the engine's parsed JSON, else the text."""
    if not result.ok:
        return None, result.error
    obj: Any = result.parsed[0] if result.parsed else None
    if obj is None:
        try:
            obj = json.loads(result.text)
        except (json.JSONDecodeError, TypeError):
            return None, f"judge output is not JSON: {result.text[:80]!r}"
    if not isinstance(obj, dict):
        return None, "judge output is not a JSON object"
    verdict = obj.get("verdict")
    # Accept 0/1 as int, bool or digit string; a schema-guided engine gives ints anyway.
    if isinstance(verdict, bool):
        verdict = int(verdict)
    elif isinstance(verdict, str) and verdict.strip() in ("0", "1"):
        verdict = int(verdict.strip())
    if verdict not in (0, 1):
        return None, f"judge verdict must be 0 or 1, got {verdict!r}"
    return {
        "personalization_critique": str(obj.get("personalization_critique", "")),
        "helpfulness_critique": str(obj.get("helpfulness_critique", "")),
        "verdict": int(verdict),
    }, None


@dataclass(frozen=True)
class JudgeStage(DeclaredStage):
    """Input rows: one per sample (sample_id, persona_text, question, answer)."""

    judge_model: str
    temperature: float = 0.0
    max_tokens: int = 384
    critique_chars: int = 600
    seed: int = 0
    name: ClassVar[str] = "bench_judge"
    id_column: ClassVar[str] = "sample_id"
    needs: ClassVar[tuple[str, ...]] = ("sample_id", "persona_text", "question", "answer")
    outputs: ClassVar[pa.Schema] = pa.schema([
        ("judgment_id", pa.string()), ("judge_model", pa.string()),
        ("personalization_critique", pa.string()), ("helpfulness_critique", pa.string()),
        ("verdict", pa.int8())])

    @property
    def sampling(self) -> Sampling:  # type: ignore[override]
        return Sampling(temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed)

    def row_key(self, row: dict[str, Any]) -> str:
        return judgment_id(row["sample_id"], self.judge_model)

    def json_schema(self) -> dict[str, Any]:
        return judge_schema(self.critique_chars)

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return judge_messages(row["persona_text"], row["question"], row["answer"] or "")

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        judgment, err = parse_verdict(result)
        if judgment is None:
            raise OutputError(err or "no verdict")
        return {**judgment, "judgment_id": self.row_key(row), "judge_model": self.judge_model}

    def results(self, batch: pa.Table, results: list[ChatResult],
                retried: set[int] | None = None) -> pa.Table:
        out = super().results(batch, results, retried)
        # Every row names its judgment, failed ones too: a resumed run retries them by id.
        ids = [judgment_id(s, self.judge_model) for s in out.column("sample_id").to_pylist()]
        return with_columns(out, {"judgment_id": pa.array(ids, pa.string()),
                                  "judge_model": pa.array([self.judge_model] * len(ids),
                                                          pa.string())})
