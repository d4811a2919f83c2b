"""Exactly-once under SIGKILL: kill the driver (and its local Ray) mid-stream, twice, and a
worker actor once; resume each time; every planned pair lands exactly once.

Uses the no-model `echo` engine: this tests the pipeline's commits, not a model.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pytest

from tests.pipeline_helpers import kill_tree, read_folder, write_config, write_prompt_file

pytestmark = pytest.mark.ray

EXE = [sys.executable, "-m", "persona_gen.cli.main"]


def _start(cfg: Path, run_id: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([*EXE, "run", "--config", str(cfg), "--run-id", run_id,
                             "--no-progress"], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _pair_files(run: Path) -> int:
    folder = run / "feedback" / "pairs"
    return len(list(folder.glob("*.parquet"))) if folder.exists() else 0


def _engine_actors(proc: subprocess.Popen) -> list[psutil.Process]:
    found = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "_EngineHost" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _wait_for(cond, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"driver exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting; log tail:\n{log.read_text()[-3000:]}")


def test_sigkill_driver_twice_and_a_worker_then_resume(tmp_path, census_dir):
    rng = random.Random()
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 260)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", census_dir / "nist-acs-2019" / "national2019.csv",
                       prompts, str(out), personas={"n": 104},
                       pipeline={"batch_size": 400, "actors": 2})
    run = out / "kill"
    log = tmp_path / "driver.log"

    # 1) First attempt: SIGKILL at a random point while pair blocks stream out.
    first_stop = rng.randint(2, 12)
    proc = _start(cfg, "kill", log)
    _wait_for(lambda: _pair_files(run) >= first_stop, proc, 300, log)
    kill_tree(proc)
    after_first = _pair_files(run)

    # 2) Resume, and SIGKILL again during the resume.
    proc = _start(cfg, "kill", log)
    second_stop = after_first + rng.randint(2, 10)
    _wait_for(lambda: _pair_files(run) >= second_stop, proc, 300, log)
    kill_tree(proc)
    after_second = _pair_files(run)
    assert after_second > after_first

    # 3) Resume to the end; on the way, SIGKILL the engine actor: Ray restarts it (reloading
    #    its engine) and the block whose call failed is retried.
    proc = _start(cfg, "kill", log)
    _wait_for(lambda: _pair_files(run) >= after_second + 2, proc, 300, log)
    actors = _engine_actors(proc)
    assert actors, "no engine actor process found while the pair stages ran"
    for actor in actors:
        actor.kill()
    assert proc.wait(600) == 0, log.read_text()[-3000:]
    assert _pair_files(run) > after_second

    plan, _ = read_folder(str(run), "plan")
    pairs, pair_files = read_folder(str(run), "feedback/pairs")
    verdicts, _ = read_folder(str(run), "feedback/verification")
    assert plan.num_rows >= 20_000
    planned = plan.column("pair_id").to_pylist()
    got = pairs.column("pair_id").to_pylist()
    assert len(got) == len(set(got)), "a pair was written twice"
    assert set(got) == set(planned), "pairs missing or unplanned"
    assert sorted(verdicts.column("pair_id").to_pylist()) == sorted(planned)
    for col in ("persona", "instruction", "original", "critique", "data", "question_type"):
        assert pairs.column(col).null_count == 0, col
    assert pc.min(pc.utf8_length(pairs.column("data"))).as_py() > 0
    assert len(pair_files) == len(list((run / "plan").glob("*.parquet")))
    assert not list(run.rglob(".tmp-*")), "temporary files left behind"
    assert not (run / "errors").exists() or not list((run / "errors").rglob("*.parquet"))
