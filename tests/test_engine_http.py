"""The OpenAI-compatible HTTP engine against a real HTTP server of ours on 127.0.0.1.

The server speaks enough of /v1/chat/completions and /v1/models. A user message may start
with directives the server obeys, per distinct message, e.g. "!status=503 !times=1" (answer
503 to the first attempt only), "!sleep=0.3", "!retry_after=0.2".
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel, Field

from persona_gen.engines import ChatRequest, Message, Sampling, create_engine
from persona_gen.engines.failures import EngineUnavailable
from persona_gen.engines.registry import ModelSpec
from persona_gen.errors import UserError

KEY_ENV = "PERSONA_GEN_TEST_API_KEY"
_DIRECTIVE = re.compile(r"!(\w+)=(\S+)")


class OpenAIStub:
    """A threaded HTTP server; records every request and the peak number in flight."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.seen: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        self.throttle = False
        """While set, every message holding '!throttled' gets 429 (a rate limit)."""
        self.lock = threading.Lock()
        self.respond: Callable[[dict[str, Any], int], str] = (
            lambda body, attempt: "you said: " + body["messages"][-1]["content"])
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "served-model"}]})
                else:
                    self._send(404, {"error": {"message": "no such route"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.bodies.append(body)
                    stub.auth.append(self.headers.get("Authorization"))
                    content = body["messages"][-1]["content"]
                    attempt = stub.seen[content]
                    stub.seen[content] += 1
                    stub.in_flight += 1
                    stub.peak = max(stub.peak, stub.in_flight)
                try:
                    self._answer(body, content, attempt)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def _answer(self, body: dict[str, Any], content: str, attempt: int) -> None:
                rules = dict(_DIRECTIVE.findall(content))
                time.sleep(float(rules.get("sleep", 0)))
                if stub.throttle and "!throttled" in content:
                    self._send(429, {"error": {"message": "rate limited"}})
                    return
                if "status" in rules and attempt < int(rules.get("times", 10**6)):
                    headers = {"Retry-After": rules["retry_after"]} if "retry_after" in rules else {}
                    self._send(int(rules["status"]), {"error": {"message": f"injected {rules['status']}"}},
                               headers)
                    return
                texts = [stub.respond(body, attempt) for _ in range(body.get("n", 1))]
                self._send(200, {
                    "id": "cmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": i, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": t}}
                                for i, t in enumerate(texts)],
                    "usage": {"prompt_tokens": len(content.split()),
                              "completion_tokens": sum(len(t.split()) for t in texts)},
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    server = OpenAIStub()
    try:
        yield server
    finally:
        server.close()


def _spec(url: str, **kw: Any) -> ModelSpec:
    fields: dict[str, Any] = {"name": "stub", "engine": "openai", "base_url": url,
                              "model": "stub-model", "max_model_len": 4096, "backoff_s": 0.01,
                              "max_retries": 2, "timeout_s": 5, "concurrency": 4}
    return ModelSpec(**{**fields, **kw})


def _req(rid: str, text: str, **kw: Any) -> ChatRequest:
    return ChatRequest(id=rid, messages=[Message(role="user", content=text)], **kw)


def test_plain_request_sends_key_from_env_and_counts_tokens(stub, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    engine = create_engine(_spec(stub.url, api_key_env=KEY_ENV))
    res = engine.generate([_req("a", "hello there", sampling=Sampling(max_tokens=20, seed=4,
                                                                      temperature=0.1))])[0]
    engine.close()
    assert res.ok and res.text == "you said: hello there"
    assert (res.prompt_tokens, res.output_tokens) == (2, 4)
    assert stub.auth == ["Bearer sk-test-123"]
    body = stub.bodies[0]
    assert body["model"] == "stub-model" and body["max_tokens"] == 20 and body["seed"] == 4
    assert body["temperature"] == 0.1 and "response_format" not in body


def test_missing_key_is_a_clear_error_at_creation(stub, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UserError, match=f"set the environment variable {KEY_ENV}"):
        create_engine(_spec(stub.url, api_key_env=KEY_ENV))


def test_503_once_is_retried_then_succeeds(stub):
    engine = create_engine(_spec(stub.url))
    res = engine.generate([_req("a", "!status=503 !times=1 hi")])[0]
    assert res.ok and res.text == "you said: !status=503 !times=1 hi"
    assert stub.seen["!status=503 !times=1 hi"] == 2


def test_retry_budget_spent_fails_the_call_not_the_row(stub):
    """A 503 past the retry budget is no row's fault: the call raises (its block stays
    uncommitted for a resume) once every row was tried; no error row is made."""
    engine = create_engine(_spec(stub.url, max_retries=2))
    with pytest.raises(EngineUnavailable) as err:
        engine.generate([_req("bad", "!status=503 always"), _req("good", "fine")])
    assert str(err.value) == (f"1 of 2 requests: HTTP 503: injected 503 (from "
                              f"{stub.url}/chat/completions); gave up after 3 attempts")
    assert stub.seen["!status=503 always"] == 3 and stub.seen["fine"] == 1


def test_429_waits_for_retry_after(stub):
    engine = create_engine(_spec(stub.url))
    started = time.monotonic()
    res = engine.generate([_req("a", "!status=429 !times=1 !retry_after=0.3 x")])[0]
    assert res.ok and time.monotonic() - started >= 0.3
    assert stub.seen["!status=429 !times=1 !retry_after=0.3 x"] == 2


def test_client_errors_are_not_retried(stub):
    engine = create_engine(_spec(stub.url))
    res = engine.generate([_req("a", "!status=400 x")])[0]
    assert res.error == f"HTTP 400: injected 400 (from {stub.url}/chat/completions)"
    assert stub.seen["!status=400 x"] == 1


def test_timeouts_past_the_budget_fail_the_call(stub):
    engine = create_engine(_spec(stub.url, timeout_s=0.3, max_retries=1))
    with pytest.raises(EngineUnavailable, match=r"^1 of 1 requests: timed out after 0\.3s .*"
                                                r"gave up after 2 attempts$"):
        engine.generate([_req("a", "!sleep=1 slow")])


def test_an_unreachable_server_fails_the_call():
    engine = create_engine(_spec("http://127.0.0.1:9/v1", max_retries=1))
    with pytest.raises(EngineUnavailable, match="connection failed"):
        engine.generate([_req("a", "x")])
    unnamed = create_engine(_spec("http://127.0.0.1:9/v1", max_retries=1, model=None))
    with pytest.raises(EngineUnavailable, match=r"cannot ask http://127\.0\.0\.1:9/v1 which model"):
        unnamed.generate([_req("a", "x")])


def test_concurrency_is_bounded(stub):
    engine = create_engine(_spec(stub.url, concurrency=3))
    res = engine.generate([_req(str(i), f"!sleep=0.15 row {i}") for i in range(12)])
    assert all(r.ok for r in res) and [r.id for r in res] == [str(i) for i in range(12)]
    assert 2 <= stub.peak <= 3


class Verdict(BaseModel):
    better: str = Field(pattern="^(a|b)$")
    score: int = Field(ge=1, le=5)


def test_json_schema_goes_in_response_format_and_bad_json_is_retried(stub):
    stub.respond = lambda body, attempt: ('{"better": "a", "score": ' if attempt == 0
                                          else '{"better": "b", "score": 4}')
    schema = Verdict.model_json_schema()
    engine = create_engine(_spec(stub.url))
    res = engine.generate([_req("a", "judge", json_schema=schema)])[0]
    assert res.ok, res.error
    assert res.parsed_as(Verdict) == [Verdict(better="b", score=4)]
    fmt = stub.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == schema
    assert stub.seen["judge"] == 2


def test_schema_violations_after_the_retries_are_a_row_error(stub):
    stub.respond = lambda body, attempt: '{"better": "c", "score": 9}'
    engine = create_engine(_spec(stub.url, json_retries=1))
    res = engine.generate([_req("a", "judge", json_schema=Verdict.model_json_schema()),
                           _req("b", "free text")])
    assert res[1].ok
    assert res[0].error is not None
    assert res[0].error.startswith("no valid output after 2 attempt(s): JSON does not match "
                                   "the schema at better")


def test_choices_travel_as_an_enum_and_come_back_plain(stub):
    stub.respond = lambda body, attempt: json.dumps({"choice": "tie"})
    engine = create_engine(_spec(stub.url))
    res = engine.generate([_req("a", "which?", choices=["A", "B", "tie"],
                                sampling=Sampling(n=2))])[0]
    assert res.ok and res.texts == ["tie", "tie"]
    schema = stub.bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["choice"]["enum"] == ["A", "B", "tie"]


def test_model_name_is_asked_from_the_server_when_unset(stub):
    engine = create_engine(_spec(stub.url, model=None))
    assert engine.generate([_req("a", "x")])[0].ok
    assert stub.bodies[0]["model"] == "served-model"


def test_n_samples_and_model_default_sampling(stub):
    engine = create_engine(_spec(stub.url, sampling={"temperature": 0.0, "max_tokens": 64}))
    res = engine.generate([_req("a", "x", sampling=Sampling(n=3, top_p=0.5))])[0]
    assert res.ok and len(res.texts) == 3
    body = stub.bodies[0]
    # Fields the request left unset come from the model's YAML defaults.
    assert (body["n"], body["top_p"], body["temperature"], body["max_tokens"]) == (3, 0.5, 0.0, 64)
