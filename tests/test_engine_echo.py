"""The echo engine: deterministic, schema-valid, context-limited like the vLLM engine."""

from __future__ import annotations

from typing import Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from persona_gen.engines import ChatRequest, Engine, Message, Sampling, create_engine
from persona_gen.engines.base import prompt_too_long


class Address(BaseModel):
    city: str = Field(min_length=3)
    zip_code: str = Field(min_length=5, max_length=5)


class Judgment(BaseModel):
    """A pydantic schema with $defs/$ref, enums, bounds, optionals and lists."""

    verdict: Literal["chosen", "rejected", "tie"]
    score: int = Field(ge=1, le=10)
    confidence: float = Field(gt=0.0, lt=1.0)
    consistent: bool
    reasons: list[str] = Field(min_length=2)
    home: Address
    previous: list[Address] = Field(default_factory=list, min_length=1)
    note: str | None = None


def _req(rid: str, text: str, **kw) -> ChatRequest:
    return ChatRequest(id=rid, messages=[Message(role="system", content="You are a persona."),
                                         Message(role="user", content=text)], **kw)


@pytest.fixture(scope="module")
def echo() -> Engine:
    return create_engine("echo")


def test_text_is_deterministic_hash_derived_and_sized_by_max_tokens(echo):
    a = echo.generate([_req("1", "What is fair?", sampling=Sampling(max_tokens=80, seed=3))])[0]
    b = echo.generate([_req("x", "What is fair?", sampling=Sampling(max_tokens=80, seed=3))])[0]
    c = echo.generate([_req("1", "What is fair?", sampling=Sampling(max_tokens=80, seed=4))])[0]
    d = echo.generate([_req("1", "What is just?", sampling=Sampling(max_tokens=80, seed=3))])[0]
    assert a.ok and a.text.startswith("echo:")
    assert a.text == b.text  # the id does not matter, only messages and seed
    assert len({a.text, c.text, d.text}) == 3
    assert len(a.text.split()) == 20 == a.output_tokens
    assert a.prompt_tokens == 7  # "You are a persona." + "What is fair?"


def test_a_fresh_engine_gives_the_same_text(echo):
    req = _req("1", "Stable across engines?", sampling=Sampling(max_tokens=40, seed=1))
    assert echo.generate([req])[0].text == create_engine("echo").generate([req])[0].text


def test_n_samples_are_distinct(echo):
    res = echo.generate([_req("1", "q", sampling=Sampling(n=5, max_tokens=16))])[0]
    assert len(res.texts) == 5 and len(set(res.texts)) == 5
    assert res.output_tokens == sum(len(t.split()) for t in res.texts)


def test_pydantic_schema_with_refs_is_always_valid(echo):
    schema = Judgment.model_json_schema()
    assert "$defs" in schema  # the test must exercise $ref resolution
    reqs = [_req(str(i), f"judge pair {i}", json_schema=schema, sampling=Sampling(n=2))
            for i in range(200)]
    results = echo.generate(reqs)
    validator = jsonschema.Draft202012Validator(schema)
    verdicts = set()
    for res in results:
        assert res.ok, res.error
        for text, parsed in zip(res.texts, res.parsed_as(Judgment), strict=True):
            assert Judgment.model_validate_json(text) == parsed
            validator.validate(parsed.model_dump(mode="json"))
            verdicts.add(parsed.verdict)
    assert verdicts == {"chosen", "rejected", "tie"}  # enum values vary with the hash


def test_hand_written_schema_bounds_are_respected(echo):
    schema = {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 18, "maximum": 19},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.01},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]},
                     "minItems": 3, "uniqueItems": True},
            "name": {"type": "string", "minLength": 40, "maxLength": 41},
            "kind": {"const": "person"},
            "maybe": {"type": ["null", "boolean"]},
        },
        "required": ["age", "ratio", "tags", "name", "kind"],
        "additionalProperties": False,
    }
    validator = jsonschema.Draft202012Validator(schema)
    for res in echo.generate([_req(str(i), f"p{i}", json_schema=schema) for i in range(100)]):
        assert res.ok, res.error
        validator.validate(res.parsed[0])
        assert sorted(res.parsed[0]["tags"]) == ["a", "b", "c"]


def test_choice_is_a_deterministic_pick(echo):
    choices = ["A", "B", "tie"]
    picks = [echo.generate([_req(str(i), f"which {i}?", choices=choices)])[0] for i in range(30)]
    assert all(p.ok and p.text in choices for p in picks)
    assert {p.text for p in picks} == set(choices)
    again = echo.generate([_req("0", "which 0?", choices=choices)])[0]
    assert again.text == picks[0].text


def test_over_long_prompt_fails_its_row_only_with_the_vllm_wording():
    engine = create_engine("echo", max_model_len=64)
    long_text = "word " * 100
    res = engine.generate([_req("ok", "short"), _req("long", long_text), _req("ok2", "fine")])
    assert [r.ok for r in res] == [True, False, True]
    assert res[1].error == prompt_too_long(104, 64)
    assert res[1].error == "prompt is 104 tokens, over the model's context of 64"


def test_max_tokens_is_clamped_to_the_room_left(echo):
    engine = create_engine("echo", max_model_len=64)
    res = engine.generate([_req("1", "word " * 40, sampling=Sampling(max_tokens=400))])[0]
    # 64 - 44 prompt words leaves 20 tokens: 5 words at four tokens a word.
    assert res.ok and res.output_tokens == 5


def test_unsupported_schema_is_a_row_error(echo):
    res = echo.generate([_req("1", "x", json_schema={"$ref": "https://example.com/s.json"}),
                         _req("2", "y")])
    assert not res[0].ok and "schema not supported" in res[0].error
    assert res[1].ok
