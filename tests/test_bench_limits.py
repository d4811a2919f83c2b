"""Bench: per-mode answer limits, cut reasoning answers, the paper config, LOO judge persona."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
from test_bench_data import bench_setup, personas_table, prompts_table

from persona_gen.bench.answer import CUT_BEFORE_MARKER, AnswerStage
from persona_gen.bench.config import BenchConfig
from persona_gen.bench.ids import judgment_id
from persona_gen.bench.judge import BenchJudgeStage
from persona_gen.bench.requests import build_requests
from persona_gen.bench.run import BenchStages, run_bench
from persona_gen.engines.base import ChatRequest, ChatResult

REPO = Path(__file__).resolve().parents[1]


def _cfg(stages: dict | None = None, **kw: object) -> tuple[BenchConfig, BenchStages]:
    base: dict[str, object] = dict(models=["m"], k=2, max_personas=1, max_prompts=1,
                                   persona_split="test")
    base.update(kw)
    return bench_setup("j", stages, **base)


class FixedEngine:
    """Fixed behaviour: cot answers are cut by length, sample 0 after its marker and sample 1
    before it; other modes finish; the judge always says no revision is needed."""

    name = "fixed"

    def __init__(self) -> None:
        self.judged: list[ChatRequest] = []
        self.answered: list[ChatRequest] = []

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        out = []
        for r in requests:
            if r.json_schema is not None:  # the judge
                self.judged.append(r)
                out.append(ChatResult(id=r.id, texts=["{}"], finish_reasons=["stop"], parsed=[{
                    "chain_of_thought": "", "personalization_critic": "",
                    "helpfulness_critic": "", "conclusion": "", "needs_revision": False}]))
                continue
            self.answered.append(r)
            n = r.sampling.n
            if "step by step" in r.messages[0].content:  # cot
                texts = ["Reasoning. Final answer: Do X, and then", "Reasoning that never ends and"]
                out.append(ChatResult(id=r.id, texts=texts[:n], finish_reasons=["length"] * n))
            else:
                out.append(ChatResult(id=r.id, texts=[f"answer {i}" for i in range(n)],
                                      finish_reasons=["stop"] * n))
        return out

    def close(self) -> None:
        pass


def test_defaults_give_reasoning_modes_768_tokens_and_overrides_merge():
    stage = _cfg()[1].answer
    assert stage.max_tokens_for("cot") == stage.max_tokens_for("summary") == 768
    assert stage.max_tokens_for("baseline") == stage.max_tokens_for("output_only") == 256
    # Naming one mode keeps the other's default.
    _, stages = _cfg({"bench_answer": {"max_tokens_by_mode": {"cot": 1024}}})
    assert dict(stages.answer.max_tokens_by_mode) == {"cot": 1024, "summary": 768}


def test_per_mode_limits_reach_the_requests():
    cfg, stages = _cfg({"bench_answer": {"max_tokens": 100,
                                         "max_tokens_by_mode": {"cot": 900, "summary": 800}}})
    requests = build_requests(personas_table(), prompts_table(), cfg, seed=0)
    chat = stages.answer.requests(requests)
    by_mode = {m: {c.sampling.max_tokens for c, mm in
                   zip(chat, requests.column("mode").to_pylist(), strict=True) if mm == m}
               for m in cfg.modes}
    assert by_mode == {"baseline": {100}, "output_only": {100}, "cot": {900}, "summary": {800}}
    assert "answer_finish_reasons" in AnswerStage.adds()


def test_cut_cot_answer_before_its_marker_is_failed_and_not_judged():
    cfg, stages = _cfg(modes=["output_only", "cot"])
    requests = build_requests(personas_table(), prompts_table(), cfg, seed=0)
    engine = FixedEngine()
    out = run_bench(requests, cfg, stages, lambda _name: engine, seed=0)
    rows = {(r["mode"], r["sample_index"]): r for r in out.answers.to_pylist()}
    kept, cut = rows[("cot", 0)], rows[("cot", 1)]
    assert kept["answer_finish_reason"] == "length" and kept["answer_error"] is None
    assert kept["answer"] == "Do X, and then"  # reached the marker: kept
    assert cut["answer_finish_reason"] == "length" and cut["answer_error"] == CUT_BEFORE_MARKER
    assert rows[("output_only", 0)]["answer_finish_reason"] == "stop"
    judged_ids = set(out.judgments.column("sample_id").to_pylist())
    assert cut["sample_id"] not in judged_ids and kept["sample_id"] in judged_ids
    judged_answers = "".join(m.content for r in engine.judged for m in r.messages)
    assert "never ends" not in judged_answers
    # The cut sample is a failure, not left out: 1 judged (verdict 1) + 1 cut (scored 0).
    cot = next(r for r in out.accuracy.to_pylist() if r["mode"] == "cot")
    assert (cot["judged"], cot["cut"], cot["failed"]) == (1, 1, 0)
    assert cot["accuracy"] == 0.5 and cot["pass_at_1"] == 0.5
    plain = next(r for r in out.accuracy.to_pylist() if r["mode"] == "output_only")
    assert (plain["cut"], plain["accuracy"]) == (0, 1.0)

    # The cut is a final outcome: a resumed run does not ask again.
    engine.answered.clear()
    run_bench(requests, cfg, stages, lambda _name: engine, seed=0, done_answers=out.answers,
              done_judgments=out.judgments)
    assert engine.answered == []


def test_paper_config_loads_with_k_16():
    from persona_gen.run.bench import bench_stages
    from persona_gen.run.config import load_config

    run_cfg = load_config(str(REPO / "jobs" / "configs" / "bench_paper.yaml"), [])
    cfg, answer = run_cfg.bench, bench_stages(run_cfg).answer
    assert cfg.k == 16 and answer.temperature > 0
    assert cfg.prompt_split == "heldout" and cfg.persona_split == "test"
    assert answer.max_tokens_for("cot") >= 768 and answer.max_tokens_for("summary") >= 768
    assert cfg.loo_attributes


def test_loo_by_default_judges_the_reduced_persona_and_adds_the_all_removed_one():
    cfg, _ = _cfg(modes=["output_only"], loo_attributes=["religion", "political_views"], k=1,
                  max_personas=2, max_prompts=1)
    assert cfg.loo_judge_persona == "reduced" and cfg.loo_all_removed
    rows = build_requests(personas_table(), prompts_table(), cfg, seed=0).to_pylist()
    loo = {(r["persona_id"], r["ablated_attribute"]): r for r in rows if r["ablated_attribute"]}
    # p-001 has both attributes, p-002 only political_views; both get an all-removed twin.
    assert set(loo) == {("p-001", "religion"), ("p-001", "political_views"),
                        ("p-001", "all_attributes"), ("p-002", "political_views"),
                        ("p-002", "all_attributes")}
    for r in loo.values():
        assert r["judge_persona"] == "reduced" and r["persona_text"] == r["answer_persona_text"]
    gone = loo[("p-001", "all_attributes")]["persona_text"]
    assert "religion:" not in gone and "political_views:" not in gone
    assert "religion:" in loo[("p-001", "political_views")]["persona_text"]
    full = next(r for r in rows if r["persona_id"] == "p-001" and r["ablated_attribute"] is None)
    assert "religion:" in full["persona_text"] and "political_views:" in full["persona_text"]
    # Switched off: no all-removed twin.
    off, _ = _cfg(modes=["output_only"], loo_attributes=["religion"], k=1, max_personas=2,
                  loo_all_removed=False)
    assert "all_attributes" not in build_requests(personas_table(), prompts_table(), off,
                                                  seed=0).column("ablated_attribute").to_pylist()


def test_reduced_loo_judge_persona_reaches_the_judge():
    full_cfg, _ = _cfg(modes=["output_only"], loo_attributes=["religion"], k=1, max_personas=2,
                       loo_judge_persona="full")
    reduced_cfg, reduced_stages = _cfg(modes=["output_only"], loo_attributes=["religion"], k=1,
                                       max_personas=2, loo_judge_persona="reduced")
    assert full_cfg.loo_judge_persona == "full"
    full = build_requests(personas_table(), prompts_table(), full_cfg, seed=0).to_pylist()
    reduced = build_requests(personas_table(), prompts_table(), reduced_cfg, seed=0).to_pylist()
    # Same answer work either way (same request ids), other judge persona on LOO rows only.
    assert [r["request_id"] for r in full] == [r["request_id"] for r in reduced]
    loo = [r for r in reduced if r["ablated_attribute"] is not None]
    assert loo and all(r["judge_persona"] == "reduced" for r in loo)
    assert all(r["persona_text"] == r["answer_persona_text"] for r in loo)
    assert all("religion:" not in r["persona_text"] for r in loo)
    assert all(r["judge_persona"] == "full" for r in full)
    twins = [r for r in reduced if r["ablated_attribute"] is None and r["mode"] == "output_only"]
    assert all("religion:" in r["persona_text"] for r in twins if r["persona_id"] == "p-001")

    engine = FixedEngine()
    out = run_bench(build_requests(personas_table(), prompts_table(), reduced_cfg, seed=0),
                    reduced_cfg, reduced_stages, lambda _name: engine, seed=0)
    systems = {r.id: r.messages[0].content for r in engine.judged}
    judged = out.judgments.filter(pc.is_valid(out.judgments.column("ablated_attribute")))
    for row in judged.to_pylist():
        assert row["judgment_id"] == judgment_id(row["sample_id"], "j", "reduced")
        assert row["persona_text"] in systems[row["judgment_id"]]
        assert "religion:" not in systems[row["judgment_id"]]
    # Full-persona verdicts keep the ids they always had, so earlier runs resume.
    assert BenchJudgeStage(judge_model="j").row_key({"sample_id": "s", "judge_persona": "full"}) == \
        judgment_id("s", "j")
