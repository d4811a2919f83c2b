"""Engine death heals itself: SIGKILL vLLM's EngineCore process in the middle of a job with
the bundled model; the host exits, Ray restarts it (reloading the model) and re-sends the
blocks in flight; the run finishes and every planned pair lands exactly once. Two model loads
and a restart (minutes): `make test-faults`, which CI runs, not `make test`."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from persona_gen.run.config import load_config
from persona_gen.run.execute import execute
from persona_gen.storage.runref import RunRef
from tests.pipeline_helpers import read_folder, write_config, write_prompt_file

pytestmark = [pytest.mark.model, pytest.mark.ray, pytest.mark.faults]
MODEL = "smollm2-135m-instruct"


def _engine_cores() -> list[psutil.Process]:
    """This test's EngineCore processes: children of an engine host below this process
    (never another session's, nor the in-process engine of other tests)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "EngineCore" not in p.name() + " ".join(p.cmdline()):
                continue
            parent = p.parent()
            if parent is not None and "_EngineHost" in " ".join(parent.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_sigkill_engine_core_mid_run_heals_and_every_pair_lands_once(tmp_path, census_dir,
                                                                       ray_local):
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 6)
    cfg = load_config(write_config(
        tmp_path / "job.yaml", census_dir / "nist-acs-2019" / "national2019.csv", prompts,
        str(tmp_path / "out"),
        personas={"n": 4},
        plan={"train_pairs_per_persona": 2, "seen_test_pairs_per_persona": 0,
              "heldout_test_pairs_per_persona": 1},
        prompts={"heldout_fraction": 0.5},
        stages={**{s: {"model": MODEL, "max_tokens": 16}
                   for s in ("original", "critique", "revision")},
                "verify": {"model": MODEL, "max_tokens": 32}},
        # The 135M judge writes invalid JSON now and then; this test is about healing, and
        # checks failed rows itself.
        pipeline={"batch_size": 2, "blocks_in_flight": 2, "num_cpus_per_actor": 1,
                  "max_error_fraction": 1.0}))
    run_dir = tmp_path / "out" / "heal"
    seen: set[int] = set()
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        # Kill the engine core once the first critique block is committed (the run is
        # then mid-feedback: more critiques, revisions and verdicts still need the engine);
        # keep noting engine cores to see the restarted one.
        critiques = run_dir / "feedback" / "critiques"
        while not stop.is_set():
            cores = _engine_cores()
            seen.update(p.pid for p in cores)
            if not killed and critiques.is_dir() and any(critiques.glob("*.parquet")) and cores:
                os.kill(cores[0].pid, signal.SIGKILL)
                killed.append(cores[0].pid)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = execute(cfg, RunRef.at(cfg.run.output, "heal"), progress=False)
    finally:
        stop.set()
        watcher.join(5)
    assert killed, "the run ended before the engine core could be killed"
    assert seen - set(killed), "no restarted engine core was seen"
    plan, _ = read_folder(str(run_dir), "plan")
    planned = set(plan.column("pair_id").to_pylist())
    pairs, _ = read_folder(str(run_dir), "feedback/pairs")
    done = pairs.column("pair_id").to_pylist()
    failed: set[str] = set()
    for stage in ("critique", "revision"):
        errors, _ = read_folder(str(run_dir), f"errors/{stage}")
        failed |= set(errors.column("id").to_pylist()) if errors.num_rows else set()
    assert len(done) == len(set(done)), "a pair was committed twice"
    assert set(done) | failed == planned and not set(done) & failed
    verdicts, _ = read_folder(str(run_dir), "feedback/verification")
    judged = verdicts.column("pair_id").to_pylist()
    assert len(judged) == len(set(judged)) and set(judged) <= set(done)
    assert summary.stages["revision"].done >= 1
    # The job closed its engines: no engine core of this test's outlives its host.
    deadline = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
              for p in _all_engine_cores(seen)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p.pid for p in _all_engine_cores(seen)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # The manifest records what the engines ran with (their start line).
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    line = manifest["engine_settings"][MODEL]
    assert line["resolved_by"] == "vllm" and line["max_num_seqs"] == 256
    assert line["kv_cache_tokens"] > 0 and line["admission_limit"] == 282


def _all_engine_cores(pids: set[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found
