"""OpenAI-compatible HTTP engine: a `vllm serve` endpoint, or a hosted API used as a judge.

Requests run on a bounded thread pool (at most `concurrency` in flight; engine hosts split
a model file's `concurrency` between them, so it is the total for the run); 429, 408, 5xx,
timeouts and dropped connections are retried with exponential backoff (a server's
Retry-After wins). A request still failing that way after its retry budget raises
EngineUnavailable for the whole call once every row of it has been tried: the block is not
committed, and a resume retries it. Only answers that no retry can change (a 4xx other than
408 and 429, a malformed response) become that row's error. The API key comes from the
environment variable the spec names and is never logged.
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.engines.failures import EngineUnavailable
from persona_gen.engines.reasoning import Reasoner
from persona_gen.engines.registry import ModelSpec
from persona_gen.engines.structured import Call, RawOutput, effective_sampling, run_with_retries
from persona_gen.errors import UserError

MAX_DELAY_S = 60.0
_CHOICE_KEY = "choice"


def retryable(status: int) -> bool:
    """Rate limits, request timeouts and server-side failures are worth another try."""
    return status in (408, 429) or 500 <= status < 600


def _choice_schema(choices: list[str]) -> dict[str, Any]:
    # Hosted APIs constrain only with a JSON schema, whose root must be an object: the choice
    # travels wrapped as {"choice": ...} and is unwrapped on return.
    return {"type": "object", "properties": {_CHOICE_KEY: {"type": "string", "enum": choices}},
            "required": [_CHOICE_KEY], "additionalProperties": False}


def _unwrap_choice(text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, dict) and isinstance(value.get(_CHOICE_KEY), str):
        return value[_CHOICE_KEY]
    return text


def _error_detail(resp: httpx.Response) -> str:
    """The server's own error message where it gives one, else the start of the body."""
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        message = err.get("message", err) if isinstance(err, dict) else err
        text = message if isinstance(message, str) else json.dumps(message)
    except (ValueError, AttributeError):
        text = resp.text
    text = " ".join(text.split())
    return text[:200]


class _GaveUp(RawOutput):
    """A request that kept failing in a way worth retrying, past its retry budget."""


class OpenAIEngine:
    def __init__(self, spec: ModelSpec, *, api_key: str | None = None) -> None:
        assert spec.base_url is not None  # guaranteed by ModelSpec.check
        self.spec = spec
        self.name = spec.name
        self.max_model_len = spec.max_model_len
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        if api_key is None and spec.api_key_env:
            api_key = os.environ.get(spec.api_key_env)
            if not api_key:
                raise UserError(f"set the environment variable {spec.api_key_env} to this "
                                f"API's key", source=f"model '{spec.name}'")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(spec.timeout_s, connect=min(10.0, spec.timeout_s)),
            limits=httpx.Limits(max_connections=spec.concurrency,
                                max_keepalive_connections=spec.concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=spec.concurrency,
                                        thread_name_prefix=f"http-{spec.name}")
        self._model: str | None = spec.model
        self._reasoner = Reasoner(spec.reasoning)

    def served_model(self) -> str:
        """The model name to send; asks the server's /models when the spec names none."""
        if self._model is None:
            url = self.spec.base_url.rstrip("/") + "/models"  # type: ignore[union-attr]
            resp = self._client.get(url)
            resp.raise_for_status()
            data = resp.json().get("data") or []
            if not data:
                raise UserError("the server lists no models", source=url)
            self._model = str(data[0]["id"])
        return self._model

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        try:
            self.served_model()
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            problem = f"cannot ask {self.spec.base_url} which model it serves: {exc}"
            if status is None or retryable(status):
                raise EngineUnavailable(problem) from None
            return [ChatResult(id=r.id, error=problem) for r in requests]
        except (httpx.HTTPError, UserError, ValueError, KeyError) as exc:
            problem = f"cannot ask {self.spec.base_url} which model it serves: {exc}"
            return [ChatResult(id=r.id, error=problem) for r in requests]
        samplings = [effective_sampling(r.sampling, self.spec.sampling) for r in requests]
        return run_with_retries(requests, samplings, self._run, self.spec.json_retries)

    def _run(self, calls: list[Call]) -> list[RawOutput]:
        outputs = list(self._pool.map(self._call, calls))
        gave_up = [o for o in outputs if isinstance(o, _GaveUp)]
        if gave_up:
            # Every row was tried (and the good ones are simply asked again on resume):
            # a retryable failure is no row's fault, so none becomes an error row.
            raise EngineUnavailable(f"{len(gave_up)} of {len(calls)} requests: {gave_up[0].error}")
        return outputs

    def body(self, call: Call) -> dict[str, Any]:
        s = call.sampling
        body: dict[str, Any] = {
            "model": self.served_model(),
            "messages": [{"role": m.role, "content": m.content} for m in call.request.messages],
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "n": s.n,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if call.request.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "output", "schema": call.request.json_schema}}
        elif call.request.choices:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "choice", "schema": _choice_schema(list(call.request.choices))}}
        extra = self.spec.reasoning.template_kwargs(call.request.thinking)
        if extra:
            # vLLM's and SGLang's servers pass these to the chat template (Qwen3's
            # enable_thinking); only model files of reasoning families set any.
            body["chat_template_kwargs"] = extra
        budget = self.spec.reasoning.budget_for(call.request.thinking)
        if budget is not None:
            # vLLM's server takes the budget as the offline engine does; it comes on top
            # of the answer's max_tokens.
            body["thinking_token_budget"] = budget
            body["max_tokens"] = s.max_tokens + budget
        return body

    def _call(self, call: Call) -> RawOutput:
        started = time.monotonic()
        body = self.body(call)
        attempts = self.spec.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            resp: httpx.Response | None = None
            try:
                resp = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                problem = f"timed out after {self.spec.timeout_s:g}s"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code == 200:
                    out = self._parse(resp, call)
                    out.latency_s = time.monotonic() - started
                    return out
                problem = f"HTTP {resp.status_code}: {_error_detail(resp)}"
                if not retryable(resp.status_code):
                    return RawOutput(error=f"{problem} (from {self.url})",
                                     latency_s=time.monotonic() - started)
            if attempt + 1 < attempts:
                time.sleep(self._delay(attempt, resp))
        return _GaveUp(error=f"{problem} (from {self.url}); gave up after {attempts} attempts",
                       latency_s=time.monotonic() - started)

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None:
            after = resp.headers.get("retry-after")
            if after is not None:
                try:
                    return min(max(float(after), 0.0), MAX_DELAY_S)
                except ValueError:
                    pass  # an HTTP date: fall back to our own backoff
        base = self.spec.backoff_s * (2 ** attempt)
        # Jitter spreads retries of many concurrent rows so they do not arrive together.
        return min(base * (1.0 + 0.25 * random.random()), MAX_DELAY_S)

    def _parse(self, resp: httpx.Response, call: Call) -> RawOutput:
        try:
            data = resp.json()
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            texts = [c["message"].get("content") or "" for c in choices]
            reasons = [c.get("finish_reason") for c in choices]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return RawOutput(error=f"malformed response from {self.url}: {type(exc).__name__} {exc}")
        reasonings, spent = self._reasoning(choices, texts, usage)
        if call.request.choices and call.request.json_schema is None:
            texts = [_unwrap_choice(t) for t in texts]
        return RawOutput(texts=texts, finish_reasons=reasons, reasonings=reasonings,
                         prompt_tokens=int(usage.get("prompt_tokens") or 0),
                         output_tokens=int(usage.get("completion_tokens") or 0),
                         reasoning_tokens=spent)

    def _reasoning(self, choices: list[dict[str, Any]], texts: list[str],
                   usage: dict[str, Any]) -> tuple[list[str | None], int]:
        """Reasoning per choice, and its tokens: a server with a reasoning parser returns
        it apart (`reasoning_content`, or `reasoning` in newer vLLM); otherwise a
        reasoning family's markup is split here, in place (texts keep the answers)."""
        if not self.spec.reasoning.reasons:
            return [], 0
        given = [c["message"].get("reasoning_content") or c["message"].get("reasoning")
                 for c in choices]
        details = usage.get("completion_tokens_details") or {}
        if any(g is not None for g in given):
            return given, int(details.get("reasoning_tokens") or sum(
                len(g.split()) for g in given if g))
        out: list[str | None] = []
        spent = 0
        for i, text in enumerate(texts):
            split = self._reasoner.split(text)
            texts[i] = split.answer
            out.append(split.reasoning)
            spent += self._reasoner.reasoning_tokens(split, text)
        return out, int(details.get("reasoning_tokens") or spent)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
