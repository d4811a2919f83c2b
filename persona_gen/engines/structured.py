"""Structured outputs shared by the model engines: parse, validate, and retry bad samples.

Constrained decoding makes invalid JSON rare but not impossible (a sample cut off by
max_tokens, a server that ignores response_format). Samples that fail are asked for again,
up to the model's `json_retries`; a request still short of valid samples becomes that row's
error, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from persona_gen.engines.base import ChatRequest, ChatResult, Sampling


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema to put in ChatRequest.json_schema for a pydantic model."""
    return model.model_json_schema()


@lru_cache(maxsize=256)
def _validator_for(schema_text: str) -> Any:
    import jsonschema

    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def validate_json(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(parsed value, None) when `text` is JSON valid for `schema`, else (None, reason)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        snippet = text.strip()[:60].replace("\n", " ")
        return None, f"not valid JSON ({exc.msg} at char {exc.pos}): {snippet!r}"
    validator = _validator_for(json.dumps(schema, sort_keys=True))
    error = next(iter(validator.iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        return None, f"JSON does not match the schema at {where}: {error.message[:120]}"
    return value, None


def check_choice(text: str, choices: list[str]) -> tuple[str | None, str | None]:
    value = text.strip()
    if value in choices:
        return value, None
    return None, f"output {value[:40]!r} is not one of {choices}"


@dataclass
class Call:
    """One generation call: `n` samples for `request`, on attempt `attempt` (0 = first)."""

    index: int
    request: ChatRequest
    sampling: Sampling
    attempt: int = 0


@dataclass
class RawOutput:
    """What an engine got back for one Call, before any parsing."""

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    """One per text, where the engine says why it ended ('stop', 'length', ...)."""
    reasonings: list[str | None] = field(default_factory=list)
    """One per text where the family reasons: the reasoning taken out of that text
    (persona_gen.engines.reasoning), so `texts` hold answers only."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    """The part of output_tokens spent reasoning."""
    error: str | None = None
    latency_s: float | None = None
    """Time spent on this call alone, where the engine knows it (HTTP); None: the batch's."""


@dataclass
class _Row:
    wanted: int
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    parsed: list[Any] = field(default_factory=list)
    bad_texts: list[str] = field(default_factory=list)
    bad_reasons: list[str | None] = field(default_factory=list)
    reasonings: list[str | None] = field(default_factory=list)
    bad_reasonings: list[str | None] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    error: str | None = None
    last_problem: str | None = None
    attempts: int = 0
    latency_s: float | None = None


def effective_sampling(request: Sampling, defaults: Sampling) -> Sampling:
    """The request's sampling, with the model's defaults for the fields the request left unset."""
    from_model = defaults.model_fields_set - request.model_fields_set
    if not from_model:
        return request
    merged = request.model_dump()
    merged.update({k: getattr(defaults, k) for k in from_model})
    return Sampling.model_validate(merged)


def retry_sampling(sampling: Sampling, missing: int, attempt: int) -> Sampling:
    """Sampling for a retry: only the missing samples, a fresh seed, and some randomness
    (at temperature 0 a retry would repeat the same bad output)."""
    seed = None if sampling.seed is None else sampling.seed + 7919 * attempt
    return sampling.model_copy(update={"n": missing, "seed": seed,
                                       "temperature": max(sampling.temperature, 0.7)})


def run_with_retries(
    requests: list[ChatRequest],
    samplings: list[Sampling],
    run_calls: Callable[[list[Call]], list[RawOutput]],
    retries: int,
) -> list[ChatResult]:
    """Run every request through `run_calls`, re-asking for samples that fail their constraint.

    `run_calls` takes a list of calls and returns one RawOutput per call, in order; it must not
    raise for a single call's failure (set RawOutput.error instead).
    """
    started = time.monotonic()
    rows = [_Row(wanted=s.n) for s in samplings]
    calls = [Call(i, r, s) for i, (r, s) in enumerate(zip(requests, samplings, strict=True))]
    while calls:
        outputs = run_calls(calls)
        if len(outputs) != len(calls):
            raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(calls)} calls")
        next_calls = [j for j in (_take(rows[call.index], call, out, retries)
                                 for call, out in zip(calls, outputs, strict=True)) if j is not None]
        calls = next_calls
    return _results(requests, rows, time.monotonic() - started)


def _take(row: _Row, call: Call, out: RawOutput, retries: int) -> Call | None:
    """Fold one call's output into its row; the retry call for missing samples, if any."""
    row.attempts += 1
    row.prompt_tokens = max(row.prompt_tokens, out.prompt_tokens)
    row.output_tokens += out.output_tokens
    row.reasoning_tokens += out.reasoning_tokens
    if out.latency_s is not None:
        row.latency_s = (row.latency_s or 0.0) + out.latency_s
    if out.error is not None:
        row.error = out.error
        return None
    missing = _collect(row, call.request, out.texts, out.finish_reasons, out.reasonings)
    if missing and call.attempt < retries:
        return Call(call.index, call.request, retry_sampling(call.sampling, missing, call.attempt + 1),
                    call.attempt + 1)
    if missing:
        problem = row.last_problem or f"got {len(row.texts)} of {row.wanted} samples"
        row.error = f"no valid output after {row.attempts} attempt(s): {problem}"
    return None


async def run_with_retries_async(
    requests: list[ChatRequest],
    samplings: list[Sampling],
    run_call: Callable[[Call], Awaitable[RawOutput]],
    retries: int,
) -> list[ChatResult]:
    """`run_with_retries` for engines that take requests one at a time while running others.

    Each request is its own task: a sample that fails its constraint is asked for again as
    soon as it comes back, into the engine that is still busy with the rest (no waiting for
    the batch to finish). `run_call` must not raise for a single call's failure.
    """
    started = time.monotonic()
    rows = [_Row(wanted=s.n) for s in samplings]

    async def one(call: Call) -> None:
        next_call: Call | None = call
        while next_call is not None:
            out = await run_call(next_call)
            next_call = _take(rows[next_call.index], next_call, out, retries)

    # A task group, not gather: when one call raises (a dead engine), the others are
    # cancelled, which aborts their requests in the engine instead of leaving them running.
    try:
        async with asyncio.TaskGroup() as group:
            for i, (r, s) in enumerate(zip(requests, samplings, strict=True)):
                group.create_task(one(Call(i, r, s)))
    except BaseExceptionGroup as failed:
        # Callers look at what failed (a dead engine), not at the group around it.
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return _results(requests, rows, time.monotonic() - started)


def _results(requests: list[ChatRequest], rows: list[_Row], latency: float) -> list[ChatResult]:
    results = []
    for req, row in zip(requests, rows, strict=True):
        texts = row.texts if row.error is None else row.texts + row.bad_texts
        reasons = (row.finish_reasons if row.error is None
                   else row.finish_reasons + row.bad_reasons)
        reasonings = row.reasonings if row.error is None else row.reasonings + row.bad_reasonings
        results.append(ChatResult(
            id=req.id,
            texts=texts,
            finish_reasons=reasons if len(reasons) == len(texts) else [],
            parsed=row.parsed if row.error is None else [],
            reasonings=reasonings if any(r is not None for r in reasonings) else [],
            prompt_tokens=row.prompt_tokens,
            output_tokens=row.output_tokens,
            reasoning_tokens=row.reasoning_tokens,
            latency_s=latency if row.latency_s is None else row.latency_s,
            error=row.error,
        ))
    return results


def _collect(row: _Row, request: ChatRequest, texts: list[str],
             reasons: list[str | None], reasonings: list[str | None] | None = None) -> int:
    """Add the good samples from `texts` to the row; return how many are still missing."""
    reasons = reasons if len(reasons) == len(texts) else [None] * len(texts)
    reasonings = reasonings if reasonings and len(reasonings) == len(texts) else (
        [None] * len(texts))
    for text, reason, reasoning in zip(texts, reasons, reasonings, strict=True):
        if request.json_schema is not None:
            value, problem = validate_json(text, request.json_schema)
        elif request.choices:
            value, problem = check_choice(text, request.choices)
        else:
            value, problem = None, None
        if problem is not None:
            row.last_problem = problem
            row.bad_texts.append(text)
            row.bad_reasons.append(reason)
            row.bad_reasonings.append(reasoning)
            continue
        row.texts.append(str(value) if request.choices else text)
        row.finish_reasons.append(reason)
        row.reasonings.append(reasoning)
        if request.json_schema is not None:
            row.parsed.append(value)
    return max(0, row.wanted - len(row.texts))
