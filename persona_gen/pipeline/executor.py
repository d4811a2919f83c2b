"""Run chains over blocks as Ray Data map_batches over an actor pool bound to engine actors.

One pass per model: the driver lists pending blocks from storage (never from memory), and
a streaming Ray Data pipeline feeds them to worker actors, each bound to one long-lived
engine actor (pipeline.engine_host), that commit each step's block file; each worker keeps
`pipeline.blocks_in_flight` blocks in its engine at once. Ray restarts a
crashed actor and retries its block (map_batches defaults to max_restarts=-1,
max_task_retries=-1); a retried block overwrites its own files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from persona_gen.engines.failures import EngineUnavailable
from persona_gen.errors import InfrastructureError
from persona_gen.log import get_logger
from persona_gen.pipeline.chain import BlockResult, Chain, LookupCache, pending_blocks, run_block
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import (
    CallDeadline,
    EngineHosts,
    RemoteEngine,
    set_current_block,
)
from persona_gen.storage.runref import RunRef


class EngineWorker:
    """A Ray Data actor: runs chain blocks against one long-lived engine host.

    A block whose engine is out of reach past its retry budget (EngineUnavailable: a hosted
    API that keeps answering 429) is left uncommitted and reported, not failed: the pass
    goes on with the other blocks, and the run then stops so that a resume retries it."""

    def __init__(self, model: str, hosts: list[Any], counter: Any, chains: dict[str, Chain],
                 run: RunRef, log_json: bool = True, deadline: CallDeadline | None = None,
                 drain_margin_s: float = 10.0) -> None:
        import ray

        from persona_gen import log

        log.configure(json=log_json)
        log.bind_run(run.run_id)
        self.model = model
        self.chains = chains
        self.run = run
        self.cache = LookupCache(run)
        # The counter is the run's fleet (pipeline.fleet), on the driver's node: a worker
        # restarted after its node was lost still finds it.
        index = ray.get(counter.next.remote())
        self.fleet = counter
        self.node = ray.get_runtime_context().get_node_id()
        self.engine = RemoteEngine(model, hosts, index, deadline, fleet=counter,
                                   drain_margin_s=drain_margin_s)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: list[str] = []
        unavailable: list[str] = []
        for chain_name, block in zip(batch["chain"], batch["block"], strict=True):
            key = f"{chain_name}/{block}"
            # Which nodes this block touches while in flight: a node lost meanwhile redoes it.
            self.fleet.touch.remote(key, self.node)
            set_current_block(key)
            try:
                res = run_block(self.chains[str(chain_name)], str(block), self.model,
                                self.engine, self.run, self.cache)
            except Exception as exc:
                if not _unavailable(exc):
                    raise
                reason = " ".join(str(_cause(exc)).split())[:300]
                get_logger(stage=str(chain_name), block=str(block)).warning(
                    "block_left_for_resume", model=self.model, reason=reason)
                res = BlockResult(chain=str(chain_name), block=str(block))
                out.append(json.dumps(asdict(res)))
                unavailable.append(reason)
                continue
            finally:
                set_current_block(None)
                self.fleet.end.remote(key)
            out.append(json.dumps(asdict(res)))
            unavailable.append("")
        return {"result": out, "unavailable": unavailable}


def _cause(exc: BaseException) -> BaseException:
    """The exception a Ray task raised, through Ray's wrapper."""
    inner = getattr(exc, "cause", None)
    return inner if isinstance(inner, BaseException) else exc


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, EngineUnavailable) or isinstance(_cause(exc), EngineUnavailable)


def _result_from_json(text: str) -> BlockResult:
    from persona_gen.pipeline.chain import StepSummary

    d = json.loads(text)
    return BlockResult(chain=d["chain"], block=d["block"],
                       steps=[StepSummary(**s) for s in d["steps"]], waiting_for=d["waiting_for"])


def run_chains(chains: Iterable[Chain], run: RunRef, cfg: PipelineConfig,
               on_result: Callable[[BlockResult], None] | None = None,
               log_json: bool = True, hosts: EngineHosts | None = None) -> list[BlockResult]:
    """Run every pending block of `chains` to completion, one Ray Data pass per model.

    `hosts` keeps engines loaded across calls (a run passes one for its whole length);
    without it, engines are loaded for this call and released at its end.
    """
    if hosts is None:
        with EngineHosts(cfg, run.run_id, log_json) as own:
            return run_chains(chains, run, cfg, on_result, log_json, own)
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    chains = {c.name: c for c in chains}
    results: list[BlockResult] = []
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver draws its own per-stage bars
    while True:
        tasks_by_model: dict[str, list[dict[str, str]]] = {}
        for chain in chains.values():
            for block, model in pending_blocks(run, chain).items():
                tasks_by_model.setdefault(model, []).append({"chain": chain.name, "block": block})
        if not tasks_by_model:
            return results
        # Models in the order their first step appears, so dependencies run first.
        order = [s.model for c in chains.values() for s in c.steps]
        model = min(tasks_by_model, key=order.index)
        tasks = tasks_by_model[model]
        engines = hosts.get(model)
        ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
        # One worker per engine, running `blocks_in_flight` blocks at once in threads: their
        # engine calls overlap in the engine's batch and each other's reads and commits
        # (pyarrow and Ray release the GIL there). Threads rather than more worker
        # processes, which would cost memory per block in flight; each block still commits
        # its own files, so a retried block overwrites only itself.
        in_flight = cfg.blocks_in_flight
        ds = ds.map_batches(
            EngineWorker,
            batch_size=1,
            compute=ActorPoolStrategy(
                size=max(1, min(len(engines), math.ceil(len(tasks) / in_flight))),
                max_tasks_in_flight_per_actor=in_flight,
                max_concurrent_calls_per_actor=in_flight,
                enable_true_multi_threading=True),
            num_cpus=cfg.num_cpus_per_worker,
            fn_constructor_kwargs={
                "model": model, "hosts": engines, "counter": hosts.counter(),
                "chains": chains, "run": run, "log_json": log_json,
                "deadline": hosts.deadline(model), "drain_margin_s": cfg.drain_margin_s,
            },
        )
        progressed = False
        left: list[str] = []
        try:
            for row in ds.iter_rows():
                if row["unavailable"]:
                    left.append(row["unavailable"])
                    continue
                res = _result_from_json(row["result"])
                progressed = progressed or any(not s.resumed for s in res.steps)
                results.append(res)
                if on_result:
                    on_result(res)
        except BaseException:
            # The node watch's verdict (too many nodes lost, no engine for too long) is why
            # the pass ended, however it reached here (a worker raised it, or the watch
            # interrupted this thread).
            if hosts.verdict is not None:
                raise hosts.verdict from None
            raise
        if left:
            raise InfrastructureError(
                f"{len(left)} of {len(tasks)} blocks were left uncommitted: model '{model}' "
                f"stayed out of reach past its retry budget ({left[0]}); every other block is "
                "committed, and rerunning the same command resumes these", source="pipeline")
        if not progressed:
            raise RuntimeError(f"a pass of model {model} committed nothing; stopping to avoid a loop")
