"""Failures that are no row's fault: the engine itself is gone or out of reach.

Rows never fail for these. An engine host exits on `EngineDead` (Ray restarts it and
re-sends its calls); an engine call that raises `EngineUnavailable` leaves its block
uncommitted, so a resume retries it. A row whose request kills the engine again and again
is the one exception: it is committed as an error row whose reason starts with
`ENGINE_CRASH` (persona_gen.pipeline.engine_host).
"""

from __future__ import annotations

ENGINE_CRASH = "engine crash"


class EngineDead(RuntimeError):
    """The engine itself is gone (vLLM's engine core died): no row's fault, no call can
    succeed on it again. Engine hosts exit on it so that Ray restarts them."""


class EngineUnavailable(RuntimeError):
    """A retryable failure outlasted the engine's retry budget (a hosted API answering
    429 or 5xx, timing out, unreachable): the block is left for a resume, not failed."""
