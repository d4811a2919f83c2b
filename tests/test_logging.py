"""Logging: JSON lines off a TTY, run_id/stage context, and secrets never reach the log."""

from __future__ import annotations

import io
import json

import structlog

from persona_gen import log


def _capture(json_mode: bool = True) -> io.StringIO:
    buf = io.StringIO()
    log.configure(json=json_mode, stream=buf)
    return buf


def test_json_lines_with_run_id_and_stage():
    buf = _capture()
    log.bind_run("run-42")
    try:
        log.get_logger(stage="critique").info("batch_done", rows=64)
    finally:
        structlog.contextvars.clear_contextvars()
    event = json.loads(buf.getvalue().strip())
    assert event["event"] == "batch_done" and event["run_id"] == "run-42"
    assert event["stage"] == "critique" and event["rows"] == 64 and event["level"] == "info"


def test_non_tty_defaults_to_json():
    buf = io.StringIO()  # not a TTY
    log.configure(stream=buf)
    log.get_logger().info("hello")
    assert json.loads(buf.getvalue())["event"] == "hello"


def test_secrets_never_reach_the_log(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-xyz")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-abcdef123456")
    for json_mode in (True, False):
        buf = _capture(json_mode)
        logger = log.get_logger(stage="storage")
        logger.info("connecting", endpoint="http://127.0.0.1:9000",
                    secret_key="s3cr3t-value-xyz", api_key="sk-test-abcdef123456")
        logger.warning("request failed: header Authorization: Bearer sk-test-abcdef123456")
        logger.info("nested", details={"env": {"token": "x1", "note": "uses s3cr3t-value-xyz"}},
                    items=["sk-test-abcdef123456"])
        text = buf.getvalue()
        assert "s3cr3t-value-xyz" not in text and "sk-test-abcdef123456" not in text
        assert "http://127.0.0.1:9000" in text and log.MASK in text
