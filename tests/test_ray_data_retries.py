"""What Ray Data retries on our behalf: transient storage errors, never deterministic ones.

Ray Data matches each retry pattern as a substring, else as a regex (Ray's own
`matches_error`, used here as it is), so a pattern must mean the same either way."""

from __future__ import annotations

import pytest
from ray._common.retry import matches_error

from persona_gen.pipeline.ray_session import RAY_TRANSIENT_PATTERNS, configure_ray_data
from persona_gen.storage.retry import TRANSIENT_PATTERNS

TRANSIENT = [f"OSError: When reading 'bucket/runs/r/plan/part-0.parquet': {p} (after 3 tries)"
             for p in TRANSIENT_PATTERNS]
DETERMINISTIC = [
    "OSError: When reading information for key 'runs/r/manifest.json' in bucket 'b': AWS Error "
    "ACCESS_DENIED during HeadObject operation: No response body.",
    "FileNotFoundError: bucket/runs/r/plan/part-0.parquet",
    "ArrowInvalid: Parquet magic bytes not found in footer. Either the file is corrupted or "
    "this is not a parquet file.",
    "ValueError: the critique template reads 'persona', which the block does not carry",
    "OSError: GetBlobProperties failed: [AuthorizationFailure] This request is not authorized",
    "KeyError: 'pair_id'",
]


def _retried(patterns: tuple[str, ...] | list[str], message: str) -> bool:
    return any(matches_error(p, message) for p in patterns)


@pytest.mark.parametrize("message", TRANSIENT)
def test_every_transient_message_is_retried(message: str) -> None:
    assert _retried(RAY_TRANSIENT_PATTERNS, message)


@pytest.mark.parametrize("message", DETERMINISTIC)
def test_no_deterministic_failure_is_retried(message: str) -> None:
    assert not _retried(RAY_TRANSIENT_PATTERNS, message)
    # What the raw substrings did under Ray's regex fallback: '[ServerBusy]' is a character
    # class, so nearly every message matched and every failure was retried.
    assert _retried(TRANSIENT_PATTERNS, message)


def test_the_data_context_gets_the_escaped_patterns() -> None:
    from ray.data import DataContext

    configure_ray_data()
    ctx = DataContext.get_current()
    for message in DETERMINISTIC:
        assert not _retried(ctx.retried_map_errors, message), message
        assert not _retried(ctx.retried_io_errors, message), message
    assert all(_retried(ctx.retried_map_errors, m) for m in TRANSIENT)
