"""Bench building blocks: mode prompts and parsing, the request table, LOO texts, stages' columns."""

from __future__ import annotations

import pyarrow as pa
import pytest
from test_bench_data import personas_table, prompts_table

from persona_gen.bench.answer import AnswerStage, explode_samples, judgeable
from persona_gen.bench.config import BenchConfig
from persona_gen.bench.judge import JUDGE_SCHEMA, BenchJudgeStage, parse_verdict
from persona_gen.bench.modes import build_messages, parse_answer, split_final_answer
from persona_gen.bench.requests import build_requests
from persona_gen.engines.base import ChatResult
from persona_gen.errors import ConfigError, DataError

# ---- modes ------------------------------------------------------------------------------


def test_marker_parsing_takes_the_last_marker_and_records_fallbacks():
    p = split_final_answer("I will end with Final answer: later.\nReasoning...\n**Final Answer:** Do X.")
    assert p.kind == "marker" and p.answer == "Do X."
    assert "Reasoning" in p.preamble
    p = split_final_answer("final answer - yes, but gently")
    assert (p.kind, p.answer) == ("marker", "yes, but gently")
    p = split_final_answer("No marker at all, just an answer.")
    assert (p.kind, p.answer) == ("fallback", "No marker at all, just an answer.")
    # A marker with nothing after it: the whole text is judged, flagged as fallback.
    p = split_final_answer("Thinking hard. Final answer:")
    assert p.kind == "fallback" and p.answer.startswith("Thinking hard")


def test_direct_modes_judge_the_whole_text():
    assert parse_answer("output_only", " Final answer: x ").kind == "direct"
    assert parse_answer("summary", "Relevant about this person:\n- a\nFinal answer: B").answer == "B"


def test_messages_put_the_persona_first_and_baseline_has_none():
    persona = "age: 30\nsex: Female"
    for mode in ("output_only", "cot", "summary"):
        msgs = build_messages(mode, "Why?", persona)
        assert msgs[0].role == "system" and msgs[0].content.startswith("About the person")
        assert persona in msgs[0].content and msgs[1].content == "Why?"
    base = build_messages("baseline", "Why?", None)
    assert "age: 30" not in base[0].content
    with pytest.raises(ValueError, match="needs a persona"):
        build_messages("cot", "Why?", None)


# ---- config -----------------------------------------------------------------------------


def test_config_rejects_unknown_attributes_and_baseline_loo():
    from persona_gen.run.config import load_config

    with pytest.raises(ConfigError, match="unknown persona attribute"):
        load_config(None, ["bench.loo_attributes=[shoe_size]"])
    with pytest.raises(ConfigError, match="loo_mode"):
        load_config(None, ["bench.loo_attributes=[age]", "bench.loo_mode=baseline"])
    with pytest.raises(ConfigError, match="temperature"):
        load_config(None, ["bench.k=4", "stages.bench_answer.temperature=0"])


# ---- the request table ------------------------------------------------------------------


def _cfg(**kw) -> BenchConfig:
    base = dict(models=["m1"], k=2, max_personas=2, max_prompts=2,
                persona_split="test", prompt_split="heldout",
                loo_attributes=["religion", "fertility"], loo_personas=2, loo_prompts=2)
    base.update(kw)
    return BenchConfig(**base)


def test_request_table_counts_ids_and_loo_twins():
    # One twin per attribute, judged on the full persona (the all-removed twin and the
    # reduced judge, the defaults, are in test_bench_limits.py).
    cfg = _cfg(loo_all_removed=False, loo_judge_persona="full")
    t = build_requests(personas_table(), prompts_table(), cfg, seed=3)
    rows = t.to_pylist()
    main = [r for r in rows if r["ablated_attribute"] is None]
    loo = [r for r in rows if r["ablated_attribute"] is not None]
    assert len(main) == 1 * 4 * 2 * 2  # models x modes x personas x prompts
    # p-002 has neither religion nor fertility: only p-001 is ablated, 2 attributes x 2 prompts
    assert {r["persona_id"] for r in loo} == {"p-001"} and len(loo) == 4
    assert len({r["request_id"] for r in rows}) == len(rows)
    assert all(r["k"] == 2 for r in rows)
    assert {r["persona_id"] for r in rows} == {"p-001", "p-002"}  # split=test only
    assert {r["prompt_id"] for r in rows} <= {"q-01", "q-02", "q-03"}  # heldout only
    for r in loo:
        twin = next(m for m in main if (m["mode"], m["persona_id"], m["prompt_id"])
                    == (cfg.loo_mode, r["persona_id"], r["prompt_id"]))
        assert r["seed"] == twin["seed"]  # same sampling noise as the full twin
        assert r["persona_text"] == twin["persona_text"]  # the judge sees the full persona
        full_lines = twin["answer_persona_text"].splitlines()
        ablated_lines = r["answer_persona_text"].splitlines()
        assert set(ablated_lines) < set(full_lines) and len(ablated_lines) == len(full_lines) - 1
        assert f"{r['ablated_attribute']}:" not in r["answer_persona_text"]
    assert all(r["answer_persona_text"] is None for r in main if r["mode"] == "baseline")


def test_request_ids_are_stable_and_order_independent():
    cfg = _cfg()
    a = build_requests(personas_table(), prompts_table(), cfg, seed=3)
    shuffled = personas_table().take([2, 0, 1])
    b = build_requests(shuffled, prompts_table(), cfg, seed=3)
    assert a.column("request_id").to_pylist() == b.column("request_id").to_pylist()
    other_k = build_requests(personas_table(), prompts_table(), _cfg(k=3), seed=3)
    assert set(a.column("request_id").to_pylist()).isdisjoint(other_k.column("request_id").to_pylist())


def test_loo_mode_outside_the_benched_modes_still_gets_full_twins():
    cfg = _cfg(modes=["baseline"], loo_attributes=["religion"])
    rows = build_requests(personas_table(), prompts_table(), cfg, seed=0).to_pylist()
    twins = [r for r in rows if r["mode"] == "output_only" and r["ablated_attribute"] is None]
    assert len(twins) == 2  # p-001 x 2 prompts


def test_no_rows_for_a_missing_split_is_a_clear_error():
    with pytest.raises(DataError, match="no personas"):
        build_requests(personas_table(), prompts_table(), _cfg(persona_split="nobody"), seed=0)


# ---- stage columns ----------------------------------------------------------------------


def _requests(**kw) -> pa.Table:
    return build_requests(personas_table(), prompts_table(), _cfg(loo_attributes=[], **kw), seed=1)


def test_answer_stage_requests_and_exploded_samples():
    reqs = _requests().slice(0, 3)
    stage = AnswerStage(temperature=0.9, max_tokens=32)
    chat = stage.requests(reqs)
    assert [c.sampling.n for c in chat] == [2, 2, 2]
    assert chat[0].sampling.seed == reqs.column("seed")[0].as_py()
    results = [
        ChatResult(id=chat[0].id, texts=["one", "two"]),
        ChatResult(id=chat[1].id, error="engine died"),
        ChatResult(id=chat[2].id, texts=["only one"]),
    ]
    samples = explode_samples(stage.results(reqs, results))
    assert samples.num_rows == 6
    rows = samples.to_pylist()
    assert [r["sample_index"] for r in rows] == [0, 1, 0, 1, 0, 1]
    assert rows[0]["answer"] == "one" and rows[1]["answer"] == "two"
    assert rows[2]["answer_error"] == "engine died" and rows[2]["answer"] is None
    assert rows[4]["answer"] == "only one" and rows[4]["answer_error"] is None
    assert "1 of 2" in rows[5]["answer_error"]
    assert len({r["sample_id"] for r in rows}) == 6
    assert judgeable(samples).num_rows == 3


def test_judge_parsing_accepts_schema_output_and_flags_bad_output():
    good = ChatResult(id="x", texts=["{}"], parsed=[{
        "chain_of_thought": "t", "personalization_critic": "fits", "helpfulness_critic": "clear",
        "conclusion": "fine", "needs_revision": False}])
    judgment, err = parse_verdict(good)
    assert err is None and judgment["verdict"] == 1  # no revision needed scores 1
    assert judgment["personalization_critique"] == "fits" and judgment["judge_conclusion"] == "fine"
    from_text = ChatResult(id="x", texts=['{"personalization_critic": "a", '
                                          '"helpfulness_critic": "b", "needs_revision": true}'])
    assert parse_verdict(from_text)[0]["verdict"] == 0
    assert "not JSON" in parse_verdict(ChatResult(id="x", texts=["maybe"]))[1]
    assert "true or false" in parse_verdict(
        ChatResult(id="x", parsed=[{"needs_revision": 3}], texts=["{}"]))[1]
    assert parse_verdict(ChatResult(id="x", error="timeout"))[1] == "timeout"
    # persona-bench's five fields, in its order (the verdict is decoded last).
    assert list(JUDGE_SCHEMA["properties"]) == ["chain_of_thought", "personalization_critic",
                                                "helpfulness_critic", "conclusion",
                                                "needs_revision"]
    assert JUDGE_SCHEMA["required"] == list(JUDGE_SCHEMA["properties"])


def test_judge_stage_columns():
    reqs = _requests().slice(0, 1)
    samples = explode_samples(AnswerStage().results(
        reqs, [ChatResult(id="r", texts=["a1", "a2"])]))
    stage = BenchJudgeStage(judge_model="j")
    chat = stage.requests(samples.drop_columns(["answer_error"]))
    assert all(c.json_schema == JUDGE_SCHEMA and c.sampling.temperature == 0.0 for c in chat)
    assert "a1" in chat[0].messages[1].content and samples.column("persona_text")[0].as_py() \
        in chat[0].messages[0].content
    out = stage.results(samples, [
        ChatResult(id=chat[0].id, texts=["{}"], parsed=[{"personalization_critic": "p",
                                                        "helpfulness_critic": "h",
                                                        "needs_revision": True}]),
        ChatResult(id=chat[1].id, texts=["garbage"]),
    ]).to_pylist()
    assert out[0]["verdict"] == 0 and out[0]["error"] is None and out[0]["judge_model"] == "j"
    assert out[1]["verdict"] is None and "not JSON" in out[1]["error"]
