"""Engine lifecycle on a real local Ray with fault-injecting engines (tests/fault_engines.py):
a row that kills its engine, a call past its deadline, child processes that must not outlive
their host, cold clusters, refused layouts, and the cluster an engine core joins."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
import yaml
from structlog.testing import capture_logs

from persona_gen.engines.base import Sampling
from persona_gen.engines.registry import get_spec
from persona_gen.errors import ConfigError, UserError
from persona_gen.pipeline import engine_host
from persona_gen.pipeline.chain import Chain, Step, block_file, error_file
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import (
    EngineHosts,
    concurrency_shares,
    engine_layout,
    refuse_unworkable,
)
from persona_gen.pipeline.executor import run_chains
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef
from tests.fault_engines import ProbeStage
from tests.pipeline_helpers import read_folder

CFG = dict(actors=1, num_cpus_per_actor=0.25, num_cpus_per_worker=0.25, blocks_in_flight=2,
           local_num_cpus=2)


def _models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **files: dict) -> None:
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    for name, body in files.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "max_model_len": 2048, "runs_on": ["cpu"], **body}))
    monkeypatch.setenv("PERSONA_GEN_MODELS_DIR", str(folder))


def _custom(cls: str, **options: object) -> dict:
    return {"engine": "custom", "engine_class": f"tests.fault_engines:{cls}",
            "engine_options": options}


def _blocks(run: RunRef, texts: list[list[str]]) -> list[str]:
    names = []
    for b, rows in enumerate(texts):
        name = f"b{b}"
        objects.write_table_atomic(block_file(run, "in", name), pa.table({
            "id": [f"{name}-r{i}" for i in range(len(rows))], "text": rows}))
        names.append(name)
    return names


def _chain(model: str) -> Chain:
    stage = ProbeStage(sampling=Sampling(max_tokens=16, temperature=0.0))
    return Chain("probe", "in", (Step(stage, model, "out", id_column="id"),))


@pytest.mark.ray
def test_a_row_that_kills_the_engine_twice_is_an_error_row(tmp_path, monkeypatch, ray_local):
    """The marked row kills the engine with 5 others in it; they all run alone on the
    restarted host, the marked one kills it again, and is committed as `engine crash`."""
    starts = tmp_path / "starts.txt"
    _models(tmp_path, monkeypatch, crashy=_custom("CrashOnMarker", starts=str(starts)))
    run = RunRef.at(str(tmp_path / "out"), "poison")
    _blocks(run, [["fine one", "POISON here", "fine two"], ["fine three", "fine four",
                                                              "fine five"]])
    cfg = PipelineConfig(**CFG)
    with EngineHosts(cfg, run.run_id, log_json=False) as hosts:
        results = run_chains([_chain("crashy")], run, cfg, hosts=hosts)
        counts = hosts.crash_counts()
    assert counts["crashes"] == 2 and counts["poisoned"] == 1
    assert len(starts.read_text().splitlines()) == 3  # the first host and two restarts
    out, _ = read_folder(str(tmp_path / "out" / "poison"), "out")
    ids = out.column("id").to_pylist()
    assert sorted(ids) == ["b0-r0", "b0-r2", "b1-r0", "b1-r1", "b1-r2"]
    errors = objects.read_table(error_file(run, "probe", "b0"))
    assert errors.column("id").to_pylist() == ["b0-r1"]
    assert "engine crash" in errors.column("reason")[0].as_py()
    assert sorted(s.block for r in results for s in r.steps if not s.resumed) == ["b0", "b1"]


@pytest.mark.ray
def test_a_call_past_its_deadline_restarts_the_host_and_the_block_lands_once(
        tmp_path, monkeypatch, ray_local):
    flag, starts = tmp_path / "hung.flag", tmp_path / "starts.txt"
    _models(tmp_path, monkeypatch,
            hangy=_custom("HangOnce", flag=str(flag), starts=str(starts)))
    run = RunRef.at(str(tmp_path / "out"), "deadline")
    _blocks(run, [["one", "HANG two", "three"], ["four", "five"]])
    cfg = PipelineConfig(**CFG, call_deadline_s=4)
    started = time.monotonic()
    with EngineHosts(cfg, run.run_id, log_json=False) as hosts:
        results = run_chains([_chain("hangy")], run, cfg, hosts=hosts)
    assert flag.exists() and time.monotonic() - started >= 4
    assert len(starts.read_text().splitlines()) == 2  # restarted once
    out, files = read_folder(str(tmp_path / "out" / "deadline"), "out")
    assert sorted(out.column("id").to_pylist()) == ["b0-r0", "b0-r1", "b0-r2", "b1-r0", "b1-r1"]
    assert len(files) == 2
    committed = [s.block for r in results for s in r.steps if not s.resumed]
    assert sorted(committed) == ["b0", "b1"]  # each block committed once


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.ray
def test_no_engine_process_outlives_its_host(tmp_path, monkeypatch, ray_local):
    """The engine's child process (vLLM's engine core, here a sleeper) ends with its host:
    when the host is SIGKILLed (its watcher ends it), and when the job closes its hosts."""
    import ray

    _models(tmp_path, monkeypatch, forky=_custom("WithChild"))
    cfg = PipelineConfig(**CFG)
    with EngineHosts(cfg, "t", log_json=False) as hosts:
        (host,) = hosts.get("forky")
        procs = ray.get(host.processes.remote())
        host_pid = procs[0]["pid"]
        kids = [p for p in procs if not p["host"] and "sleep(900)" in p.get("cmdline", "")]
        assert len(kids) == 1
        os.kill(host_pid, signal.SIGKILL)
        assert _wait_gone(kids[0]["pid"], 20), "the engine's process outlived its killed host"
        # Ray restarts the host; its new engine's process ends when the job closes it.
        ray.get(host.ready.remote(), timeout=120)
        procs = ray.get(host.processes.remote())
        kids = [p for p in procs if not p["host"] and "sleep(900)" in p.get("cmdline", "")]
        assert len(kids) == 1 and procs[0]["pid"] != host_pid
    assert _wait_gone(kids[0]["pid"], 5), "the engine's process outlived the closed host"


def test_layout_comes_from_the_config_and_the_models_gpu_count():
    gpu = PipelineConfig(actors=8, num_gpus_per_actor=1)
    big = engine_layout(get_spec("llama-3.1-70b-instruct"), gpu)
    assert (big.engines, big.gpus_per_engine, big.packed) == (1, 8.0, True)
    small = engine_layout(get_spec("llama-3.1-8b-instruct"), gpu)
    assert (small.engines, small.gpus_per_engine, small.packed) == (8, 1.0, False)
    two_nodes = engine_layout(get_spec("llama-3.1-70b-instruct"),
                              PipelineConfig(actors=16, num_gpus_per_actor=1))
    assert two_nodes.engines == 2
    judge = engine_layout(get_spec("gpt-4o-judge"), PipelineConfig(actors=32))
    assert judge.engines == 16 and judge.gpus_per_engine == 0  # its concurrency: 16 in all
    assert concurrency_shares(16, 3) == [6, 5, 5] and sum(concurrency_shares(4, 4)) == 4


def test_a_multiprocess_executor_in_a_gpu_less_host_is_refused():
    spec = get_spec("llama-3.1-70b-instruct")
    spec = spec.model_copy(update={"vllm_args": {"distributed_executor_backend": "mp"}})
    layout = engine_layout(spec, PipelineConfig(actors=8, num_gpus_per_actor=1))
    with pytest.raises(ConfigError) as err:
        refuse_unworkable(spec, layout)
    text = str(err.value)
    assert text.startswith("model 'llama-3.1-70b-instruct': 'vllm_args.distributed_executor_"
                           "backend': 'mp' cannot work") and "\n" not in text
    refuse_unworkable(spec.model_copy(update={"vllm_args": {}}), layout)  # default: fine


@pytest.mark.ray
def test_a_cold_cluster_logs_that_it_waits_for_gpus(tmp_path, monkeypatch, ray_local):
    """The local Ray has no GPU: the engine cannot be placed; the driver says it waits, then
    gives up after pipeline.gpu_wait_timeout_s in one line."""
    _models(tmp_path, monkeypatch, **{"sim-gpu": {"engine": "sim", "runs_on": ["gpu"]}})
    monkeypatch.setattr(engine_host, "WAIT_LOG_EVERY_S", 0.5)
    cfg = PipelineConfig(actors=1, num_gpus_per_actor=1, num_cpus_per_actor=0.25,
                         gpu_wait_timeout_s=2)
    with capture_logs() as logs, EngineHosts(cfg, "t", log_json=False) as hosts, \
            pytest.raises(UserError) as err:
        hosts.get("sim-gpu")
    waits = [e for e in logs if e["event"] == "waiting_for_gpus"]
    assert waits and waits[0]["model"] == "sim-gpu" and waits[0]["placed"] == 0
    assert "1 GPU" in waits[0]["needs"]
    assert "were not placed within 2 s" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.ray
def test_a_process_the_host_spawns_joins_the_hosts_ray_cluster(ray_local):
    """vLLM's engine core (a spawned process calling ray.init() for its tensor-parallel
    workers) reaches the local Ray the host runs in, not a second one."""
    import ray

    from tests.fault_engines import ClusterProbe

    probe = ray.remote(ClusterProbe).options(num_cpus=0.1).remote()
    try:
        mine, child = ray.get(probe.child_cluster.remote(), timeout=300)
    finally:
        ray.kill(probe)
    assert mine == child == ray.get_runtime_context().gcs_address


def test_the_call_deadline_follows_the_block_and_its_token_limits():
    from persona_gen.engines.base import ChatRequest, Message
    from persona_gen.pipeline.engine_host import call_deadline

    spec = get_spec("llama-3.1-8b-instruct")
    cfg = PipelineConfig(actors=8, num_gpus_per_actor=1, blocks_in_flight=4)
    deadline = call_deadline(spec, cfg)
    # The start timeout (a restart reloads the model within the call): 1800 s + 20 s/GB.
    assert deadline.start_s == pytest.approx(1800 + 20 * 8.03 * 2)
    msg = [Message(role="user", content="q")]
    free = [ChatRequest(id=str(i), messages=msg, sampling=Sampling(max_tokens=512))
            for i in range(1024)]
    assert deadline.seconds(free) == pytest.approx(deadline.start_s + 4 * 1024 * 512 / 100)
    schema = [r.model_copy(update={"json_schema": {"type": "object"}}) for r in free[:10]]
    assert deadline.seconds(schema) == pytest.approx(deadline.start_s + 4 * 10 * 512 * 3 / 100)
    cpu = call_deadline(spec, PipelineConfig(blocks_in_flight=4))
    assert cpu.seconds(free[:1]) == pytest.approx(cpu.start_s + 4 * 512 / 5)
    fixed = call_deadline(spec, PipelineConfig(call_deadline_s=90))
    assert fixed.seconds(free) == 90
