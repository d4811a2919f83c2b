"""The `echo` engine: no model, deterministic output derived from a hash of the request.

For pipeline plumbing, resumption tests and throughput benchmarks: text reads
"echo:<hash> word word ..." (about max_tokens/4 words, so it is plainly not a model), JSON
is generated from the request's schema so it always validates, and a choice is picked from
the list. Token counts are whitespace words. A model file whose `reasoning` style is not
`none` makes it write a reasoning block before each answer when the request's thinking is
on (or the family always reasons), in the family's markup, which the shared splitter
(persona_gen.engines.reasoning) takes out again: plumbing for reasoning models. It applies the model's context limit exactly
as the vLLM engine does, so over-long prompts fail the same way in both.

Speed matters (benchmarks push 317,200 rows through it): no schema validation per
request, no regexes, a tiny integer generator instead of random.Random.
"""

from __future__ import annotations

import json
import time
from typing import Any

from persona_gen.engines.base import ChatRequest, ChatResult, prompt_too_long
from persona_gen.engines.reasoning import (
    CHANNEL,
    END,
    FINAL_HEADER,
    MESSAGE,
    START,
    Reasoner,
    ReasoningSpec,
)
from persona_gen.engines.registry import ModelSpec
from persona_gen.engines.structured import effective_sampling
from persona_gen.hashing import stable_int

_MASK = (1 << 64) - 1
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "hi",
              "jo", "be")


def _word_pool(size: int = 1024) -> list[str]:
    # Made-up two/three-syllable words: deterministic, varied, obviously not language.
    words = []
    for i in range(size):
        a, b, c = i % 16, (i // 16) % 16, (i // 256) % 4
        words.append(_SYLLABLES[a] + _SYLLABLES[b] + ("" if c == 0 else _SYLLABLES[(a + b + c) % 16]))
    return words


_POOL = _word_pool()
_POOL2 = _POOL + _POOL


class _Rng:
    """xorshift64*: deterministic from the seed, a few operations per draw."""

    __slots__ = ("s",)

    def __init__(self, seed: int) -> None:
        self.s = (seed & _MASK) or 0x9E3779B97F4A7C15

    def below(self, n: int) -> int:
        x = self.s
        x ^= x >> 12
        x ^= (x << 25) & _MASK
        x ^= x >> 27
        self.s = x
        return ((x * 0x2545F4914F6CDD1D) & _MASK) % n if n > 0 else 0


_INFO: dict[str, tuple[int, int]] = {}


def text_info(text: str) -> tuple[int, int]:
    """(whitespace words, 64-bit digest) of a message; memoised because one persona text
    leads hundreds of requests and both are the costly part of a request."""
    info = _INFO.get(text)
    if info is None:
        if len(_INFO) > 100_000:
            _INFO.clear()
        info = _INFO[text] = (len(text.split()), stable_int(text))
    return info


_ROLE = {"system": 1, "user": 2, "assistant": 3}


def request_digest(request: ChatRequest, seed: int | None) -> tuple[int, int]:
    """(prompt words, 64-bit hash of messages, roles and seed), stable across processes."""
    h = sample_hash(0 if seed is None else seed + 1, 0)
    count = 0
    for m in request.messages:
        n, digest = text_info(m.content)
        count += n
        h = sample_hash(h ^ digest, _ROLE[m.role])
    return count, h


def sample_hash(base: int, index: int) -> int:
    # splitmix64 finaliser: distinct samples of one request get unrelated-looking hashes.
    z = (base + 0x9E3779B97F4A7C15 * (index + 1)) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def echo_text(h: int, max_tokens: int) -> str:
    count = max(1, max_tokens // 4)
    start = h % len(_POOL)
    if count - 1 <= len(_POOL):
        words = _POOL2[start:start + count - 1]
    else:
        words = [_POOL[(start + i) % len(_POOL)] for i in range(count - 1)]
    return f"echo:{h:016x} " + " ".join(words) if words else f"echo:{h:016x}"


def with_reasoning(spec: ReasoningSpec, h: int, words: int, answer: str) -> str:
    """`answer` as a reasoning family writes it, after `words` words of reasoning."""
    thought = echo_text(h ^ 0x5EED, words * 4).replace("echo:", "thinking:", 1) if words else ""
    if spec.style == "channel":
        return (f"{CHANNEL}analysis{MESSAGE}{thought}{END}{START}assistant"
                f"{FINAL_HEADER}{MESSAGE}{answer}")
    # A family that always reasons gets its think block opened by the template.
    opening = "" if spec.always else f"{spec.start} "
    return f"{opening}{thought} {spec.end}\n\n{answer}"


# --- JSON from a schema ---------------------------------------------------------------------

_MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "echo@example.com",
    "uri": "https://example.com/echo",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"echo engine: only local $ref are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _merge(parts: list[dict[str, Any]], root: dict[str, Any]) -> dict[str, Any]:
    """allOf: one schema with the parts' keys, properties merged and required unioned."""
    out: dict[str, Any] = {}
    props: dict[str, Any] = {}
    required: list[str] = []
    for part in parts:
        if "$ref" in part:
            part = {**_resolve(part["$ref"], root), **{k: v for k, v in part.items() if k != "$ref"}}
        if "allOf" in part:
            part = {**_merge(part["allOf"], root), **{k: v for k, v in part.items() if k != "allOf"}}
        props.update(part.get("properties", {}))
        required.extend(r for r in part.get("required", []) if r not in required)
        out.update({k: v for k, v in part.items() if k not in ("properties", "required")})
    if props:
        out["properties"] = props
    if required:
        out["required"] = required
    return out


def example(schema: Any, root: dict[str, Any], rng: _Rng, depth: int = 0) -> Any:
    """A value valid for `schema` (object/array/string/number/integer/boolean/null, enum,
    const, $ref, allOf, anyOf/oneOf, min/max bounds, minItems/maxItems, minLength/maxLength)."""
    if schema is True or not schema:
        return "echo"
    if "$ref" in schema:
        target = _resolve(schema["$ref"], root)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return example({**target, **rest} if rest else target, root, rng, depth)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        options = schema["enum"]
        return options[rng.below(len(options))]
    if "allOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return example({**_merge(schema["allOf"], root), **rest}, root, rng, depth)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        non_null = [o for o in options if o.get("type") != "null"]
        if not non_null or (depth >= _MAX_DEPTH and len(non_null) < len(options)):
            return None
        return example(non_null[0], root, rng, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if not kinds:
            return None
        kind = kinds[0]
    if kind is None:
        kind = ("object" if "properties" in schema else "array" if "items" in schema
                else "string")
    maker = _MAKERS.get(kind)
    if maker is None:
        raise ValueError(f"echo engine: unsupported schema type {kind!r}")
    return maker(schema, root, rng, depth)


def _object(schema: dict[str, Any], root: dict[str, Any], rng: _Rng, depth: int) -> Any:
    props: dict[str, Any] = schema.get("properties", {})
    required = schema.get("required", [])
    deep = depth >= _MAX_DEPTH
    out = {k: example(v, root, rng, depth + 1) for k, v in props.items()
           if not deep or k in required}
    for key in required:
        out.setdefault(key, "echo")
    extra = schema.get("additionalProperties")
    i = 0
    while len(out) < schema.get("minProperties", 0):
        out[f"key{i}"] = example(extra if isinstance(extra, dict) else {}, root, rng, depth + 1)
        i += 1
    return out


def _array(schema: dict[str, Any], root: dict[str, Any], rng: _Rng, depth: int) -> Any:
    prefix = schema.get("prefixItems", [])
    items = schema.get("items", {})
    low = schema.get("minItems", 0)
    high = schema.get("maxItems")
    count = max(low, len(prefix), 0 if depth >= _MAX_DEPTH else 2)
    if high is not None:
        count = min(count, high)
    out: list[Any] = []
    seen: set[str] = set()
    unique = schema.get("uniqueItems", False)
    tries = 0
    while len(out) < count and tries < count * 8 + 8:
        tries += 1
        i = len(out)
        sub = prefix[i] if i < len(prefix) else items
        value = example(sub, root, rng, depth + 1)
        if unique:
            key = json.dumps(value, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
        out.append(value)
    return out


def _string(schema: dict[str, Any], root: dict[str, Any], rng: _Rng, depth: int) -> Any:
    fmt = schema.get("format")
    if fmt in _FORMATS:
        return _FORMATS[fmt]
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    start = rng.below(len(_POOL))
    text = " ".join(_POOL2[start:start + 3])
    if len(text) < low:
        text = text + "x" * (low - len(text))
    if high is not None and len(text) > high:
        text = text[:high]
    return text


def _bounds(schema: dict[str, Any], step: float) -> tuple[float, float]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        low = schema["exclusiveMinimum"] + step if low is None else max(low, schema["exclusiveMinimum"] + step)
    if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
        high = schema["exclusiveMaximum"] - step if high is None else min(high, schema["exclusiveMaximum"] - step)
    if low is None and high is None:
        low, high = 0, 100
    elif low is None:
        low = high - 100
    elif high is None:
        high = low + 100
    return low, high


def _integer(schema: dict[str, Any], root: dict[str, Any], rng: _Rng, depth: int) -> Any:
    low, high = _bounds(schema, 1)
    lo, hi = int(-(-low // 1)), int(high // 1)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int) and multiple > 0:
        first = -(-lo // multiple)
        last = hi // multiple
        return (first + rng.below(max(1, last - first + 1))) * multiple
    return lo + rng.below(max(1, hi - lo + 1))


def _number(schema: dict[str, Any], root: dict[str, Any], rng: _Rng, depth: int) -> Any:
    low, high = _bounds(schema, 1e-3)
    value = low + (high - low) * rng.below(1001) / 1000
    return min(max(round(value, 3), low), high)


def _boolean(schema: dict[str, Any], root: dict[str, Any], rng: _Rng, depth: int) -> Any:
    return rng.below(2) == 1


def _null(schema: dict[str, Any], root: dict[str, Any], rng: _Rng, depth: int) -> Any:
    return None


_MAKERS = {"object": _object, "array": _array, "string": _string, "integer": _integer,
           "number": _number, "boolean": _boolean, "null": _null}


class EchoEngine:
    """Deterministic stand-in for a model; honours the spec's context length."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.max_model_len = spec.max_model_len
        self.reasoner = Reasoner(spec.reasoning)

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return [self._one(r) for r in requests]

    def _one(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        sampling = effective_sampling(request.sampling, self.spec.sampling)
        prompt, base = request_digest(request, sampling.seed)
        if prompt >= self.max_model_len:
            return ChatResult(
                id=request.id, texts=[], parsed=[], prompt_tokens=prompt, output_tokens=0,
                latency_s=time.perf_counter() - started,
                error=prompt_too_long(prompt, self.max_model_len))
        max_tokens = min(sampling.max_tokens, self.max_model_len - prompt)
        texts: list[str] = []
        parsed: list[Any] = []
        reasonings: list[str | None] = []
        out_tokens = reasoning_tokens = 0
        r = self.spec.reasoning
        thinks = r.reasons and (request.thinking.on or r.always)
        # As in vLLM, a budget ends the reasoning (ReasoningSpec.budget_for).
        budget = r.budget_for(request.thinking)
        think_words = budget if budget is not None else max(
            1, max_tokens // (8 if request.thinking.on else 16))
        try:
            for i in range(sampling.n):
                h = sample_hash(base, i)
                if request.json_schema is not None:
                    value = example(request.json_schema, request.json_schema, _Rng(h))
                    parsed.append(value)
                    text = json.dumps(value, ensure_ascii=False)
                    out_tokens += len(text.split())
                elif request.choices:
                    text = request.choices[(base + i) % len(request.choices)]
                    out_tokens += len(text.split())
                else:
                    text = echo_text(h, max_tokens)
                    out_tokens += max(1, max_tokens // 4)  # the words echo_text wrote
                if thinks:
                    raw = with_reasoning(r, h, think_words, text)
                    split = self.reasoner.split(raw)
                    spent = self.reasoner.reasoning_tokens(split, raw)
                    text = split.answer
                    reasonings.append(split.reasoning)
                    out_tokens += spent
                    reasoning_tokens += spent
                texts.append(text)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            return ChatResult(
                id=request.id, texts=[], parsed=[], prompt_tokens=prompt, output_tokens=0,
                latency_s=time.perf_counter() - started, error=f"schema not supported: {exc}")
        # Echo writes about max_tokens / 4 words, so it always ends on its own.
        return ChatResult(
            id=request.id, texts=texts, parsed=parsed, finish_reasons=["stop"] * len(texts),
            reasonings=reasonings, prompt_tokens=prompt, output_tokens=out_tokens,
            reasoning_tokens=reasoning_tokens, latency_s=time.perf_counter() - started,
            error=None)

    def close(self) -> None:
        """Nothing to release."""
