"""Engine hosts: async retries, several blocks in one engine batch (sim), the layout each
model gets from its file, and tensor-parallel placement on a Ray with fake GPUs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from persona_gen.engines.base import ChatRequest, Message, Sampling
from persona_gen.engines.registry import SimSpec, get_spec
from persona_gen.engines.sim import draw_length, stream_seconds
from persona_gen.engines.structured import Call, RawOutput, run_with_retries_async
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import EngineHosts

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def _req(i: int, **kw) -> ChatRequest:
    return ChatRequest(id=f"r{i}", messages=[Message(role="user", content=f"question {i}")], **kw)


def test_async_retries_resubmit_only_the_failed_sample_at_once():
    """A bad sample goes back into the engine while the other rows are still running."""
    calls: list[tuple[str, int]] = []
    slow_done = asyncio.Event()

    async def run_call(call: Call) -> RawOutput:
        calls.append((call.request.id, call.attempt))
        if call.request.id == "r0":  # the slow row finishes only after r1's retry came back
            await asyncio.wait_for(slow_done.wait(), 5)
            return RawOutput(texts=['{"a": 0}'], finish_reasons=["stop"], output_tokens=3)
        if call.attempt == 0:
            return RawOutput(texts=['{"a": "x"'], finish_reasons=["length"], output_tokens=4)
        slow_done.set()
        return RawOutput(texts=['{"a": 1}'], finish_reasons=["stop"], output_tokens=3)

    reqs = [_req(0, json_schema=SCHEMA), _req(1, json_schema=SCHEMA)]
    results = asyncio.run(run_with_retries_async(reqs, [r.sampling for r in reqs], run_call, 2))
    assert [r.parsed for r in results] == [[{"a": 0}], [{"a": 1}]]
    assert results[1].output_tokens == 7 and results[1].finish_reasons == ["stop"]
    assert calls == [("r0", 0), ("r1", 0), ("r1", 1)]


def test_async_retries_give_up_into_a_row_error():
    async def run_call(call: Call) -> RawOutput:
        return RawOutput(texts=["not json"], finish_reasons=["stop"], output_tokens=2)

    reqs = [_req(0, json_schema=SCHEMA)]
    (res,) = asyncio.run(run_with_retries_async(reqs, [r.sampling for r in reqs], run_call, 1))
    assert res.error and "after 2 attempt(s)" in res.error
    assert res.texts == ["not json", "not json"] and res.finish_reasons == ["stop", "stop"]


def test_sim_lengths_are_seeded_and_the_stream_is_the_ceiling():
    p = SimSpec()
    lengths = [draw_length(p, f"k{i}", 512) for i in range(4096)]
    assert lengths == [draw_length(p, f"k{i}", 512) for i in range(4096)]
    assert max(lengths) <= 512 and 180 < sorted(lengths)[len(lengths) // 2] < 260
    seqs = [(300, n, i // 200, 700) for i, n in enumerate(lengths)]  # 200 rows a persona
    one = stream_seconds(seqs, p, 1024, 411_529)
    # Blocks drained one after another never beat one continuous stream.
    assert sum(stream_seconds(seqs[i:i + 1024], p, 1024, 411_529)
               for i in range(0, 4096, 1024)) > one
    # A smaller KV cache holds fewer sequences at once: the same work takes longer.
    assert stream_seconds(seqs, p, 1024, 100_000) > one


def test_sim_runs_the_settings_of_the_model_it_stands_for():
    """The shipped sim is the 8B model on an H100: 1,024 sequences at most, and no more than
    its KV cache holds (sequences sharing a persona prefix hold it once)."""
    from persona_gen.engines.settings import resolve_settings
    from persona_gen.engines.sim import KvCache, sim_settings

    sim = sim_settings(get_spec("sim"))
    real = resolve_settings(get_spec("llama-3.1-8b-instruct"), "H100")
    assert sim == real and sim.max_num_seqs == 1024 and sim.kv_cache_tokens_estimate == 411_529
    kv = KvCache(10_000)
    a, b = (1000, 500, 7, 3000), (1000, 500, 7, 3000)
    assert kv.fits(0, a, 1024)
    kv.admit(a)
    assert kv.used == 4500 and kv.need(b) == 1500 and kv.fits(1, b, 1024)
    kv.admit(b)
    assert not kv.fits(2, (1000, 500, 8, 3000), 1024)  # a new persona does not fit
    kv.leave(a)
    kv.leave(b)
    assert kv.used == 0


def _sim_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **spec) -> str:
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    body = {"name": "sim-test", "engine": "sim", "max_model_len": 2048, "runs_on": ["cpu", "gpu"],
            "sim": {"time_scale": 0.05, "median_len": 40, "max_len": 64}, **spec}
    (folder / "sim-test.yaml").write_text(yaml.safe_dump(body))
    monkeypatch.setenv("PERSONA_GEN_MODELS_DIR", str(folder))
    return "sim-test"


@pytest.mark.ray
def test_blocks_in_flight_share_one_engine_batch(tmp_path, monkeypatch, ray_local):
    """Two blocks sent at once run in the engine together: 8 sequences at its peak."""
    import ray

    # Sequences of about 1 s of simulated decode: the second block reaches the engine before
    # any sequence of the first has finished, even on a loaded machine.
    model = _sim_models(tmp_path, monkeypatch,
                        sim={"time_scale": 1.0, "median_len": 64, "sigma": 0.01, "max_len": 64})
    cfg = PipelineConfig(actors=1, num_cpus_per_actor=0.25, blocks_in_flight=2)
    with EngineHosts(cfg, "t", log_json=False) as hosts:
        (host,) = hosts.get(model)
        blocks = [[_req(b * 4 + i, sampling=Sampling(max_tokens=64)) for i in range(4)]
                  for b in range(2)]
        out = ray.get([host.generate.remote(b) for b in blocks])
        stats = ray.get(host.stats.remote())
    assert [r.id for block in out for r in block] == [f"r{i}" for i in range(8)]
    assert all(r.ok and r.output_tokens > 0 and r.finish_reasons for block in out for r in block)
    assert stats["sequences"] == 8 and stats["peak_running"] == 8


@pytest.mark.ray
def test_admission_holds_the_engine_near_max_num_seqs(tmp_path, monkeypatch, ray_local):
    """3 blocks of 20 rows at once into a sim engine of max_num_seqs 8: at most 9 sequences
    (1.1 x 8) are let in at a time, the engine runs its 8, and every row comes back."""
    import ray

    model = _sim_models(tmp_path, monkeypatch, max_num_seqs=8)
    cfg = PipelineConfig(actors=1, num_cpus_per_actor=0.25, blocks_in_flight=3)
    with EngineHosts(cfg, "t", log_json=False) as hosts:
        (host,) = hosts.get(model)
        blocks = [[_req(b * 20 + i, sampling=Sampling(max_tokens=64)) for i in range(20)]
                  for b in range(3)]
        out = ray.get([host.generate.remote(b) for b in blocks])
        stats = ray.get(host.stats.remote())
        assert hosts.settings[model]["max_num_seqs"] == 8
        assert hosts.settings[model]["admission_limit"] == 9
    assert [r.id for block in out for r in block] == [f"r{i}" for i in range(60)]
    assert all(r.ok for block in out for r in block)
    assert stats["admission_limit"] == 9 and stats["admission_peak"] == 9
    assert stats["peak_running"] == 8 and stats["sequences"] == 60
    assert stats["max_num_seqs"] == 8


def test_admission_gate_order_and_exclusive_groups():
    """First come, first served; an exclusive group waits for the engine to empty, runs
    alone, and others wait for it."""
    from persona_gen.pipeline.admission import Admission

    async def scenario() -> list[str]:
        gate = Admission(2)
        order: list[str] = []

        async def req(name: str, hold: float) -> None:
            async with gate.slot(1, name):
                order.append(f"+{name}")
                await asyncio.sleep(hold)
                order.append(f"-{name}")

        async def group() -> None:
            await asyncio.sleep(0.01)
            async with gate.exclusive(["g"]):
                assert gate.exclusive_keys == ["g"]
                await req("g", 0.02)

        await asyncio.gather(req("a", 0.05), req("b", 0.05), group(), req("c", 0.01))
        assert gate.peak == 2 and gate.in_flight == 0
        return order

    order = asyncio.run(scenario())
    assert order.index("+g") > max(order.index("-a"), order.index("-b"))
    assert order.index("+c") > order.index("-g")  # c came before g was asked for, but the
    # group holds the engine once it waits for it


_PLACEMENT = textwrap.dedent("""
    import json, os, sys, ray
    from persona_gen.engines.base import ChatRequest, Message
    from persona_gen.pipeline.config import PipelineConfig
    from persona_gen.pipeline.engine_host import EngineHosts
    # A local Ray that claims 16 GPUs on one node: scheduling only, nothing touches CUDA.
    # Each tensor-parallel bundle holds a CPU beside its GPU: 8 per engine.
    ray.init(num_cpus=24, num_gpus=16, resources={"accelerator_type:H100": 16},
             include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": sys.argv[1],
                                       "PERSONA_GEN_MODELS_DIR": sys.argv[2]}})
    cfg = PipelineConfig(actors=16, num_gpus_per_actor=1, num_cpus_per_actor=0.25,
                         num_cpus_per_worker=0.25)
    out = {}
    with EngineHosts(cfg, "t", log_json=False) as hosts:
        engines = hosts.get("sim-test")
        req = ChatRequest(id="a", messages=[Message(role="user", content="hi")])
        out["ok"] = ray.get(engines[0].generate.remote([req]))[0].ok
        out["engines"] = len(engines)
        out["free_gpus"] = ray.available_resources().get("GPU", 0)
        out["groups"] = [
            {"strategy": g["strategy"], "state": g["state"],
             "bundles": [b for _, b in sorted(g["bundles"].items())]}
            for g in ray.util.placement_group_table().values() if g["state"] == "CREATED"]
    import time
    for _ in range(300):  # removal of placement groups is asynchronous
        out["free_after"] = ray.available_resources().get("GPU", 0)
        if out["free_after"] == 16:
            break
        time.sleep(0.1)
    print(json.dumps(out))
""")


@pytest.mark.ray
def test_tensor_parallel_engines_get_a_packed_placement_group(tmp_path):
    """tensor_parallel_size 8 with the config's 16 GPUs (16 actors x 1): 2 engines, each in
    a STRICT_PACK group of 8 one-GPU H100 bundles; closing gives every GPU back."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "sim-test.yaml").write_text(yaml.safe_dump({
        "name": "sim-test", "engine": "sim", "tensor_parallel_size": 8,
        "accelerator_type": "H100", "runs_on": ["gpu"], "sim": {"time_scale": 0.01}}))
    script = tmp_path / "placement.py"
    script.write_text(_PLACEMENT)
    done = subprocess.run([sys.executable, str(script), str(ROOT), str(folder)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={**os.environ, "PERSONA_GEN_MODELS_DIR": str(folder),
                               "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["engines"] == 2 and out["free_gpus"] == 0
    assert len(out["groups"]) == 2
    for g in out["groups"]:
        assert g["strategy"] == "STRICT_PACK" and len(g["bundles"]) == 8
        assert all(b["GPU"] == 1 and b["accelerator_type:H100"] == 0.001 for b in g["bundles"])
    assert out["free_after"] == 16
