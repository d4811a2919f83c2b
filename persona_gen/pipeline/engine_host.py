"""Engine actors that live for the whole job, one engine each.

Loading a model is the slowest thing an actor does (tens of seconds on CPU, minutes for a
70B model), and a job runs several Ray Data passes (persona rounds, prompts, pairs). So
engines live in long-lived actors created once per model and job; each pass's Ray Data
actors hold a handle to one of them. A host that dies is restarted by Ray (reloading its
model) and the failed call is retried by the block's Ray Data task.
"""

from __future__ import annotations

from typing import Any

from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.engines.registry import ModelSpec, get_spec
from persona_gen.errors import UserError
from persona_gen.pipeline.config import PipelineConfig


class _EngineHost:
    """The actor body: one engine, created at start, serving `generate` calls."""

    def __init__(self, spec: ModelSpec, run_id: str, log_json: bool) -> None:
        from persona_gen import log
        from persona_gen.engines.factory import create_engine

        log.configure(json=log_json)
        log.bind_run(run_id)
        self.engine = create_engine(spec)

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return self.engine.generate(requests)

    def ready(self) -> bool:
        return True


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
    """Creates `cfg.actors` engine hosts per model on first use; kills them on close."""

    def __init__(self, cfg: PipelineConfig, run_id: str, log_json: bool = True) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.log_json = log_json
        self._hosts: dict[str, list[Any]] = {}
        self._counter: Any = None

    def counter(self) -> Any:
        import ray

        if self._counter is None:
            self._counter = ray.remote(_Counter).options(num_cpus=0).remote()
        return self._counter

    def _fits(self) -> bool:
        """Whether one more model's engine actors fit in the cluster's free resources."""
        import ray

        free = ray.available_resources()
        # Each engine also needs its two Ray Data workers to be schedulable beside it.
        need_cpu = (self.cfg.num_cpus_per_actor + 2 * self.cfg.num_cpus_per_worker) * self.cfg.actors
        need_gpu = self.cfg.num_gpus_per_actor * self.cfg.actors
        return free.get("CPU", 0) >= need_cpu and free.get("GPU", 0) >= need_gpu

    def get(self, model: str) -> list[Any]:
        import ray

        if model not in self._hosts:
            if self._hosts and not self._fits():
                # Another model's engines hold the room this one needs (a judge that differs
                # from the generator on a small cluster): release them; they reload if needed.
                self._release_engines()
            actor = ray.remote(_EngineHost).options(
                num_cpus=self.cfg.num_cpus_per_actor,
                num_gpus=self.cfg.num_gpus_per_actor or None,
                max_restarts=-1,
                max_task_retries=-1,
            )
            # Resolved here: the driver's registry (incl. $PERSONA_GEN_MODELS_DIR) is the one
            # that counts, and a bad model name fails before any actor starts.
            spec = get_spec(model)
            hosts = [actor.remote(spec, self.run_id, self.log_json) for _ in range(self.cfg.actors)]
            ready, _ = ray.wait([h.ready.remote() for h in hosts], num_returns=len(hosts),
                                timeout=self.cfg.engine_start_timeout_s)
            if len(ready) < len(hosts):
                for h in hosts:
                    ray.kill(h)
                raise UserError(
                    f"{len(hosts) - len(ready)} of {len(hosts)} engine actors for model '{model}' "
                    f"did not start within {self.cfg.engine_start_timeout_s:.0f} s (each needs "
                    f"{self.cfg.num_cpus_per_actor} CPU, {self.cfg.num_gpus_per_actor} GPU; free: "
                    f"{ray.available_resources()})", source="pipeline")
            ray.get(ready)  # an engine that failed to load raises here
            self._hosts[model] = hosts
        return self._hosts[model]

    def _release_engines(self) -> None:
        import ray

        for hosts in self._hosts.values():
            for h in hosts:
                ray.kill(h)
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
