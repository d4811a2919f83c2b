"""Ride out storage hiccups: retry transient failures of one operation with backoff, up to
`storage.retry_budget_s`, then fail with one line naming the endpoint and the operation.

Each store's client retries a few times on its own (pyarrow's S3 retry strategy, the GCS
client's retry time limit, the Azure SDK's retry policy); that absorbs throttling and a
dropped connection, not an endpoint that is gone for a minute. This loop is the layer above them: every call of `persona_gen.storage.objects`
and the status counts goes through it, on the driver and in every Ray worker alike (the
budget travels inside the Location). A block retried this way is rewritten whole, so a
retry never duplicates a row.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from persona_gen.errors import StorageUnavailable

if TYPE_CHECKING:
    from persona_gen.storage.uri import Location

T = TypeVar("T")

TRANSIENT_PATTERNS = (
    # S3 (AWS SDK through pyarrow)
    "AWS Error NETWORK_CONNECTION", "curlCode", "Couldn't connect", "Connection refused",
    "Connection reset", "connection was closed", "Broken pipe", "timed out", "Timeout",
    "AWS Error SLOW_DOWN", "SlowDown", "AWS Error SERVICE_UNAVAILABLE",
    "AWS Error INTERNAL_FAILURE", "HTTP status 500", "HTTP status 502", "HTTP status 503",
    "HTTP status 504", "AWS Error REQUEST_TIMEOUT", "AWS Error THROTTLING",
    # GCS (google-cloud-cpp): its retry policy gave up on a transient status
    "UNAVAILABLE:", "DEADLINE_EXCEEDED:", "RESOURCE_EXHAUSTED:", "Could not connect",
    # Azure Blob (Azure SDK for C++)
    "Fail to get a new connection", "[ServerBusy]", "[InternalError]",
    "[OperationTimedOut]",
)
"""Substrings of pyarrow's S3, GCS and Azure error messages that mean "try again" (an
unreachable endpoint, throttling, a 5xx): also given to Ray Data as its retried I/O and map
errors."""

_MAX_SLEEP_S = 5.0


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and any(p in str(exc) for p in TRANSIENT_PATTERNS)


def short_reason(exc: BaseException) -> str:
    """The AWS error's first line, without the SDK's request details."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def retrying(op: str, loc: Location, fn: Callable[[], T]) -> T:
    """`fn()`, retried while it fails transiently and the location's budget lasts."""
    budget = loc.retry_budget_s
    if budget <= 0 or loc.is_local:
        return fn()
    deadline = time.monotonic() + budget
    first: float | None = None
    delay = 0.25
    while True:
        try:
            result = fn()
        except OSError as exc:
            if not is_transient(exc):
                raise
            now = time.monotonic()
            if first is None:
                first = now
                _log().warning("storage_retrying", op=op, uri=loc.uri, endpoint=loc.endpoint,
                               error=short_reason(exc), budget_s=budget)
            if now >= deadline:
                raise StorageUnavailable(
                    f"{op} failed at endpoint {loc.endpoint} for {budget:g} s "
                    f"(storage.retry_budget_s): {short_reason(exc)}", source=loc.uri) from None
            # Jitter: the workers that lost the endpoint together do not return in lockstep.
            time.sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, deadline - now)))
            delay = min(delay * 2, _MAX_SLEEP_S)
            continue
        if first is not None:
            _log().info("storage_recovered", op=op, uri=loc.uri,
                        after_s=round(time.monotonic() - first, 1))
        return result


def _log() -> Any:
    from persona_gen.log import get_logger

    return get_logger(stage="storage")
