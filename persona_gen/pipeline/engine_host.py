"""Engine actors that live for the whole job, one engine each, several blocks at a time.

Loading a model is the slowest thing an actor does (tens of seconds on CPU, minutes for a
70B model), and a job runs several Ray Data passes (persona rounds, prompts, pairs). So
engines live in long-lived actors created once per model and job; each pass's Ray Data
workers hold a handle to one of them.

A host is an async actor around an async engine (vLLM's AsyncLLM, or `sim`): it serves
`pipeline.blocks_in_flight` `generate` calls at once, and every call's requests enter the
engine's running batch as soon as they arrive. A block returns when its own rows are done,
so the batch never drains at a block's end and the next block's I/O overlaps generation.
Engines without an async form (echo, HTTP) run in the host's threads.

A dead engine (vLLM's engine core killed or crashed) makes the host exit at once: Ray
restarts it, reloading the model, and re-sends the calls that were in flight (the actor
has max_task_retries=-1). Nothing was committed for those blocks (workers commit after a
call returns), so nothing is committed twice.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass
from typing import Any

from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.engines.registry import ModelSpec, get_spec
from persona_gen.errors import UserError
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.storage.settings import S3Settings

GPU_ENGINES = ("vllm", "sim")
"""Engine kinds that hold GPUs (sim stands in for a GPU engine, so it is placed like one)."""


@dataclass(frozen=True)
class EngineLayout:
    """How one model's engines sit on the cluster."""

    engines: int
    gpus_per_engine: float
    """0 for CPU runs and engines that hold no GPU (echo, HTTP)."""
    accelerator_type: str | None = None

    @property
    def packed(self) -> bool:
        """Whether each engine needs a placement group (tensor parallel over whole GPUs)."""
        return self.gpus_per_engine > 1


def engine_layout(spec: ModelSpec, cfg: PipelineConfig, cluster_gpus: float | None = None,
                  ) -> EngineLayout:
    """GPUs per engine from the model file's tensor_parallel_size, and how many engines.

    `pipeline.actors` is the most engines per model; where `cluster_gpus` is known (> 0),
    only as many engines as fit are made (a 70B model over 8 GPUs: one per 8-GPU node).
    plan-cost reads the same function.
    """
    if spec.engine not in GPU_ENGINES or cfg.num_gpus_per_actor == 0:
        return EngineLayout(cfg.actors, 0.0)
    gpus = float(spec.tensor_parallel_size) if spec.tensor_parallel_size > 1 else cfg.num_gpus_per_actor
    engines = cfg.actors
    if cluster_gpus:
        engines = max(1, min(engines, math.floor(cluster_gpus / gpus + 1e-9)))
    return EngineLayout(engines, gpus, spec.accelerator_type or cfg.accelerator_type)


def _engine_dead(exc: BaseException) -> bool:
    return type(exc).__name__ in ("EngineDead", "EngineDeadError")


class _EngineHost:
    """The actor body: one engine, created in the actor's event loop, serving `generate`."""

    def __init__(self, spec: ModelSpec, run_id: str, log_json: bool,
                 s3: S3Settings | None = None) -> None:
        from persona_gen import log

        log.configure(json=log_json)
        log.bind_run(run_id)
        self.spec = spec
        self.s3 = s3
        self.engine: Any = None
        self._starting: asyncio.Lock | None = None
        self._log = log.get_logger(stage="engine_host", model=spec.name)

    async def _ready_engine(self) -> Any:
        # Built lazily, inside the actor's event loop: AsyncLLM's output handler is a task
        # of the loop that creates it. A restarted host builds it on the first call.
        if self.engine is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self.engine is None:
                    from persona_gen.engines.factory import create_async_engine

                    self.engine = create_async_engine(self.spec, s3=self.s3)
        return self.engine

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        engine = await self._ready_engine()
        try:
            if hasattr(engine, "agenerate"):
                return await engine.agenerate(requests)
            return await asyncio.to_thread(engine.generate, requests)
        except Exception as exc:
            if _engine_dead(exc):
                self._die(exc)
            raise

    def _die(self, exc: BaseException) -> None:
        # Not ray.actor.exit_actor(): an intended exit is never restarted. A crash is, and
        # Ray then re-sends every call that was in flight to the fresh host.
        self._log.error("engine died; exiting so that Ray restarts this host",
                        error=" ".join(str(exc).split())[:300] or type(exc).__name__)
        os._exit(1)

    async def ready(self) -> bool:
        await self._ready_engine()
        return True

    async def stats(self) -> dict[str, Any]:
        """The engine's own counters where it keeps any (sim: simulated busy time)."""
        engine = await self._ready_engine()
        return engine.stats() if hasattr(engine, "stats") else {}

    def processes(self) -> list[dict[str, Any]]:
        """This host's process and its children (vLLM's engine core), for tests and ops."""
        import psutil

        me = psutil.Process()
        out = [{"pid": me.pid, "name": me.name(), "host": True}]
        for child in me.children(recursive=True):
            try:
                out.append({"pid": child.pid, "name": child.name(), "host": False,
                            "cmdline": " ".join(child.cmdline())[:200]})
            except psutil.Error:
                continue
        return out


class RemoteEngine:
    """The Engine interface over a host actor, for code that runs in Ray Data workers."""

    def __init__(self, name: str, host: Any) -> None:
        self.name = name
        self.host = host

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        import ray

        return ray.get(self.host.generate.remote(requests))

    def close(self) -> None:
        return None


class _Counter:
    """Hands out 0, 1, 2, ...: spreads a pass's Ray Data actors evenly over the hosts."""

    def __init__(self) -> None:
        self.n = -1

    def next(self) -> int:
        self.n += 1
        return self.n


class EngineHosts:
    """Creates each model's engine hosts on first use (placed per its layout); kills them on close."""

    def __init__(self, cfg: PipelineConfig, run_id: str, log_json: bool = True,
                 s3: S3Settings | None = None) -> None:
        self.cfg = cfg
        self.s3 = s3
        """The run's storage settings: engines fetch s3:// weights through them."""
        self.run_id = run_id
        self.log_json = log_json
        self._hosts: dict[str, list[Any]] = {}
        self._groups: dict[str, list[Any]] = {}
        self._counter: Any = None

    def counter(self) -> Any:
        import ray

        if self._counter is None:
            self._counter = ray.remote(_Counter).options(num_cpus=0).remote()
        return self._counter

    def layout(self, model: str) -> EngineLayout:
        import ray

        return engine_layout(get_spec(model), self.cfg, ray.cluster_resources().get("GPU", 0))

    def _fits(self, layout: EngineLayout) -> bool:
        """Whether one more model's engine actors fit in the cluster's free resources."""
        import ray

        free = ray.available_resources()
        # Each engine also needs its Ray Data worker to be schedulable beside it.
        need_cpu = (self.cfg.num_cpus_per_actor + self.cfg.num_cpus_per_worker) * layout.engines
        need_gpu = layout.gpus_per_engine * layout.engines
        return free.get("CPU", 0) >= need_cpu and free.get("GPU", 0) >= need_gpu

    def _options(self, layout: EngineLayout, model: str) -> dict[str, Any]:
        """Ray options for one host; a tensor-parallel engine gets its own placement group."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        opts: dict[str, Any] = {
            "num_cpus": self.cfg.num_cpus_per_actor,
            "max_restarts": -1,
            "max_task_retries": -1,
            # Every block in flight is one concurrent call, plus room for ready/stats.
            "max_concurrency": self.cfg.blocks_in_flight + 4,
        }
        if not layout.packed:
            opts["num_gpus"] = layout.gpus_per_engine or None
            if layout.gpus_per_engine and layout.accelerator_type:
                opts["accelerator_type"] = layout.accelerator_type
            return opts
        # Tensor parallel: one bundle per GPU, all on one node (STRICT_PACK). The host sits
        # in bundle 0 and takes no GPU itself; vLLM's Ray executor starts one worker per
        # bundle inside the group (the layout Ray Data's own vLLM stages use).
        accel = ({f"accelerator_type:{layout.accelerator_type}": 0.001}
                 if layout.accelerator_type else {})
        tp = int(layout.gpus_per_engine)
        bundles = [{"CPU": self.cfg.num_cpus_per_actor + 1.0, "GPU": 1.0, **accel}]
        bundles += [{"CPU": 1.0, "GPU": 1.0, **accel} for _ in range(tp - 1)]
        group = ray.util.placement_group(bundles, strategy="STRICT_PACK",
                                         name=f"engine-{model}-{len(self._groups.get(model, []))}")
        self._groups.setdefault(model, []).append(group)
        opts["num_gpus"] = 0
        opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)
        return opts

    def get(self, model: str) -> list[Any]:
        import ray

        if model not in self._hosts:
            # Resolved here: the driver's registry (incl. $PERSONA_GEN_MODELS_DIR) is the one
            # that counts, and a bad model name fails before any actor starts.
            spec = get_spec(model)
            layout = self.layout(model)
            if self._hosts and not self._fits(layout):
                # Another model's engines hold the room this one needs (a judge that differs
                # from the generator on a small cluster): release them; they reload if needed.
                self._release_engines()
            hosts = [ray.remote(_EngineHost).options(**self._options(layout, model))
                     .remote(spec, self.run_id, self.log_json, self.s3)
                     for _ in range(layout.engines)]
            ready, _ = ray.wait([h.ready.remote() for h in hosts], num_returns=len(hosts),
                                timeout=self.cfg.engine_start_timeout_s)
            if len(ready) < len(hosts):
                self._kill(hosts, self._groups.pop(model, []))
                raise UserError(
                    f"{len(hosts) - len(ready)} of {len(hosts)} engine actors for model '{model}' "
                    f"did not start within {self.cfg.engine_start_timeout_s:.0f} s (each needs "
                    f"{self.cfg.num_cpus_per_actor} CPU, {layout.gpus_per_engine:g} GPU"
                    f"{' of type ' + layout.accelerator_type if layout.accelerator_type else ''}; "
                    f"free: {ray.available_resources()})", source="pipeline")
            ray.get(ready)  # an engine that failed to load raises here
            self._hosts[model] = hosts
        return self._hosts[model]

    @staticmethod
    def _kill(hosts: list[Any], groups: list[Any]) -> None:
        import ray

        for h in hosts:
            ray.kill(h)
        for g in groups:
            ray.util.remove_placement_group(g)

    def _release_engines(self) -> None:
        for model, hosts in self._hosts.items():
            self._kill(hosts, self._groups.pop(model, []))
        self._hosts.clear()

    def close(self) -> None:
        import ray

        self._release_engines()
        if self._counter is not None:
            ray.kill(self._counter)
            self._counter = None

    def __enter__(self) -> EngineHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
