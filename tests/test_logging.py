"""Logging: JSON lines off a TTY, run_id/stage context, and secrets never reach the log."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from persona_gen import log

ROOT = Path(__file__).resolve().parents[1]


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


_RAY_PRINTS = """
import ray
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.ray_session import ray_session

@ray.remote(num_cpus=0.1)
def shout() -> int:
    print("worker stdout line", flush=True)
    return 1

with ray_session(PipelineConfig(local_num_cpus=1)):
    assert ray.get(shout.remote()) == 1
    import time; time.sleep(2)  # the driver's log monitor relays the line
print("RESULT")
"""


@pytest.mark.ray
def test_what_ray_relays_from_workers_goes_to_stderr():
    """Ray's driver writes its workers' stdout lines to sys.stdout; in our session they go to
    stderr, so a command's stdout is its result alone."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", _RAY_PRINTS], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "RESULT\n", done.stdout
    assert "worker stdout line" in done.stderr
