"""Today's families in real vLLM on CPU: a tiny random-weight checkpoint of each
architecture with its family's chat template (tests/families.py), its model file written
by `persona-gen models add`, validated by `models check`, loaded and asked a free-text,
a JSON-schema and a choice request.

Random weights give random text: these check the plumbing (the template and its
system-role handling, thinking off, the reasoning split, the family's stop token ending
constrained outputs), never the words. Each load takes tens of seconds, so they run in
`make test-families` (marker `families`), not in `make test`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from persona_gen.cli.main import app
from persona_gen.engines.base import ChatRequest, Message, Sampling, Thinking
from persona_gen.engines.registry import MODELS_DIR_ENV
from tests import families

pytestmark = pytest.mark.families
runner = CliRunner()
LOADED = ["tiny-qwen3", "tiny-qwen3-moe", "tiny-llama3", "tiny-gemma3", "tiny-mistral",
          "tiny-r1-distill"]
SYSTEM = Message(role="system", content="You answer in one short sentence.")
USER = Message(role="user", content="Should a city close its centre to cars?")
SCHEMA = {"type": "object", "properties": {"preferred": {"type": "string", "enum": ["A", "B"]},
                                           "reason": {"type": "string", "maxLength": 40}},
          "required": ["preferred", "reason"], "additionalProperties": False}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("family-models")


@pytest.fixture(params=LOADED)
def family(request: pytest.FixtureRequest, models_dir: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """(name, model file) written by `models add` and passing `models check`."""
    key = request.param
    monkeypatch.setenv(MODELS_DIR_ENV, str(models_dir))
    result = runner.invoke(app, ["models", "add", str(families.folder(key)), "--force"])
    assert result.exit_code == 0, result.output
    check = runner.invoke(app, ["models", "check", key, "--no-load"])
    assert check.exit_code == 0 and f"{key}: valid" in check.output, check.output
    yield key, models_dir / f"{key}.yaml"


def _requests(thinking: Thinking) -> list[ChatRequest]:
    s = Sampling(max_tokens=24, temperature=0.8, seed=1)
    return [
        ChatRequest(id="text", messages=[SYSTEM, USER], sampling=s, thinking=thinking),
        ChatRequest(id="json", messages=[SYSTEM, USER], json_schema=SCHEMA,
                    sampling=s.model_copy(update={"max_tokens": 48}), thinking=thinking),
        ChatRequest(id="choice", messages=[USER], choices=["yes", "no"], sampling=s,
                    thinking=thinking),
    ]


def test_family_loads_and_answers_on_cpu(family: tuple[str, Path]) -> None:
    from persona_gen.engines.factory import create_engine
    from persona_gen.engines.registry import get_spec

    name, path = family
    spec = get_spec(name)
    written = yaml.safe_load(path.read_text())
    engine = create_engine(spec)  # one load per family: every check below shares it
    try:
        # The prompt vLLM got is the family's template, rendered with thinking off.
        tok = engine.tokenizer
        messages = [{"role": m.role, "content": m.content} for m in (SYSTEM, USER)]
        extra = spec.reasoning.template_kwargs(Thinking())
        expected = tok.encode(tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **extra),
            add_special_tokens=False)
        text, js, choice = engine.generate(_requests(Thinking()))
        assert text.ok, text.error
        assert text.prompt_tokens == len(expected)
        assert 0 < text.output_tokens <= 24 and text.finish_reason in ("stop", "length")
        assert js.ok, js.error
        obj = js.parsed[0]
        assert obj["preferred"] in ("A", "B") and json.loads(js.text) == obj
        # Constrained outputs end on the family's own stop token: 'stop', nothing after.
        assert js.finish_reason == "stop"
        assert choice.ok and choice.text in ("yes", "no") and choice.finish_reason == "stop"
        if written.get("reasoning", {}).get("always"):
            # R1 distill: its template opens <think>; thinking off closes it at once
            # (budget 0), so the answer is all answer and the JSON parses.
            assert js.reasoning == "" and "</think>" not in js.text
        else:
            assert not js.reasonings and not text.reasonings
        if name == "tiny-qwen3":
            qwen3_thinking(engine)
        if name == "tiny-r1-distill":
            r1_budget(engine)
    finally:
        engine.close()


def qwen3_thinking(engine) -> None:
    """Thinking off renders the template's no-thinking form; thinking on with a random
    model (which never writes <think>) splits nothing off."""
    prompt = engine.tokenizer.decode(engine.render([SYSTEM, USER], Thinking()))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    res = engine.generate([_requests(Thinking(on=True))[0]])[0]
    assert res.ok and not res.reasonings and res.reasoning_tokens == 0


def r1_budget(engine) -> None:
    """vLLM forces </think> after the budget (its thinking_token_budget); the split takes
    the reasoning out; the JSON schema applies only after it (the reasoning parser)."""
    on = Thinking(on=True, budget=6)
    text, js, _ = engine.generate(_requests(on))
    for res in (text, js):
        assert res.ok, res.error
        assert res.reasoning is not None and res.reasoning.strip()
        # The budget counts from the prompt's open <think>; + the forced </think>.
        assert 2 <= res.reasoning_tokens <= on.budget + 1
        assert res.reasoning_tokens < res.output_tokens
        assert "</think>" not in res.text and "</think>" not in res.reasoning
    assert js.parsed[0]["preferred"] in ("A", "B")
