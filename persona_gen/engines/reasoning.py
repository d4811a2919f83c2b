"""How a model family reasons, and keeping that reasoning out of its answers.

A model file's `reasoning` block says which of three styles its family writes:

- `none`: the answer only (Llama 3.x, Gemma 3, Mistral Small 3.2, Qwen2.5);
- `think`: `<think>reasoning</think>` before the answer (Qwen3's hybrid thinking, the
  DeepSeek-R1 distills; R1-style templates open the block in the prompt already);
- `channel`: OpenAI's harmony format, an `analysis` channel before the `final` one (gpt-oss).

It also names vLLM's reasoning parser for the family (`--reasoning-parser`: vLLM then
applies a JSON schema or a choice only after the reasoning, and can end reasoning at a
token budget) and the chat-template arguments that switch thinking on and off (Qwen3:
`enable_thinking`; gpt-oss: `reasoning_effort`, which shortens its reasoning but never
removes it).

Every engine splits a sample here, the same way (`Reasoner.split`), so answers never carry
reasoning into a stage's columns, and JSON is parsed from the answer alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from persona_gen.config.base import StrictModel
from persona_gen.engines.base import Thinking

ReasoningStyle = Literal["none", "think", "channel"]

# Harmony's markers (github.com/openai/harmony, "The harmony response format").
CHANNEL = "<|channel|>"
MESSAGE = "<|message|>"
START = "<|start|>"
END = "<|end|>"
RETURN = "<|return|>"
CALL = "<|call|>"
CONSTRAIN = "<|constrain|>"
FINAL_HEADER = f"{CHANNEL}final"
"""Where a harmony answer starts: everything generated before it is reasoning."""
_HARMONY_STOPS = (END, RETURN, CALL, START)


class ReasoningSpec(StrictModel):
    """A model file's `reasoning` block: how its family reasons and how to switch it."""

    style: ReasoningStyle = "none"
    parser: str | None = None
    """vLLM's reasoning parser for the family (qwen3, deepseek_r1, openai_gptoss)."""
    start: str = "<think>"
    end: str = "</think>"
    """`think` style: the markers around the reasoning."""
    thinking_on: dict[str, Any] = Field(default_factory=dict)
    """Chat-template arguments for thinking on (e.g. {enable_thinking: true})."""
    thinking_off: dict[str, Any] = Field(default_factory=dict)
    """Chat-template arguments for thinking off (Qwen3: {enable_thinking: false}, whose
    template then writes an empty think block; gpt-oss: {reasoning_effort: low})."""
    always: bool = False
    """The family reasons even with thinking off (R1 distills, gpt-oss)."""
    budget: bool = False
    """A thinking-token budget can end its reasoning (vLLM's thinking_token_budget, which
    needs start and end markers: `think` style only)."""

    @property
    def reasons(self) -> bool:
        return self.style != "none"

    def template_kwargs(self, thinking: Thinking) -> dict[str, Any]:
        """What the chat template is rendered with for a request's thinking setting."""
        if self.style == "none":
            return {}
        return dict(self.thinking_on if thinking.on else self.thinking_off)

    def budget_for(self, thinking: Thinking) -> int | None:
        """vLLM's thinking_token_budget for a request: its own with thinking on; 0 with
        thinking off in a family that always reasons (an R1 distill), which closes its
        think block at once, as no template switch can; None: no budget."""
        if not (self.budget and self.parser):
            return None
        if thinking.on:
            return thinking.budget
        return 0 if self.always else None

    def problem(self) -> tuple[str, str] | None:
        """A cross-field problem as (field under `reasoning.`, message), or None."""
        if self.style == "none":
            if (self.parser or self.thinking_on or self.thinking_off or self.always
                    or self.budget):
                return "style", ("is 'none': parser, thinking_on, thinking_off, always and "
                                 "budget do not apply")
            return None
        if self.budget and self.style != "think":
            return "budget", "a thinking budget needs start and end markers ('think' style)"
        if self.style == "think" and not self.always and not self.thinking_off:
            return "thinking_off", ("a family that can stop thinking needs the template "
                                    "arguments that stop it (e.g. {enable_thinking: false}); "
                                    "else set always: true")
        return None


@dataclass(frozen=True)
class Split:
    """One sample, taken apart."""

    answer: str
    reasoning: str | None
    """None: the sample held no reasoning."""
    answer_at: int
    """Where the answer starts in the raw text (everything before it is reasoning)."""
    closed: bool = True
    """False: the sample ended inside its reasoning, so it has no answer yet."""


def split_think(text: str, start: str, end: str, opened: bool) -> Split:
    """`<think>reasoning</think>answer`; `opened`: the prompt already opened the block (or
    the family always reasons), so text without markers is reasoning that never ended."""
    at = text.find(end)
    if at >= 0:
        head = text[:at]
        begin = head.find(start)
        reasoning = head[begin + len(start):] if begin >= 0 else head
        rest = text[at + len(end):]
        answer = rest.lstrip()
        return Split(answer, reasoning.strip(), len(text) - len(answer))
    begin = text.find(start)
    if begin >= 0 and not text[:begin].strip():
        return Split("", text[begin + len(start):].strip(), len(text), closed=False)
    if opened:
        return Split("", text.strip(), len(text), closed=False)
    return Split(text, None, 0)


def split_harmony(text: str) -> Split:
    """Harmony messages as generated after `<|start|>assistant`: the `analysis` (and
    `commentary`) channels are reasoning, the `final` channel is the answer. Text without
    any channel marker is taken as the answer."""
    if CHANNEL not in text:
        return Split(text, None, 0)
    reasoning: list[str] = []
    answer: str | None = None
    answer_at = len(text)
    for found in re.finditer(re.escape(CHANNEL), text):
        header_end = text.find(MESSAGE, found.end())
        if header_end < 0:
            continue  # cut inside a header
        channel = re.split(r"[\s<]", text[found.end():header_end], maxsplit=1)[0]
        body_start = header_end + len(MESSAGE)
        stops = [i for i in (text.find(s, body_start) for s in _HARMONY_STOPS) if i >= 0]
        body = text[body_start:min(stops) if stops else len(text)]
        if channel == "final" and answer is None:
            answer, answer_at = body, found.start()
        elif channel != "final":
            reasoning.append(body.strip())
    joined = "\n\n".join(r for r in reasoning if r) or None
    if answer is None:
        return Split("", joined if joined is not None else "", len(text), closed=False)
    return Split(answer.strip(), joined, answer_at)


def prompt_opens(spec: ReasoningSpec, prompt_text: str) -> bool:
    """True when the rendered prompt leaves a think block open (R1-style templates end with
    `<think>`), so the model starts inside its reasoning."""
    if spec.style != "think":
        return False
    return prompt_text.rfind(spec.start) > prompt_text.rfind(spec.end)


def _find(ids: Sequence[int], marker: Sequence[int]) -> int:
    n = len(marker)
    if n == 0:
        return -1
    first = marker[0]
    for i in range(len(ids) - n + 1):
        if ids[i] == first and list(ids[i:i + n]) == list(marker):
            return i
    return -1


class Reasoner:
    """Splits a family's samples into (answer, reasoning) and counts the reasoning tokens.

    `encode` (the model's tokenizer, text to ids without special tokens added) lets token
    counts come from the generated ids; without it (the echo engine) they are whitespace
    words, as that engine counts every token.
    """

    def __init__(self, spec: ReasoningSpec, encode: Callable[[str], list[int]] | None = None):
        self.spec = spec
        self._marker: list[int] = []
        if encode is not None and spec.style != "none":
            self._marker = list(encode(spec.end if spec.style == "think" else FINAL_HEADER))

    def split(self, text: str, opened: bool = False) -> Split:
        if self.spec.style == "think":
            return split_think(text, self.spec.start, self.spec.end,
                               opened or self.spec.always)
        if self.spec.style == "channel":
            return split_harmony(text)
        return Split(text, None, 0)

    def reasoning_tokens(self, split: Split, text: str,
                         token_ids: Sequence[int] | None = None) -> int:
        """Tokens of the sample spent before its answer (markers included)."""
        if split.reasoning is None:
            return 0
        if token_ids is None or not self._marker:
            return len(text[:split.answer_at].split())
        if not split.closed:
            return len(token_ids)
        at = _find(token_ids, self._marker)
        if at < 0:
            return len(text[:split.answer_at].split())  # markers not as encoded: estimate
        return at + len(self._marker) if self.spec.style == "think" else at


def harmony_structural_tag(json_schema: dict[str, Any] | None,
                           choices: Sequence[str] | None) -> str:
    """An xgrammar structural tag for gpt-oss: free reasoning in an optional analysis
    channel, then the constraint inside the final channel (the layout vLLM's own harmony
    parser builds for a chat request with a response format: vllm/parser/harmony.py,
    `_adjust_output_format`). A JSON schema or choice applied from the first token would
    force the answer into the analysis channel."""
    if json_schema is not None:
        content: dict[str, Any] = {"type": "json_schema", "json_schema": json_schema}
    elif choices:
        content = {"type": "or", "elements": [{"type": "const_string", "value": c}
                                              for c in choices]}
    else:
        raise ValueError("a structural tag needs a JSON schema or choices")
    analysis = {"type": "optional", "content": {"type": "sequence", "elements": [
        {"type": "tag", "begin": f"{CHANNEL}analysis{MESSAGE}",
         "content": {"type": "any_text"}, "end": END},
        {"type": "const_string", "value": f"{START}assistant"}]}}
    # "" ends the final message at the stop token (<|return|>): xgrammar forbids stop
    # tokens inside a constraint, as vLLM's harmony parser notes.
    final = {"type": "tag", "begin": f"{FINAL_HEADER}{MESSAGE}", "content": content,
             "end": [END, ""]}
    return json.dumps({"type": "structural_tag",
                       "format": {"type": "sequence", "elements": [analysis, final]}})
