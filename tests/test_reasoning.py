"""Reasoning models: splitting reasoning from answers, templates' thinking switches, the
stage's reasoning columns, the manifest's reasoning tokens, the export. No model loads
here (tests/test_families.py loads the fixtures in vLLM); prompts are rendered with the
fixtures' real tokenizers and templates."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from persona_gen.engines.base import ChatRequest, ChatResult, Message, Sampling, Thinking
from persona_gen.engines.echo import EchoEngine
from persona_gen.engines.reasoning import (
    Reasoner,
    ReasoningSpec,
    harmony_structural_tag,
    split_harmony,
    split_think,
)
from persona_gen.engines.registry import ModelSpec
from persona_gen.errors import ConfigError
from tests import families

QWEN3 = ReasoningSpec(style="think", parser="qwen3", thinking_on={"enable_thinking": True},
                      thinking_off={"enable_thinking": False}, budget=True)
R1 = ReasoningSpec(style="think", parser="deepseek_r1", always=True, budget=True)
GPT_OSS = ReasoningSpec(style="channel", parser="openai_gptoss", always=True,
                        thinking_on={"reasoning_effort": "medium"},
                        thinking_off={"reasoning_effort": "low"})
SYSTEM = Message(role="system", content="SYSTEM-TEXT be brief")
USER = Message(role="user", content="USER-TEXT Should cities ban cars?")


# ---- splitting ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "opened", "answer", "reasoning", "closed"), [
    ("<think>\nweigh it\n</think>\n\nYes.", False, "Yes.", "weigh it", True),
    ("weigh it</think>Yes.", True, "Yes.", "weigh it", True),  # R1: the prompt opened it
    ("<think>\n\n</think>\n\nYes.", False, "Yes.", "", True),  # Qwen3 thinking off
    ("Just the answer.", False, "Just the answer.", None, True),
    ("<think>\nstill weighing", False, "", "still weighing", False),  # cut inside it
    ("still weighing", True, "", "still weighing", False),
])
def test_split_think(text, opened, answer, reasoning, closed):
    s = split_think(text, "<think>", "</think>", opened)
    assert (s.answer, s.reasoning, s.closed) == (answer, reasoning, closed)


def test_split_harmony_channels():
    text = ("<|channel|>analysis<|message|>The user asks X.<|end|><|start|>assistant"
            "<|channel|>final<|message|>Answer.")
    s = split_harmony(text)
    assert (s.answer, s.reasoning, s.closed) == ("Answer.", "The user asks X.", True)
    assert text[s.answer_at:].startswith("<|channel|>final")
    # A constrained final header, and an answer ending at <|end|>.
    s = split_harmony("<|channel|>final <|constrain|>json<|message|>{\"a\":1}<|end|>")
    assert (s.answer, s.reasoning) == ('{"a":1}', None)
    # Cut inside the analysis: no answer.
    s = split_harmony("<|channel|>analysis<|message|>thinking on and on")
    assert (s.answer, s.reasoning, s.closed) == ("", "thinking on and on", False)
    # No markers at all (special tokens dropped somewhere): all of it is the answer.
    assert split_harmony("analysisHello").answer == "analysisHello"


def test_reasoner_counts_reasoning_tokens_from_the_generated_ids():
    tok = families.tokenizer("tiny-qwen3")
    reasoner = Reasoner(QWEN3, lambda t: tok.encode(t, add_special_tokens=False))
    text = "<think>\nweigh both sides\n</think>\n\nYes, with care."
    ids = tok.encode(text, add_special_tokens=False)
    s = reasoner.split(text)
    spent = reasoner.reasoning_tokens(s, text, ids)
    end = tok.convert_tokens_to_ids("</think>")
    assert spent == ids.index(end) + 1
    assert tok.decode(ids[spent:]).strip() == "Yes, with care."


# ---- templates through the vLLM engine's own rendering (no model loaded) ----------------

def render_only(key: str, reasoning: ReasoningSpec, **fields: Any) -> Any:
    """A VLLMEngine's prompt side with the fixture's tokenizer, without starting vLLM."""
    from persona_gen.engines.vllm_engine import VLLMEngine

    spec = ModelSpec(name=key, engine="vllm", source=str(families.folder(key)),
                     reasoning=reasoning, **fields)
    engine = VLLMEngine.__new__(VLLMEngine)
    engine.spec, engine.name, engine.max_model_len = spec, key, spec.max_model_len
    engine.on_cpu, engine.chat_template = True, None
    engine.tokenizer = families.tokenizer(key)
    engine._family_setup()
    return engine


def test_qwen3_thinking_off_prompt_carries_the_templates_no_thinking_form():
    engine = render_only("tiny-qwen3", QWEN3)
    off = engine.tokenizer.decode(engine.render([SYSTEM, USER], Thinking(on=False)))
    on = engine.tokenizer.decode(engine.render([SYSTEM, USER], Thinking(on=True)))
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
    assert off.startswith("<|im_start|>system\nSYSTEM-TEXT")
    # Requests leave thinking off unless they say otherwise.
    assert engine.tokenizer.decode(engine.render([SYSTEM, USER])) == off


def test_a_system_turn_is_merged_where_the_template_rejects_it():
    engine = render_only("tiny-gemma2", ReasoningSpec(), system_role=False)
    text = engine.tokenizer.decode(engine.render([SYSTEM, USER]))
    assert "<start_of_turn>user\nSYSTEM-TEXT be brief\n\nUSER-TEXT" in text
    assert text.endswith("<start_of_turn>model\n")


def test_r1_prompt_opens_the_think_block_and_the_split_finds_it():
    engine = render_only("tiny-r1-distill", R1)
    ids = engine.render([USER], Thinking(on=False))
    assert engine.tokenizer.decode(ids).endswith("<｜Assistant｜><think>\n")
    assert engine._opened(ids)
    text = "weigh it\n</think>\n\nAnswer here."
    out_ids = engine.tokenizer.encode(text, add_special_tokens=False)
    raw = engine._raw(SimpleNamespace(prompt_token_ids=ids, outputs=[SimpleNamespace(
        text=text, token_ids=out_ids, finish_reason="stop")]))
    assert (raw.texts, raw.reasonings) == (["Answer here."], ["weigh it"])
    assert raw.reasoning_tokens == out_ids.index(
        engine.tokenizer.convert_tokens_to_ids("</think>")) + 1
    assert raw.output_tokens == len(out_ids)


def test_thinking_budget_and_structured_output_reach_vllms_sampling_params():
    from persona_gen.engines.structured import Call

    schema = {"type": "object", "properties": {"p": {"enum": ["A", "B"]}}, "required": ["p"]}
    r1 = render_only("tiny-r1-distill", R1)
    on = ChatRequest(id="a", messages=[USER], json_schema=schema,
                     thinking=Thinking(on=True, budget=64))
    off = on.model_copy(update={"thinking": Thinking()})
    with_budget = r1._params(Call(0, on, on.sampling), 500)
    assert with_budget.thinking_token_budget == 64
    # max_tokens sizes the answer; the budget comes on top (within the context left).
    assert with_budget.max_tokens == on.sampling.max_tokens + 64
    assert r1._params(Call(0, on, on.sampling), 300).max_tokens == 300
    # An always-reasoning family with thinking off: its think block closes at once.
    assert r1._params(Call(0, off, off.sampling), 500).thinking_token_budget == 0
    qwen = render_only("tiny-qwen3", QWEN3)
    assert qwen._params(Call(0, off, off.sampling), 500).thinking_token_budget is None
    params = qwen._params(Call(0, off, off.sampling), 500)
    assert params.structured_outputs.json == schema and params.skip_special_tokens


def test_gpt_oss_harmony_prompt_effort_and_final_channel_constraint():
    from persona_gen.engines.structured import Call

    engine = render_only("tiny-gpt-oss", GPT_OSS)
    off = engine.tokenizer.decode(engine.render([SYSTEM, USER], Thinking(on=False)),
                                  skip_special_tokens=False)
    on = engine.tokenizer.decode(engine.render([SYSTEM, USER], Thinking(on=True)),
                                 skip_special_tokens=False)
    assert "Reasoning: low" in off and "Reasoning: medium" in on
    assert "<|start|>developer<|message|># Instructions\n\nSYSTEM-TEXT" in off
    assert off.endswith("<|start|>assistant")
    req = ChatRequest(id="a", messages=[USER], choices=["A", "B"])
    params = engine._params(Call(0, req, req.sampling), 500)
    # Harmony markers are special tokens: they must survive detokenising to be split.
    assert params.skip_special_tokens is False
    tag = json.loads(params.structured_outputs.structural_tag)
    assert tag["format"]["elements"][1]["begin"] == "<|channel|>final<|message|>"
    text = ("<|channel|>analysis<|message|>pick one<|end|><|start|>assistant"
            "<|channel|>final<|message|>A")
    raw = engine._raw(SimpleNamespace(prompt_token_ids=[1], outputs=[SimpleNamespace(
        text=text, token_ids=engine.tokenizer.encode(text, add_special_tokens=False),
        finish_reason="stop")]))
    assert (raw.texts, raw.reasonings) == (["A"], ["pick one"])
    assert 0 < raw.reasoning_tokens < raw.output_tokens


def test_harmony_structural_tag_lets_analysis_through_and_constrains_the_final_answer():
    import xgrammar as xgr

    tok = families.tokenizer("tiny-gpt-oss")
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
    schema = {"type": "object", "properties": {"p": {"enum": ["A", "B"]}}, "required": ["p"],
              "additionalProperties": False}
    grammar = xgr.GrammarCompiler(info).compile_structural_tag(
        harmony_structural_tag(schema, None))
    analysis = "<|channel|>analysis<|message|>Weigh A and B.<|end|><|start|>assistant"

    def accepts(text: str) -> bool:
        matcher = xgr.GrammarMatcher(grammar)
        return matcher.accept_string(text)

    assert accepts(analysis + '<|channel|>final<|message|>{"p": "A"}')
    assert accepts('<|channel|>final<|message|>{"p": "B"}')  # analysis is optional
    assert not accepts(analysis + '<|channel|>final<|message|>{"p": "C"}')
    assert not accepts('{"p": "A"}')  # no answer outside the final channel
    with pytest.raises(ValueError):
        harmony_structural_tag(None, None)


# ---- model files ------------------------------------------------------------------------

@pytest.mark.parametrize(("reasoning", "field"), [
    ({"style": "none", "parser": "qwen3"}, "reasoning.style"),
    ({"style": "think", "parser": "qwen3"}, "reasoning.thinking_off"),
    ({"style": "channel", "budget": True, "always": True}, "reasoning.budget"),
])
def test_a_reasoning_block_that_cannot_work_is_refused_naming_the_field(tmp_path, reasoning,
                                                                        field):
    import yaml

    from persona_gen.engines.registry import load_spec

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "engine": "echo", "reasoning": reasoning}))
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert f"'{field}'" in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_shipped_families_declare_reasoning_layout_and_source():
    from persona_gen.engines.registry import discover

    models = discover()
    expect = {"qwen3-8b": ("think", False), "qwen3-30b-a3b": ("think", False),
              "gpt-oss-20b": ("channel", True), "gpt-oss-120b": ("channel", True),
              "llama-3.3-70b-instruct-fp8": ("none", False), "gemma-3-27b-it": ("none", False),
              "mistral-small-3.2-24b-instruct": ("none", False)}
    for name, (style, always) in expect.items():
        spec = models[name].spec
        assert (spec.reasoning.style, spec.reasoning.always) == (style, always), name
        assert spec.checkpoint is not None and len(spec.checkpoint.source) > 10, name
        assert spec.tensor_parallel_size <= 8, name
    assert models["qwen3-30b-a3b"].spec.expert_parallel
    assert models["qwen3-30b-a3b"].spec.checkpoint.active_params_b == 3.3
    assert models["llama-3.3-70b-instruct-fp8"].spec.checkpoint.quantization == "fp8"
    assert models["mistral-small-3.2-24b-instruct"].spec.tokenizer_mode == "mistral"
    for name in ("gpt-oss-20b", "gpt-oss-120b"):
        assert not models[name].spec.verified_on_cpu and models[name].spec.runs_on == ["gpu"]


# ---- stages, echo, manifest, export ---------------------------------------------------------

def echo_family(reasoning: ReasoningSpec) -> EchoEngine:
    return EchoEngine(ModelSpec(name="echo-think", engine="echo", max_model_len=4096,
                                reasoning=reasoning))


def pairs_batch(n: int = 3) -> pa.Table:
    return pa.table({"pair_id": [f"p{i}" for i in range(n)],
                     "persona": ["age: 40\njob: nurse"] * n,
                     "instruction": [f"Question {i}?" for i in range(n)],
                     "original": [f"Original answer {i}." for i in range(n)],
                     "critique": [f"Critique {i}." for i in range(n)]})


def test_thinking_on_puts_the_answer_in_data_and_the_reasoning_apart():
    from persona_gen.feedback.stages import REVISION, VerifyStage
    from persona_gen.pipeline.stage import TextStage, apply_stage

    engine = echo_family(QWEN3)
    stage = TextStage(kind=REVISION, sampling=Sampling(max_tokens=64, seed=3),
                      thinking=Thinking(on=True))
    out = apply_stage(stage, engine, pairs_batch()).to_pylist()
    for row in out:
        assert row["error"] is None
        assert row["data"].startswith("echo:") and "think" not in row["data"]
        assert row["revision_reasoning"].startswith("thinking:")
        assert "</think>" not in row["revision_reasoning"]
        assert 0 < row["revision_reasoning_tokens"] < row["revision_output_tokens"]
    # A JSON stage with thinking on still parses its answer (the reasoning is not JSON).
    verify = VerifyStage(sampling=Sampling(max_tokens=64, temperature=0.0, seed=3),
                         judge_model="echo-think", thinking=Thinking(on=True))
    batch = pa.table({**{c: pairs_batch().column(c) for c in pairs_batch().column_names},
                      "data": [r["data"] for r in out]})
    judged = apply_stage(verify, engine, batch).to_pylist()
    assert all(r["error"] is None and r["preferred"] in ("original", "revision")
               for r in judged)
    assert all(r["verify_reasoning_tokens"] > 0 for r in judged)


def test_thinking_off_adds_no_columns_and_never_leaks_reasoning():
    from persona_gen.feedback.stages import REVISION
    from persona_gen.pipeline.stage import TextStage, apply_stage

    stage = TextStage(kind=REVISION, sampling=Sampling(max_tokens=64, seed=3))
    for reasoning in (QWEN3, R1, GPT_OSS):
        out = apply_stage(stage, echo_family(reasoning), pairs_batch())
        assert "revision_reasoning" not in out.column_names
        for text in out.column("data").to_pylist():
            assert text.startswith("echo:") and "thinking:" not in text, reasoning.style


def test_a_row_cut_inside_its_reasoning_is_an_error_not_an_empty_answer():
    from persona_gen.feedback.stages import REVISION
    from persona_gen.pipeline.stage import TextStage

    stage = TextStage(kind=REVISION, sampling=Sampling(max_tokens=8), thinking=Thinking(on=True))
    cut = ChatResult(id="p0", texts=[""], reasonings=["weighing and"],
                     finish_reasons=["length"], output_tokens=8, reasoning_tokens=8)
    out = stage.results(pairs_batch(1), [cut]).to_pylist()[0]
    assert out["error"] == "revision: cut by length inside its reasoning, before any answer"


def test_the_manifest_counts_reasoning_tokens_apart(tmp_path):
    from persona_gen.feedback.stages import REVISION
    from persona_gen.pipeline.stage import TextStage, apply_stage
    from persona_gen.run import recipe as R
    from persona_gen.run.config import load_config
    from persona_gen.run.execute import Attempt
    from persona_gen.run.manifest import Manifest
    from persona_gen.run.progress import StageProgress
    from persona_gen.storage import objects
    from persona_gen.storage.runref import RunRef

    cfg = load_config("jobs/configs/cpu_demo.yaml", [f"run.output={tmp_path}"])
    run = RunRef.at(str(tmp_path), "r")
    stage = TextStage(kind=REVISION, sampling=Sampling(max_tokens=64, seed=1),
                      thinking=Thinking(on=True))
    block = apply_stage(stage, echo_family(QWEN3), pairs_batch(4))
    objects.write_table_atomic(run.child(R.stage("revision").writes, "b0.parquet"), block)
    with ExitStack() as stack:
        call = Attempt(cfg, run, Manifest.new("r", cfg), StageProgress(False), stack, None)
        call.refresh()
    record = call.manifest.stages["revision"]
    assert record.reasoning_tokens == sum(block.column("revision_reasoning_tokens").to_pylist())
    assert 0 < record.reasoning_tokens < record.output_tokens
    assert call.manifest.stages["critique"].reasoning_tokens == 0


def test_export_leaves_reasoning_out_unless_asked():
    from persona_gen.export.rows import DataFormat, shape

    block = pa.table({"pair_id": ["p"], "persona_id": ["a"], "prompt_id": ["q"],
                      "question_type": ["train"], "prompt_split": ["seen"], "persona": ["x"],
                      "instruction": ["i"], "original": ["o"], "critique": ["c"],
                      "data": ["d"], "revision_reasoning": ["r"],
                      "revision_reasoning_tokens": [3]})
    split, pref = pa.array(["train"]), pa.array(["revision"])
    plain = shape(block, split, pref, DataFormat.paper)
    assert "revision_reasoning" not in plain.column_names
    assert "revision_reasoning_tokens" in plain.column_names
    assert "revision_reasoning" in shape(block, split, pref, DataFormat.paper,
                                         reasoning=True).column_names


def test_http_engine_takes_a_servers_reasoning_apart():
    import httpx

    from persona_gen.engines.openai_http import OpenAIEngine
    from persona_gen.engines.structured import Call

    spec = ModelSpec(name="q", engine="openai", base_url="http://127.0.0.1:9/v1", model="q",
                     reasoning=QWEN3)
    engine = OpenAIEngine(spec)
    try:
        req = ChatRequest(id="a", messages=[USER], thinking=Thinking(on=True))
        call = Call(0, req, req.sampling)
        assert engine.body(call)["chat_template_kwargs"] == {"enable_thinking": True}
        given = httpx.Response(200, json={"choices": [{"index": 0, "finish_reason": "stop",
            "message": {"content": "Yes.", "reasoning_content": "weigh it"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9,
                      "completion_tokens_details": {"reasoning_tokens": 6}}})
        out = engine._parse(given, call)
        assert (out.texts, out.reasonings, out.reasoning_tokens) == (["Yes."], ["weigh it"], 6)
        inline = httpx.Response(200, json={"choices": [{"index": 0, "finish_reason": "stop",
            "message": {"content": "<think>weigh it</think>\n\nYes."}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9}})
        out = engine._parse(inline, call)
        assert (out.texts, out.reasonings) == (["Yes."], ["weigh it"])
    finally:
        engine.close()


def test_a_stage_carries_its_thinking_into_every_request():
    from persona_gen.feedback.stages import CRITIQUE
    from persona_gen.pipeline.stage import TextStage

    stage = replace(TextStage(kind=CRITIQUE, sampling=Sampling(max_tokens=32)),
                    thinking=Thinking(on=True, budget=128))
    reqs = stage.requests(pairs_batch(2))
    assert all(r.thinking == Thinking(on=True, budget=128) for r in reqs)
    assert stage.reasoning_columns() == ("critique_reasoning", "critique_reasoning_tokens")
    assert TextStage(kind=CRITIQUE).reasoning_columns() == ()
