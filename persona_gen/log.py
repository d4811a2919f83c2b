"""Structured logging for the driver, Ray workers and the CLI.

JSON lines when stdout is not a terminal or when running inside a Ray job (so the job's
log can be parsed), a readable console otherwise. Every event can carry `run_id` and
`stage`; a redaction processor keeps secrets out of every sink.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# "token" but not "tokens": token counts (max_num_batched_tokens, output_tokens) are no secret.
_SECRET_KEY = re.compile(r"(secret|password|passwd|token(?!s)|api[_-]?key|access[_-]?key|credential)",
                         re.I)
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "OPENAI_API_KEY",
    "PERSONA_GEN_API_KEY",
    "HF_TOKEN",
)
MASK = "***"


def mask(value: str | None) -> str:
    """Show that a secret is set without showing it: 'AK***' or '(not set)'."""
    if not value:
        return "(not set)"
    return value[:2] + MASK if len(value) > 8 else MASK


def secret_values() -> list[str]:
    """Secret values currently in the environment (long enough to be worth masking)."""
    return [v for k in _SECRET_ENV if (v := os.environ.get(k)) and len(v) >= 4]


def _mask_text(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _redact(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, str):
        return _mask_text(obj, secrets)
    if isinstance(obj, dict):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and v else _redact(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return type(obj)(_redact(v, secrets) for v in obj)
    return obj


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and any known secret value."""
    return _redact(dict(event_dict), secret_values())


def in_ray_job() -> bool:
    return bool(os.environ.get("RAY_JOB_SUBMISSION_ID") or os.environ.get("RAY_JOB_ID"))


class _Stderr:
    """Whatever sys.stderr is at write time (test runners swap and close it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def keep_stdout_for_results() -> None:
    """Libraries that log to stdout by default log to stderr in this process and in every
    process it starts (vLLM reads this when it is first imported; local Ray workers inherit
    the environment): stdout carries a command's result only."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def configure(*, json: bool | None = None, level: str = "INFO", stream: Any = None) -> None:
    """Configure structlog once per process; safe to call again (e.g. in Ray workers)."""
    if level.upper() not in LEVELS:
        from persona_gen.errors import ConfigError

        raise ConfigError(f"'{level}' is not a log level; expected one of {', '.join(LEVELS)}",
                          source="run.log_level")
    keep_stdout_for_results()
    stream = stream or _Stderr()
    if json is None:
        json = in_ray_job() or not (hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty() if hasattr(stream, "isatty") else False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(stage: str | None = None, **context: Any) -> structlog.typing.FilteringBoundLogger:
    log = structlog.get_logger()
    if stage:
        context["stage"] = stage
    return log.bind(**context) if context else log


def bind_run(run_id: str) -> None:
    """Attach run_id to every event this process logs from now on."""
    structlog.contextvars.bind_contextvars(run_id=run_id)
