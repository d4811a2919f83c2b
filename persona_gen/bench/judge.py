"""The bench judge: role-plays the persona, weighs two critiques, returns a 0/1 verdict.

PERSONA Bench (Castricato et al., arXiv 2407.17387, bench): a judge weighs a
personalization critic against a helpfulness critic and scores 1 when the answer needs no
revision for that persona. The judge answers in the public persona-bench package's five
fields, in its order: chain_of_thought, personalization_critic, helpfulness_critic,
conclusion, needs_revision. The schema fixes that order, so the verdict is decoded last,
conditioned on everything before it. The words are in persona_gen/templates/bench_judge.jinja. Stored columns: `verdict` (1 = no revision needed),
the two critiques, the reasoning and the conclusion. The judge role-plays the row's
`persona_text`: the full persona, or for leave-one-out rows under
`loo_judge_persona: reduced` the ablated one (see ablation.py, requests.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field

from persona_gen.bench.ids import judgment_id
from persona_gen.engines.base import ChatResult, Sampling
from persona_gen.pipeline.columns import with_columns
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.stage import DeclaredStage, OutputError
from persona_gen.pipeline.template import PromptTemplate

JUDGE_FIELDS = ("chain_of_thought", "personalization_critic", "helpfulness_critic",
                "conclusion", "needs_revision")
"""persona-bench's judge fields, in its order."""


def judge_schema(critique_chars: int = 600) -> dict[str, Any]:
    """The verdict object; texts are capped so the verdict always fits in max_tokens."""
    text = {"type": "string", "maxLength": critique_chars}
    return {
        "type": "object",
        "properties": {
            "chain_of_thought": text,
            "personalization_critic": text,
            "helpfulness_critic": text,
            "conclusion": text,
            "needs_revision": {"type": "boolean"},
        },
        "required": list(JUDGE_FIELDS),
        "additionalProperties": False,
    }


JUDGE_SCHEMA = judge_schema()

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
    needs = obj.get("needs_revision")
    # Accept true/false as bool or text; a schema-guided engine gives booleans anyway.
    if isinstance(needs, str) and needs.strip().lower() in ("true", "false"):
        needs = needs.strip().lower() == "true"
    if not isinstance(needs, bool):
        return None, f"judge needs_revision must be true or false, got {needs!r}"
    return {
        "judge_reasoning": str(obj.get("chain_of_thought", "")),
        "personalization_critique": str(obj.get("personalization_critic", "")),
        "helpfulness_critique": str(obj.get("helpfulness_critic", "")),
        "judge_conclusion": str(obj.get("conclusion", "")),
        "verdict": 0 if needs else 1,  # score 1: no revision needed for this persona
    }, None


def judgment_ids(samples: pa.Table, judge_model: str) -> list[str]:
    """Each sample's judgment id; tables from before `judge_persona` existed count as full."""
    personas = (samples.column("judge_persona").to_pylist()
                if "judge_persona" in samples.column_names else [None] * samples.num_rows)
    return [judgment_id(s, judge_model, p)
            for s, p in zip(samples.column("sample_id").to_pylist(), personas, strict=True)]


class BenchJudgeSettings(StageSettings):
    critique_chars: int = Field(default=600, ge=20)
    """Cap per critique in the schema, so the verdict after them fits in max_tokens."""


@dataclass(frozen=True)
class BenchJudgeStage(DeclaredStage):
    """Input rows: one per sample (sample_id, persona_text, question, answer)."""

    # Greedy by default so a verdict depends on the answer, not on judge sampling noise.
    sampling: Sampling = field(
        default_factory=lambda: Sampling(temperature=0.0, max_tokens=384, seed=0))
    judge_model: str = ""
    critique_chars: int = 600
    name: ClassVar[str] = "bench_judge"
    id_column: ClassVar[str] = "sample_id"
    needs: ClassVar[tuple[str, ...]] = ("sample_id", "persona_text", "question", "answer")
    variables: ClassVar[tuple[str, ...]] = ("persona", "question", "answer")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt", "original")
    settings_type: ClassVar[type[StageSettings]] = BenchJudgeSettings
    outputs: ClassVar[pa.Schema] = pa.schema([
        ("judgment_id", pa.string()), ("judge_model", pa.string()),
        ("judge_reasoning", pa.string()), ("personalization_critique", pa.string()),
        ("helpfulness_critique", pa.string()), ("judge_conclusion", pa.string()),
        ("verdict", pa.int8())])

    @classmethod
    def build(cls, settings: StageSettings, template: PromptTemplate,
              seed: int) -> BenchJudgeStage:
        assert isinstance(settings, BenchJudgeSettings)
        return cls(sampling=settings.sampling(seed), retry_max_tokens=settings.retry_limit(),
                   template=template, judge_model=settings.model or "",
                   critique_chars=settings.critique_chars)

    def row_key(self, row: dict[str, Any]) -> str:
        return judgment_id(row["sample_id"], self.judge_model, row.get("judge_persona"))

    def json_schema(self) -> dict[str, Any]:
        return judge_schema(self.critique_chars)

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"persona": row["persona_text"].strip(), "question": row["question"].strip(),
                "answer": (row["answer"] or "").strip()}

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        judgment, err = parse_verdict(result)
        if judgment is None:
            raise OutputError(err or "no verdict")
        return {**judgment, "judgment_id": self.row_key(row), "judge_model": self.judge_model}

    def results(self, batch: pa.Table, results: list[ChatResult],
                retried: set[int] | None = None) -> pa.Table:
        out = super().results(batch, results, retried)
        # Every row names its judgment, failed ones too: a resumed run retries them by id.
        ids = judgment_ids(out, self.judge_model)
        return with_columns(out, {"judgment_id": pa.array(ids, pa.string()),
                                  "judge_model": pa.array([self.judge_model] * len(ids),
                                                          pa.string())})
