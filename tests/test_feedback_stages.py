"""Direct Principle Feedback stages: prompts carry what they should, verdicts map right."""

from __future__ import annotations

import pyarrow as pa
import pytest

from persona_gen.engines.base import ChatRequest, ChatResult, Sampling
from persona_gen.feedback.stages import CRITIQUE, ORIGINAL, REVISION, VerifyStage, revision_first
from persona_gen.pipeline.stage import TextKind, TextStage, run_in_process


def text_stage(kind: TextKind, sampling: Sampling, retry: int | None = None) -> TextStage:
    return TextStage(sampling=sampling, kind=kind, retry_max_tokens=retry)


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
    for stage in (text_stage(CRITIQUE, s), text_stage(REVISION, s),
                  VerifyStage(sampling=s, judge_model="j")):
        reqs = stage.requests(_pairs())
        assert all(r.messages[0].role == "system" for r in reqs)
        assert all(r.messages[0].content.startswith("About the person:\nage: 40\nsex: Female")
                   for r in reqs)
        assert len({r.messages[0].content for r in reqs}) == 1  # identical prefix
        assert len({r.sampling.seed for r in reqs}) == len(reqs)  # per-row seeds


def test_revision_prompt_carries_original_and_critique():
    req = text_stage(REVISION, Sampling()).requests(_pairs(1))[0]
    text = req.messages[1].content
    assert "original 0" in text and "critique 0" in text and "Question 0?" in text


def test_original_prompt_has_no_persona():
    t = pa.table({"prompt_id": ["q1"], "text": ["Is honesty always right?"]})
    req = text_stage(ORIGINAL, Sampling()).requests(t)[0]
    assert req.id == "q1" and "role-playing" not in req.messages[0].content
    assert req.messages[1].content == "Is honesty always right?"


def test_verify_maps_the_letter_back_to_the_answer_shown():
    pairs = _pairs(12)
    out = run_in_process(VerifyStage(judge_model="always-a"), AlwaysAEngine(), pairs)
    for pid, pref in zip(out.column("pair_id").to_pylist(), out.column("preferred").to_pylist(),
                         strict=True):
        assert pref == ("revision" if revision_first(pid) else "original")
    # The coin is not constant: both sides appear first across pairs.
    assert len({revision_first(p) for p in pairs.column("pair_id").to_pylist()}) == 2
    assert out.column("judge_model").to_pylist() == ["always-a"] * 12
    assert out.column("error").null_count == 12


def test_the_verification_judge_gives_its_reason_before_its_verdict():
    """Schema property order is decoding order: the reason is written first, then the letter
    (as the consistency judge does); the template asks for them in that order."""
    import json

    from persona_gen.feedback.stages import VERIFY_SCHEMA
    from persona_gen.personas.consistency import verdict_model

    assert list(VERIFY_SCHEMA["properties"]) == ["reason", "preferred"]
    assert VERIFY_SCHEMA["required"] == ["reason", "preferred"]
    assert list(verdict_model(80).model_fields) == ["reason", "consistent"]
    req = VerifyStage(sampling=Sampling(max_tokens=8, seed=1)).requests(_pairs(1))[0]
    assert req.json_schema == VERIFY_SCHEMA
    ask = req.messages[-1].content
    assert ask.index('"reason"') < ask.index('"preferred"')
    # An answer in that order parses to the same verdict; the coin and its mapping stay.
    answer = {"reason": "shorter and on point", "preferred": "A"}
    result = ChatResult(id="pair0", texts=[json.dumps(answer)], parsed=[answer])
    out = VerifyStage(judge_model="j").parse(_pairs(1).to_pylist()[0], result)
    assert out["reason"] == "shorter and on point"
    assert out["preferred"] == ("revision" if revision_first("pair0") else "original")


def test_revision_is_the_assistant_answering_the_persona_while_the_critique_is_the_persona():
    s = Sampling(max_tokens=8, seed=1)
    critique = text_stage(CRITIQUE, s).requests(_pairs(1))[0].messages
    revision = text_stage(REVISION, s).requests(_pairs(1))[0].messages
    # Same persona block first (one cached prefix per persona), different speaker after it.
    block = "About the person:\nage: 40\nsex: Female\n\n"
    assert critique[0].content.startswith(block) and revision[0].content.startswith(block)
    assert critique[0].content != revision[0].content
    assert "role-playing the person" in critique[0].content
    assert "Speaking as yourself" in critique[1].content
    assert "role-playing" not in revision[0].content
    assert "helpful assistant" in revision[0].content
    assert "Write to them, not as them" in revision[0].content
    # The request reads: question, the assistant's original, the persona's critique, then
    # the instruction to rewrite the answer for this user.
    user = revision[1].content
    order = [user.index(x) for x in ("Question 0?", "original 0", "critique 0",
                                     "Rewrite your answer for this user")]
    assert order == sorted(order)
    assert "you better" not in user and "your own attributes" not in user


class CutAtEightEngine:
    """Writes `max_tokens` words and says 'length' below 8 tokens, like a model whose
    answers need 8 tokens (a fixed-behaviour test engine for the retry bookkeeping)."""

    name = "cut-at-8"

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        self.calls.append([r.sampling.max_tokens for r in requests])
        return [ChatResult(id=r.id, texts=[" ".join(["w"] * min(8, r.sampling.max_tokens))],
                           finish_reasons=["length" if r.sampling.max_tokens < 8 else "stop"],
                           prompt_tokens=10, output_tokens=min(8, r.sampling.max_tokens))
                for r in requests]

    def close(self) -> None:
        return None


def test_rows_cut_by_length_are_retried_once_with_the_retry_limit():
    engine = CutAtEightEngine()
    pairs = _pairs(3)
    fixed = run_in_process(text_stage(CRITIQUE, Sampling(max_tokens=4, seed=1), 16),
                           engine, pairs)
    assert engine.calls == [[4, 4, 4], [16, 16, 16]]
    assert fixed.column("critique_finish_reason").to_pylist() == ["stop"] * 3
    assert fixed.column("critique_retried").to_pylist() == [True] * 3
    assert fixed.column("critique_output_tokens").to_pylist() == [12] * 3  # both calls
    # Retry too small: one retry only, then the row is kept and flagged.
    engine = CutAtEightEngine()
    still = run_in_process(text_stage(CRITIQUE, Sampling(max_tokens=4, seed=1), 6),
                           engine, pairs)
    assert engine.calls == [[4, 4, 4], [6, 6, 6]]
    assert still.column("critique_finish_reason").to_pylist() == ["length"] * 3
    assert still.column("critique").to_pylist() == ["w w w w w w"] * 3
    assert still.column("error").null_count == 3
    # No retry configured: flagged, asked once.
    engine = CutAtEightEngine()
    once = run_in_process(text_stage(CRITIQUE, Sampling(max_tokens=4, seed=1)), engine, pairs)
    assert engine.calls == [[4, 4, 4]]
    assert once.column("critique_retried").to_pylist() == [False] * 3


@pytest.mark.model
def test_bundled_model_at_four_tokens_reports_length_retries_once_then_flags(bundled_engine):
    pairs = _pairs(2)
    stage = text_stage(REVISION, Sampling(max_tokens=4, temperature=0.0, seed=1), 6)
    out = run_in_process(stage, bundled_engine, pairs)
    # A rewrite never fits in 4 (or 6) tokens: cut, retried once, still cut, kept, flagged.
    assert out.column("revision_finish_reason").to_pylist() == ["length", "length"]
    assert out.column("revision_retried").to_pylist() == [True, True]
    assert out.column("error").null_count == 2
    assert all(n > 6 for n in out.column("revision_output_tokens").to_pylist())  # 4 + 6
    first = run_in_process(text_stage(REVISION, Sampling(max_tokens=4, temperature=0.0, seed=1)),
                           bundled_engine, pairs)
    assert first.column("revision_finish_reason").to_pylist() == ["length", "length"]
    assert first.column("revision_retried").to_pylist() == [False, False]
