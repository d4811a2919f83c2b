"""Operations, as a scheduler and an operator see a run: progress lines in its log, status
(running, complete, failed with the reason, stale after SIGKILL) with `--json`, exit codes,
and an object store that drops out mid-run.

Real parts throughout: the driver is a `persona-gen run` subprocess with its own local Ray,
the store is the test session's SeaweedFS (stopped and restarted for the outage), and the
model is the no-model `echo` engine. No timing is asserted: limits are set short instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from persona_gen.cli.main import main
from persona_gen.errors import EXIT_FAILED_ROWS, EXIT_USAGE
from tests.pipeline_helpers import kill_tree, read_folder, write_config, write_prompt_file

pytestmark = pytest.mark.ray

EXE = [sys.executable, "-m", "persona_gen.cli.main"]
POISON = "Should " + " ".join(["everyone"] * 2100) + " agree?"
CENSUS = "nist-acs-2019/national2019.csv"


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([*EXE, *args], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(cond, proc: subprocess.Popen | None, log: Path, timeout: float = 300) -> None:
    """Poll `cond` (a liveness bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"driver exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting; log tail:\n{log.read_text()[-3000:]}")


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start < 0 or f'"{event}"' not in line:
            continue
        with contextlib.suppress(ValueError):
            rec = json.loads(line[start:])
            if rec.get("event") == event:
                out.append(rec)
    return out


def _status(run: str, *extra: str) -> tuple[int, dict[str, Any]]:
    res = subprocess.run([*EXE, "status", "--run", run, "--json", *extra],
                         capture_output=True, text=True, timeout=120)
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}


def test_progress_lines_then_sigkill_shows_stale_then_resume_completes(tmp_path, census_dir):
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 120)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", census_dir / CENSUS, prompts, str(out),
                       personas={"n": 40}, pipeline={"batch_size": 64},
                       run={"progress_every_s": 0.5, "stale_after_s": 3})
    run = out / "ops"
    log = tmp_path / "driver.log"
    proc = _start(["run", "--config", str(cfg), "--run-id", "ops", "--no-progress"], log)
    pairs = run / "feedback" / "pairs"
    _wait_for(lambda: pairs.exists() and len(list(pairs.glob("*.parquet"))) >= 2
              and _events(log, "progress"), proc, log)

    # Progress lines: one per active stage, with rows done/planned, rate, ETA and errors.
    lines = _events(log, "progress")
    assert {"stage", "done", "planned", "rows_per_s", "eta_s", "errors"} <= set(lines[-1])
    assert all(rec["level"] == "info" for rec in lines)
    assert any(rec["stage"] == "critique" and rec["planned"] > 0 for rec in lines)
    code, state = _status(str(run))
    assert code == 0 and state["status"] == "running", state

    kill_tree(proc)
    # Nobody says the run ended: its heartbeat ages past run.stale_after_s (3 s here).
    _wait_for(lambda: _status(str(run))[1].get("status") == "stale", None, log, timeout=120)
    code, state = _status(str(run), "--stale-after", "3600")
    assert state["status"] == "running"  # a longer limit: not stale yet

    proc = _start(["run", "--config", str(cfg), "--run-id", "ops", "--no-progress"], log)
    assert proc.wait(600) == 0, log.read_text()[-3000:]
    code, state = _status(str(run))
    assert code == 0 and state["status"] == "complete" and state["failure"] is None
    assert state["attempts"] == 2 and state["heartbeat_at"]
    revision = next(s for s in state["stages"] if s["stage"] == "revision")
    assert revision["done"] == revision["planned"] > 0
    watch = subprocess.run([*EXE, "status", "--run", str(run), "--watch", "--interval", "0.1"],
                           capture_output=True, text=True, timeout=120)
    assert watch.returncode == 0, watch.stderr


def test_error_rows_over_the_limit_commit_everything_then_fail(tmp_path, census_dir,
                                                               ray_local, capsys, monkeypatch):
    """2 poisoned prompts of 14 (14%) against the default limit of 5%. A scheduler's retry
    (KubeRay's backoffLimit) of that run exits at once, with the same code, before Ray or any
    engine starts; a changed config runs."""
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 12, extra=[POISON, POISON + "?"])
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", census_dir / CENSUS, prompts, str(out),
                       personas={"n": 4},
                       plan={"train_pairs_per_persona": 4, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 2})
    with pytest.raises(SystemExit) as ex:
        main(["run", "--config", str(cfg), "--run-id", "bad", "--no-progress"])
    assert ex.value.code == EXIT_FAILED_ROWS
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, err
    assert "stage original: 2 of 14 rows failed (14.3%)" in err[0], err[0]
    assert "pipeline.max_error_fraction=0.05" in err[0]

    # Every good row is committed: the dataset is whole for the prompts that worked.
    run = out / "bad"
    plan, _ = read_folder(str(run), "plan")
    pairs, _ = read_folder(str(run), "feedback/pairs")
    assert plan.num_rows > 0
    assert sorted(pairs.column("pair_id").to_pylist()) == sorted(plan.column("pair_id").to_pylist())
    errors, _ = read_folder(str(run), "errors/original")
    assert errors.num_rows == 2

    # The manifest says failed, with the reason the CLI printed and the exit code.
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "failed" and m["phases"] == ["personas", "prompts", "plan", "pairs"]
    assert m["failure"]["exit_code"] == EXIT_FAILED_ROWS
    assert err[0] == f"error: {m['failure']['reason']}"
    code, state = _status(str(run))
    assert code == 0 and state["status"] == "failed"
    assert state["failure"]["reason"].startswith("stage original: 2 of 14 rows failed")
    watch = subprocess.run([*EXE, "status", "--run", str(run), "--watch"],
                           capture_output=True, text=True, timeout=120)
    assert watch.returncode == EXIT_FAILED_ROWS  # a script waiting on the run sees its code

    # The same command again: refused at once, nothing started, the manifest untouched.
    import persona_gen.run.execute as job_module

    argv = ["run", "--config", str(cfg), "--run-id", "bad", "--no-progress"]
    capsys.readouterr()
    manifest = run / "manifest.json"
    before = manifest.read_text()

    started: list[str] = []

    def spy(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            started.append(name)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(job_module, "ray_session", spy("ray", job_module.ray_session))
    monkeypatch.setattr(job_module, "EngineHosts", spy("engines", job_module.EngineHosts))
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as ex:
        main(argv)
    took = time.perf_counter() - t0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert ex.value.code == EXIT_FAILED_ROWS and started == [] and took < 10, (started, took)
    assert len(err) == 1 and "neither its config nor its input files changed" in err[0], err
    assert "PERSONA_GEN_RETRY_FAILED=1" in err[0]
    assert manifest.read_text() == before, "a refused retry must not touch the manifest"

    # The fix (a higher error limit) is a config change: the retry runs, resumes, completes.
    with pytest.raises(SystemExit) as ex:
        main([*argv, "--set", "pipeline.max_error_fraction=0.5"])
    assert ex.value.code in (0, None), capsys.readouterr().err[-2000:]
    m = json.loads(manifest.read_text())
    assert m["status"] == "complete" and m["attempts"] == 2


def test_a_run_that_dies_shows_failed_with_its_reason(tmp_path, census_dir, ray_local):
    """A run that dies after it started (its prompts table was damaged between attempts):
    the manifest says failed, with the one-line reason and the exit code."""
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 12)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", census_dir / CENSUS, prompts, str(out),
                       personas={"n": 4})
    with pytest.raises(SystemExit) as ex:
        main(["run", "--config", str(cfg), "--run-id", "dies", "--until", "prompts",
              "--no-progress"])
    assert ex.value.code == 0
    # The prompts table is corrupted after the manifest exists: the plan phase fails reading it.
    (out / "dies" / "prompts" / "prompts.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match="Parquet"):  # unforeseen: a traceback, exit 1
        main(["run", "--config", str(cfg), "--run-id", "dies", "--no-progress"])
    m = json.loads((out / "dies" / "manifest.json").read_text())
    assert m["status"] == "failed", m["status"]
    assert m["failure"]["reason"].startswith("ArrowInvalid: ") and "Parquet" in \
        m["failure"]["reason"] and "\n" not in m["failure"]["reason"]
    assert m["failure"]["exit_code"] == 1
    assert _status(str(out / "dies"))[1]["status"] == "failed"


def test_usage_config_and_log_level_errors_have_distinct_codes(capsys):
    with pytest.raises(SystemExit) as ex:
        main(["run", "--no-such-option"])
    assert ex.value.code == EXIT_USAGE
    with pytest.raises(SystemExit) as ex:
        main(["run", "--set", "run.log_level=LOUD"])
    assert ex.value.code == 65
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "run.log_level" in err[0] and "INFO" in err[0], err
    with pytest.raises(SystemExit) as ex:
        main(["--version"])
    assert ex.value.code == 0
    assert capsys.readouterr().out.startswith("persona-gen ")


@pytest.mark.s3
def test_storage_outage_mid_run_is_ridden_out(tmp_path, census_dir, s3_server, s3_bucket):
    """Stop the S3 server for about 10 s while pair blocks stream to it: the run carries on
    without a restart and every pair is there exactly once."""
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 120)
    root = f"s3://{s3_bucket}/runs"
    cfg = write_config(tmp_path / "job.yaml", census_dir / CENSUS, prompts, root,
                       personas={"n": 24}, pipeline={"batch_size": 32},
                       storage={"retry_budget_s": 120}, run={"progress_every_s": 1})
    log = tmp_path / "driver.log"
    proc = _start(["run", "--config", str(cfg), "--run-id", "outage", "--no-progress"], log)
    s3 = s3_server.client()

    def pair_blocks() -> int:
        with contextlib.suppress(Exception):
            res = s3.list_objects_v2(Bucket=s3_bucket, Prefix="runs/outage/feedback/pairs/")
            return res.get("KeyCount", 0)
        return 0

    _wait_for(lambda: pair_blocks() >= 2, proc, log)
    s3_server.stop()
    try:
        time.sleep(10)  # the outage itself, not an assertion
        assert proc.poll() is None, f"the run ended during the outage:\n{log.read_text()[-3000:]}"
    finally:
        s3_server.start()
    assert proc.wait(600) == 0, log.read_text()[-4000:]
    assert _events(log, "storage_retrying"), "the outage was not noticed: it hit nothing"
    ref = f"{root}/outage"
    plan, _ = read_folder(ref, "plan")
    pairs, _ = read_folder(ref, "feedback/pairs")
    got = pairs.column("pair_id").to_pylist()
    assert len(got) == len(set(got)), "a pair was written twice"
    assert set(got) == set(plan.column("pair_id").to_pylist())
    _, state = _status(ref)
    assert state["status"] == "complete", state


@pytest.mark.model
def test_generate_json_schema_stdout_is_json_with_the_bundled_model(tmp_path):
    """vLLM's own log lines go to stderr: stdout is the reply alone, so `| jq` works."""
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"answer": {"type": "string"}},
                                  "required": ["answer"]}))
    res = subprocess.run([*EXE, "generate", "--model", "smollm2-135m-instruct", "--prompt",
                          "Answer in JSON: what colour is the sky?", "--json-schema", str(schema),
                          "--max-tokens", "32", "--seed", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "answer" in json.loads(res.stdout)
    assert "INFO" in res.stderr or "tokens" in res.stderr  # the logs went somewhere: stderr

