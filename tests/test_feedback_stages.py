"""Direct Principle Feedback stages: prompts carry what they should, verdicts map right."""

from __future__ import annotations

import pyarrow as pa

from persona_gen.engines.base import ChatRequest, ChatResult, Sampling
from persona_gen.feedback.stages import (
    CritiqueStage,
    OriginalStage,
    RevisionStage,
    VerifyStage,
    revision_first,
)
from persona_gen.pipeline.stage import run_in_process


class AlwaysAEngine:
    """Answers every request with the JSON verdict 'A' (a fixed-answer test engine)."""

    name = "always-a"

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return [ChatResult(id=r.id, texts=['{"preferred":"A","reason":"r"}'],
                           parsed=[{"preferred": "A", "reason": "r"}], output_tokens=3)
                for r in requests]

    def close(self) -> None:
        return None


def _pairs(n: int = 6) -> pa.Table:
    return pa.table({
        "pair_id": [f"pair{i}" for i in range(n)],
        "persona": ["age: 40\nsex: Female"] * n,
        "instruction": [f"Question {i}?" for i in range(n)],
        "original": [f"original {i}" for i in range(n)],
        "critique": [f"critique {i}" for i in range(n)],
        "data": [f"revision {i}" for i in range(n)],
    })


def test_persona_leads_every_persona_prompt_for_prefix_caching():
    s = Sampling(max_tokens=8, seed=1)
    for stage in (CritiqueStage(s), RevisionStage(s), VerifyStage(s, "j")):
        reqs = stage.requests(_pairs())
        assert all(r.messages[0].role == "system" for r in reqs)
        assert all(r.messages[0].content.endswith("age: 40\nsex: Female") for r in reqs)
        assert len({r.messages[0].content for r in reqs}) == 1  # identical prefix
        assert len({r.sampling.seed for r in reqs}) == len(reqs)  # per-row seeds


def test_revision_prompt_carries_original_and_critique():
    req = RevisionStage(Sampling()).requests(_pairs(1))[0]
    text = req.messages[1].content
    assert "original 0" in text and "critique 0" in text and "Question 0?" in text


def test_original_prompt_has_no_persona():
    t = pa.table({"prompt_id": ["q1"], "text": ["Is honesty always right?"]})
    req = OriginalStage(Sampling()).requests(t)[0]
    assert req.id == "q1" and "role-playing" not in req.messages[0].content
    assert req.messages[1].content == "Is honesty always right?"


def test_verify_maps_the_letter_back_to_the_answer_shown():
    pairs = _pairs(12)
    out = run_in_process(VerifyStage(Sampling(), "always-a"), AlwaysAEngine(), pairs)
    for pid, pref in zip(out.column("pair_id").to_pylist(), out.column("preferred").to_pylist(),
                         strict=True):
        assert pref == ("revision" if revision_first(pid) else "original")
    # The coin is not constant: both sides appear first across pairs.
    assert len({revision_first(p) for p in pairs.column("pair_id").to_pylist()}) == 2
    assert out.column("judge_model").to_pylist() == ["always-a"] * 12
    assert out.column("error").null_count == 12
