"""Engine actors that live for the whole job, one engine each, several blocks at a time.

Loading a model is the slowest thing an actor does (tens of seconds on CPU, minutes for a
70B model), and a run makes several Ray Data passes (persona rounds, prompts, pairs). So
engines live in long-lived actors created once per model and run; each pass's Ray Data
workers hold a handle to one of them.

A host is an async actor around an async engine (vLLM's AsyncLLM, or `sim`): it serves
`pipeline.blocks_in_flight` `generate` calls at once, and lets about 1.1 x max_num_seqs of
their requests into the engine at a time (pipeline.admission); the rest wait in the host
and enter as sequences finish, so the batch never drains at a block's end and the next
block's I/O overlaps generation. Engines without an async form (echo, HTTP) run in the
host's threads. At start the host logs its engine's resolved settings as one JSON line
(`engine_settings`), which the run records in the manifest.

Lifecycle:
- A dead engine (vLLM's engine core killed or crashed) makes the host exit: Ray restarts
  it, reloading the model, and re-sends the calls that were in flight (the actor has
  max_task_retries=-1). Nothing was committed for those blocks (workers commit after a call
  returns), so nothing is committed twice.
- A host that exits (engine death, a restart asked for, the run's end) first closes its
  engine within `pipeline.engine_close_timeout_s`, then ends its own child processes; a
  watcher process ends them too if the host is killed outright (pipeline.reaper). No engine
  core outlives its host.
- Every engine call has a deadline (CallDeadline); past it the worker restarts the host and
  waits for the re-sent call once more.
- The rows in the engine when it died are suspects: the restarted host runs them alone
  (the engine drained first), in groups an eighth of the size each time one crashes; a row
  that kills the engine again when it runs by itself is committed as an error row
  (`engine crash`) instead of being retried forever. The crash ledger (an actor of the
  run's) carries this across host restarts.

Hosts are placed from the config and each model's GPU count, not from the GPUs a cluster
shows at start (an autoscaling cluster may show none); while the cluster has no room for
them, the job logs `waiting_for_gpus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.engines.failures import ENGINE_CRASH
from persona_gen.engines.registry import ModelSpec, get_spec
from persona_gen.engines.settings import admission_limit, start_timeout_s
from persona_gen.engines.structured import effective_sampling
from persona_gen.errors import CapacityLost, ConfigError, InfrastructureError, UserError
from persona_gen.hashing import hex_id
from persona_gen.log import get_logger
from persona_gen.pipeline.admission import Admission
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.fleet import NodeWatch, _Fleet, driver_node_actor
from persona_gen.storage.settings import S3Settings

GPU_ENGINES = ("vllm", "sim")
"""Engine kinds that hold GPUs (sim stands in for a GPU engine, so it is placed like one)."""
WAIT_LOG_EVERY_S = 30.0
"""How often the driver says it is still waiting for GPUs."""
CRASH_SPLIT = 8
"""After a crash, suspects run alone in groups this many times smaller."""


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


def engine_layout(spec: ModelSpec, cfg: PipelineConfig) -> EngineLayout:
    """GPUs per engine from the model file's tensor_parallel_size, and how many engines.

    The run's GPUs are `pipeline.actors` x `pipeline.num_gpus_per_actor`; a model gets as
    many engines as fit in them (8 GPUs: eight 8B engines, or one 70B engine over 8), never
    fewer than one, whatever the cluster shows at start (an autoscaling cluster may start
    with no GPU node). A hosted model (HTTP) gets at most one host per request its
    `concurrency` allows, since the hosts share that total.
    """
    if spec.engine not in GPU_ENGINES or cfg.num_gpus_per_actor == 0:
        engines = cfg.actors
        if spec.engine == "openai":
            engines = min(engines, spec.concurrency)
        return EngineLayout(engines, 0.0)
    gpus = float(spec.tensor_parallel_size) if spec.tensor_parallel_size > 1 else cfg.num_gpus_per_actor
    budget = cfg.actors * cfg.num_gpus_per_actor
    engines = max(1, math.floor(budget / gpus + 1e-9))
    return EngineLayout(engines, gpus, spec.accelerator_type or cfg.accelerator_type)


def refuse_unworkable(spec: ModelSpec, layout: EngineLayout) -> None:
    """ConfigError for host layouts that cannot work, before anything starts."""
    backend = spec.vllm_args.get("distributed_executor_backend")
    if spec.engine == "vllm" and layout.packed and backend not in (None, "ray"):
        raise ConfigError(
            f"'vllm_args.distributed_executor_backend': '{backend}' cannot work in a "
            f"tensor-parallel engine host: the host holds no GPU itself (its "
            f"{layout.gpus_per_engine:g} GPUs are in its placement group), so its processes "
            "would see every GPU of the node; use 'ray' or leave it unset",
            source=f"model '{spec.name}'")


def concurrency_shares(total: int, hosts: int) -> list[int]:
    """A hosted model's `concurrency` split between its hosts: the run's total stays it."""
    return [total // hosts + (1 if i < total % hosts else 0) for i in range(hosts)]


def request_key(req: ChatRequest) -> str:
    """One request, as the crash ledger knows it (the same request in every attempt)."""
    return hex_id(req.model_dump_json())


@dataclass(frozen=True)
class CallDeadline:
    """How long one engine call (a block) may take before its host counts as hung.

    Derived: the engine's start timeout (a restart may reload the model within the call)
    plus, at `min_tok_s`, every token the block may ask for (max_tokens x samples, times
    the schema retries) for each of the blocks in flight that share the engine. A fixed
    `override_s` wins."""

    start_s: float
    blocks_in_flight: int
    min_tok_s: float
    json_retries: int
    override_s: float | None = None

    def seconds(self, requests: list[ChatRequest]) -> float:
        if self.override_s is not None:
            return self.override_s
        tokens = 0
        for r in requests:
            attempts = 1 + (self.json_retries if r.json_schema is not None or r.choices else 0)
            tokens += r.sampling.max_tokens * r.sampling.n * attempts
        return self.start_s + self.blocks_in_flight * tokens / self.min_tok_s


def call_deadline(spec: ModelSpec, cfg: PipelineConfig) -> CallDeadline:
    gpu = spec.engine in GPU_ENGINES and cfg.num_gpus_per_actor > 0
    return CallDeadline(
        start_s=start_timeout_s(spec, cfg.engine_start_timeout_s, cfg.engine_start_s_per_gb),
        blocks_in_flight=cfg.blocks_in_flight,
        min_tok_s=cfg.deadline_min_tok_s if gpu else cfg.deadline_min_tok_s / 20,
        json_retries=spec.json_retries, override_s=cfg.call_deadline_s)


def _engine_dead(exc: BaseException) -> bool:
    return type(exc).__name__ in ("EngineDead", "EngineDeadError")


class _CrashLedger:
    """Which requests were in an engine when it died, across host restarts (an actor).

    `next[key]` is the size of the group the request runs in alone next time (0: it killed
    the engine while running by itself, and becomes an error row)."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}
        self.crashes = 0
        self.poisoned = 0

    def status(self, keys: list[str]) -> dict[str, int]:
        return {k: self.next[k] for k in keys if k in self.next} if self.next else {}

    def crashed(self, keys: list[str], alone: bool) -> None:
        """The engine died with `keys` in it; `alone`: they ran as an exclusive group."""
        self.crashes += 1
        if alone and len(keys) == 1:
            if self.next.get(keys[0]) != 0:
                self.poisoned += 1
            self.next[keys[0]] = 0
            return
        size = max(1, math.ceil(len(keys) / CRASH_SPLIT))
        for k in keys:
            if self.next.get(k) != 0:
                self.next[k] = min(self.next.get(k, size), size)

    def cleared(self, keys: list[str]) -> None:
        for k in keys:
            self.next.pop(k, None)

    def counts(self) -> dict[str, int]:
        return {"crashes": self.crashes, "poisoned": self.poisoned,
                "suspects": sum(1 for v in self.next.values() if v > 0)}


class _EngineHost:
    """The actor body: one engine, created in the actor's event loop, serving `generate`."""

    def __init__(self, spec: ModelSpec, run_id: str, log_json: bool,
                 s3: S3Settings | None = None, accelerator_type: str | None = None,
                 ledger: Any = None, close_timeout_s: float = 30.0) -> None:
        from persona_gen import log

        log.configure(json=log_json)
        log.bind_run(run_id)
        self.spec = spec
        self.s3 = s3
        self.accelerator_type = accelerator_type
        self.ledger = ledger
        self.close_timeout_s = close_timeout_s
        self.started_at = time.time()
        self.engine: Any = None
        self.settings_line: dict[str, Any] | None = None
        self.admission: Admission | None = None
        self._died_with: set[str] = set()
        """Requests whose own call saw the engine die (they left the admission already)."""
        self._died_alone: list[str] | None = None
        """The group running alone when the engine died."""
        self._starting: asyncio.Lock | None = None
        self._log = log.get_logger(stage="engine_host", model=spec.name)
        self._reaper: subprocess.Popen[bytes] | None = None

    async def _ready_engine(self) -> Any:
        # Built lazily, inside the actor's event loop: AsyncLLM's output handler is a task of
        # the loop that creates it. A restarted host builds it on the first call.
        if self.engine is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self.engine is None:
                    from persona_gen.engines.factory import create_async_engine
                    from persona_gen.engines.vllm_engine import detect_gpu_class

                    if self.spec.engine in ("vllm", "custom") and self._reaper is None:
                        # Engines that start processes of their own (vLLM's engine core).
                        self._reaper = _start_reaper()
                    gpu_class = (detect_gpu_class(self.accelerator_type)
                                 if self.spec.engine == "vllm" else None)
                    engine = create_async_engine(self.spec, s3=self.s3, gpu_class=gpu_class)
                    settings = getattr(engine, "settings", None)
                    if settings is not None:
                        self.settings_line = settings.log_fields()
                        self.admission = Admission(admission_limit(settings.max_num_seqs))
                        # One line a reader can parse: what this engine really runs with.
                        self._log.info("engine_settings", **self.settings_line)
                    self.engine = engine
        return self.engine

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        engine = await self._ready_engine()
        try:
            if hasattr(engine, "agenerate"):
                return await self._run_async(engine, requests)
            return await asyncio.to_thread(engine.generate, requests)
        except Exception as exc:
            if _engine_dead(exc):
                self._die(exc)
            raise

    # -- async engines: admission and crash attribution ------------------------------------

    async def _run_async(self, engine: Any, requests: list[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        keys = [request_key(r) for r in requests]
        status: dict[str, int] = {}
        if self.ledger is not None:
            status = await self.ledger.status.remote(keys)
        results: list[ChatResult | None] = [None] * len(requests)
        suspects: list[int] = []
        for i, k in enumerate(keys):
            if status.get(k) == 0:
                results[i] = ChatResult(id=requests[i].id, error=(
                    f"{ENGINE_CRASH}: the engine died twice with this request in it, the "
                    "second time running it alone; not retried"))
            elif k in status:
                suspects.append(i)
        # Suspects first, alone in the engine, in groups of the ledger's size.
        suspects.sort(key=lambda i: status[keys[i]])
        if suspects or len(status) > len(suspects):
            self._log.warning("running_suspects_alone", suspects=len(suspects),
                              errors=len(status) - len(suspects),
                              group=status[keys[suspects[0]]] if suspects else 0)
        while suspects:
            size = status[keys[suspects[0]]]
            group, suspects = suspects[:size], suspects[size:]
            group_keys = [keys[i] for i in group]
            admission = self._admission()
            try:
                async with admission.exclusive(group_keys):
                    done = await asyncio.gather(*(self._one(engine, requests[i], keys[i])
                                                  for i in group))
            except Exception as exc:
                if _engine_dead(exc):
                    self._died_alone = group_keys  # the group left the gate with the error
                raise
            for i, res in zip(group, done, strict=True):
                results[i] = res
            if self.ledger is not None:
                await self.ledger.cleared.remote(group_keys)
        rest = [i for i, r in enumerate(results) if r is None]
        done = await asyncio.gather(*(self._one(engine, requests[i], keys[i]) for i in rest))
        for i, res in zip(rest, done, strict=True):
            results[i] = res
        return [r for r in results if r is not None]

    def _admission(self) -> Admission:
        if self.admission is None:
            self.admission = Admission(admission_limit(1024))
        return self.admission

    async def _one(self, engine: Any, req: ChatRequest, key: str) -> ChatResult:
        n = effective_sampling(req.sampling, self.spec.sampling).n
        try:
            async with self._admission().slot(n, key):
                (res,) = await engine.agenerate([req])
        except Exception as exc:
            if _engine_dead(exc):
                self._died_with.add(key)  # it left the engine with the error: still a suspect
            raise
        return res

    # -- exits -------------------------------------------------------------------------------

    def _die(self, exc: BaseException) -> None:
        # Not ray.actor.exit_actor(): an intended exit is never restarted. A crash is, and
        # Ray then re-sends every call that was in flight to the fresh host.
        self._log.error("engine died; exiting so that Ray restarts this host",
                        error=" ".join(str(exc).split())[:300] or type(exc).__name__)
        self._report_crash()
        self._exit(1)

    def _report_crash(self) -> None:
        if self.ledger is None or self.admission is None:
            return
        alone = self._died_alone or self.admission.exclusive_keys
        keys = alone if alone is not None else sorted(
            set(self.admission.in_flight_keys()) | self._died_with)
        if not keys:
            return
        import ray

        try:
            ray.get(self.ledger.crashed.remote(keys, alone is not None), timeout=30)
            self._log.warning("engine_crash_recorded", requests=len(keys),
                              alone=alone is not None)
        except Exception as exc:  # the crash goes unrecorded; the retry still happens
            self._log.warning("crash_not_recorded", error=str(exc)[:200])

    def _stop(self) -> None:
        """Close the engine within the time limit, then end every process this host started."""
        engine, self.engine = self.engine, None
        if engine is not None:
            closer = threading.Thread(target=_close, args=(engine, self.close_timeout_s),
                                      daemon=True)
            closer.start()
            closer.join(self.close_timeout_s + 5)
            if closer.is_alive():
                self._log.warning("engine did not close in time; ending its processes",
                                  timeout_s=self.close_timeout_s)
        import psutil

        from persona_gen.pipeline.reaper import end_processes

        end_processes(psutil.Process().children(recursive=True))

    def _exit(self, code: int) -> None:
        self._stop()
        os._exit(code)

    async def restart(self, requested_at: float, reason: str) -> bool:
        """Exit so that Ray restarts this host (and re-sends its calls). A request that
        reaches a host started after it was made (Ray re-sends it too) does nothing."""
        if self.started_at >= requested_at:
            return False
        # A hung engine is not a crash: no row becomes a suspect for it.
        self._log.error("restarting this engine host", reason=reason)
        self._exit(1)
        return True  # never reached

    async def shutdown(self) -> bool:
        """The run's end: close the engine and end its processes (the driver then kills
        the actor)."""
        self._stop()
        return True

    # -- for the driver, tests and ops -----------------------------------------------------

    def ping(self) -> float:
        """Answers once the host is placed (its process is up): when it started."""
        return self.started_at

    def where(self) -> str:
        """The Ray node this host runs on (the driver's node watch asks every few seconds)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    async def ready(self) -> bool:
        await self._ready_engine()
        return True

    def settings(self) -> dict[str, Any] | None:
        """The engine's resolved settings (the `engine_settings` line), or None."""
        return self.settings_line

    async def stats(self) -> dict[str, Any]:
        """The engine's own counters where it keeps any (sim: simulated busy time), and the
        host's admission figures."""
        engine = await self._ready_engine()
        out = dict(engine.stats()) if hasattr(engine, "stats") else {}
        if self.admission is not None:
            out.update(admission_limit=self.admission.limit, admission_peak=self.admission.peak,
                       admitted=self.admission.admitted)
        return out

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


def _close(engine: Any, timeout_s: float) -> None:
    try:
        try:
            engine.close(timeout_s=timeout_s)
        except TypeError:
            engine.close()
    except Exception:
        pass  # a dead engine may fail to close; its processes are ended next


def _start_reaper() -> subprocess.Popen[bytes] | None:
    try:
        return subprocess.Popen([sys.executable, "-m", "persona_gen.pipeline.reaper",
                                 str(os.getpid())], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


_current = threading.local()
"""The block a Ray Data worker's thread is running (its key), for the fleet's in-flight
record."""


def set_current_block(key: str | None) -> None:
    _current.key = key


class RemoteEngine:
    """The Engine interface over a model's host actors, for code that runs in Ray Data
    workers.

    A call goes to this worker's own host (`index`) while the fleet's view shows it alive on
    a node that is not draining, else to another host that is; with none alive it waits
    (the driver ends the attempt after pipeline.capacity_wait_s). A call in flight on a host
    whose node died, or on a draining node within pipeline.drain_margin_s of its deadline, is
    sent again to a host elsewhere: nothing of it was committed (pipeline.fleet).

    Each call waits at most its deadline; past it, the host is restarted (Ray re-sends the
    call to the fresh host) and the call waited for once more. A second miss raises."""

    def __init__(self, name: str, hosts: list[Any], index: int = 0,
                 deadline: CallDeadline | None = None, fleet: Any = None,
                 drain_margin_s: float = 10.0) -> None:
        self.name = name
        self.hosts = hosts
        self.index = index % len(hosts)
        self.deadline = deadline
        self.fleet = fleet
        self.drain_margin_s = drain_margin_s
        self.restarts = 0
        self.resent = 0
        self._view: Any = None
        self._view_at = 0.0
        self._moved = False
        self._lock = threading.Lock()

    @property
    def host(self) -> Any:
        return self.hosts[self.index]

    def _key(self, i: int) -> str:
        return f"{self.name}/{i}"

    def view(self, max_age_s: float = 1.0) -> Any:
        """The fleet's view, fetched at most every max_age_s (None without a fleet)."""
        import ray

        if self.fleet is None:
            return None
        with self._lock:
            if self._view is None or time.monotonic() - self._view_at > max_age_s:
                self._view = ray.get(self.fleet.get_view.remote(), timeout=60)
                self._view_at = time.monotonic()
            return self._view

    def _pick(self) -> int:
        """This worker's host if usable, else the next usable one; waits while none is."""
        view = self.view()
        if view is None or not view.hosts:
            return self.index
        waited = 0.0
        while True:
            if view.verdict:
                raise CapacityLost(view.verdict)
            order = [(self.index + k) % len(self.hosts) for k in range(len(self.hosts))]
            for test in (view.usable, view.up):  # a draining host only when no other is up
                for i in order:
                    if test(self._key(i)):
                        self._note_move(view, i)
                        return i
            if waited == 0.0:
                get_logger(stage="engine").warning("no_engine_alive", model=self.name,
                                                   action="waiting for capacity")
            time.sleep(1.0)
            waited += 1.0
            view = self.view()

    def _note_move(self, view: Any, i: int) -> None:
        """Log once when this worker's blocks start going to another host, and why."""
        own = self._key(self.index)
        moved = i != self.index
        if moved and not self._moved:
            node = view.hosts.get(own)
            why = ("its node is draining" if node in view.draining else
                   "its node was lost" if node in view.dead else "it is not placed")
            get_logger(stage="engine").info("engine_host_avoided", model=self.name,
                                            host=own, to=self._key(i), reason=why)
        self._moved = moved

    def _abandon(self, i: int, node: str | None, ref: Any) -> str | None:
        """Why a call in flight on host i (placed on `node`) must go elsewhere, or None."""
        view = self.view()
        if view is None:
            return None
        if view.verdict:
            raise CapacityLost(view.verdict)
        if node is not None and node in view.dead:
            return "its node was lost"
        deadline_ms = view.draining.get(node) if node is not None else None
        if deadline_ms and time.time() * 1000 >= deadline_ms - self.drain_margin_s * 1000:
            return "its node is draining and near its deadline"
        return None

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        import ray
        from ray.exceptions import GetTimeoutError

        limit = self.deadline.seconds(requests) if self.deadline is not None else None
        key = getattr(_current, "key", None)
        restarted = False
        while True:
            i = self._pick()
            view = self.view()
            node = view.hosts.get(self._key(i)) if view is not None else None
            if key is not None and node is not None and self.fleet is not None:
                self.fleet.touch.remote(key, node)
            ref = self.hosts[i].generate.remote(requests)
            sent = time.monotonic()
            while True:
                step = 2.0 if self.fleet is not None else None
                if limit is not None:
                    left = limit - (time.monotonic() - sent)
                    step = max(0.0, left) if step is None else max(0.0, min(step, left))
                try:
                    return ray.get(ref, timeout=step)
                except GetTimeoutError:
                    pass
                if limit is not None and time.monotonic() - sent >= limit:
                    if restarted:
                        ray.cancel(ref)
                        raise InfrastructureError(
                            f"an engine call of {len(requests)} requests to model '{self.name}' "
                            f"passed its deadline of {limit:.0f} s twice, the second time on a "
                            "restarted host; rerun to resume (pipeline.call_deadline_s sets the "
                            "deadline)", source="pipeline") from None
                    restarted = True
                    self._restart(self.hosts[i], limit, len(requests))
                    sent = time.monotonic()
                    continue
                why = self._abandon(i, node, ref)
                if why is not None:
                    break
            # Sent again elsewhere; the abandoned call is cancelled where it still waits.
            self.resent += 1
            get_logger(stage="engine").warning("engine_call_resent", model=self.name,
                                               rows=len(requests), reason=why, node_id=node)
            with contextlib.suppress(Exception):
                ray.cancel(ref)

    def _restart(self, host: Any, limit: float, rows: int) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        self.restarts += 1
        get_logger(stage="engine").warning(
            "engine_call_deadline", model=self.name, deadline_s=round(limit, 1), rows=rows,
            action="restarting the engine host; the call is sent again")
        try:
            ray.get(host.restart.remote(time.time(), f"a call passed its {limit:.0f} s "
                                                     "deadline"), timeout=120)
        except RayActorError:
            pass  # it exited, as asked
        except GetTimeoutError:
            # Its event loop does not answer: kill it outright (the reaper ends its engine).
            ray.kill(host, no_restart=False)

    def close(self) -> None:
        return None


class EngineHosts:
    """Creates each model's engine hosts on first use (placed per its layout); closes them
    (engine first, then the actor) at the end.

    `on_settings(model, line)` is called once per model with its first host's resolved
    engine settings (the run records them in the manifest). Once hosts exist, a node watch
    (pipeline.fleet) follows where they run; `on_capacity(losses, alive, planned)` is
    called with each node lost and each change in the engines alive."""

    def __init__(self, cfg: PipelineConfig, run_id: str, log_json: bool = True,
                 s3: S3Settings | None = None,
                 on_settings: Callable[[str, dict[str, Any]], None] | None = None,
                 on_capacity: Callable[[list[Any], int, int], None] | None = None) -> None:
        self.cfg = cfg
        self.s3 = s3
        """The run's storage settings: engines fetch s3:// weights through them."""
        self.run_id = run_id
        self.log_json = log_json
        self.on_settings = on_settings
        self.settings: dict[str, dict[str, Any]] = {}
        """model -> its engines' resolved settings (from the first host)."""
        self._hosts: dict[str, list[Any]] = {}
        self._groups: dict[str, list[Any]] = {}
        self._fleet: Any = None
        self._ledger: Any = None
        self.on_capacity = on_capacity
        self.watch: NodeWatch | None = None
        self._verdict: CapacityLost | None = None
        self._log = get_logger(stage="engines")

    def fleet(self) -> Any:
        """The run's fleet actor (pipeline.fleet), on the driver's node."""
        if self._fleet is None:
            self._fleet = driver_node_actor(_Fleet)
        return self._fleet

    def counter(self) -> Any:
        """Hands out worker indexes (the fleet does)."""
        return self.fleet()

    def ledger(self) -> Any:
        if self._ledger is None:
            self._ledger = driver_node_actor(_CrashLedger)
        return self._ledger

    def host_keys(self) -> dict[str, Any]:
        """Every engine host held now, by key (model/index), for the node watch."""
        return {f"{m}/{i}": h for m, hosts in list(self._hosts.items())
                for i, h in enumerate(hosts)}

    def _watch(self) -> None:
        if self.watch is None:
            self.watch = NodeWatch(self.cfg, self.fleet(), self.host_keys, self.on_capacity)
            self.watch.start()
        else:
            self.watch.tick()

    @property
    def verdict(self) -> CapacityLost | None:
        """Why the node watch ended the attempt (kept after close), or None."""
        return self.watch.verdict if self.watch is not None else self._verdict

    def layout(self, model: str) -> EngineLayout:
        return engine_layout(get_spec(model), self.cfg)

    def deadline(self, model: str) -> CallDeadline:
        return call_deadline(get_spec(model), self.cfg)

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
            refuse_unworkable(spec, layout)
            if self._hosts and not self._fits(layout):
                # Another model's engines hold the room this one needs (a judge that differs
                # from the generator on a small cluster): release them; they reload if needed.
                self._release_engines()
            specs = [spec] * layout.engines
            if spec.engine == "openai":
                # Each host's HTTP pool gets its share: the file's concurrency is the total.
                specs = [spec.model_copy(update={"concurrency": c})
                         for c in concurrency_shares(spec.concurrency, layout.engines)]
            ledger = self.ledger() if spec.engine != "openai" else None
            hosts = [ray.remote(_EngineHost).options(**self._options(layout, model))
                     .remote(s, self.run_id, self.log_json, self.s3, layout.accelerator_type,
                             ledger, self.cfg.engine_close_timeout_s)
                     for s in specs]
            try:
                self._wait_placed(model, hosts, layout)
                self._wait_ready(model, spec, hosts, layout)
            except BaseException:
                # A host still loading cannot answer a shutdown: kill it outright (its
                # reaper ends the engine processes it had started).
                self._kill(hosts, self._groups.pop(model, []), graceful=False)
                raise
            self._hosts[model] = hosts
            self._watch()
            line = ray.get(hosts[0].settings.remote())
            if line is not None:
                self.settings[model] = line
                self._warn_underfed(spec, line)
                if self.on_settings is not None:
                    self.on_settings(model, line)
        return self._hosts[model]

    def _warn_underfed(self, spec: ModelSpec, line: dict[str, Any]) -> None:
        """On a GPU, the blocks in flight must hold more rows than the engine admits, or its
        batch drains at every block's end (sim_scale: 0.60 of the ideal at 4 x 256 rows
        against 1,024 sequences, 0.90 at 4 x 1,024). A CPU engine is full far sooner."""
        gpu = spec.engine == "sim" or self.cfg.num_gpus_per_actor > 0
        rows = self.cfg.batch_size * self.cfg.blocks_in_flight
        if gpu and rows < 2 * line["admission_limit"]:
            self._log.warning(
                "engine_underfed", model=spec.name, rows_in_flight=rows,
                admission_limit=line["admission_limit"],
                advice=f"set pipeline.batch_size x pipeline.blocks_in_flight to at least "
                       f"{2 * line['admission_limit']} so the engine's batch stays full")

    def _needs(self, layout: EngineLayout) -> str:
        accel = f" of type {layout.accelerator_type}" if layout.accelerator_type else ""
        return (f"{self.cfg.num_cpus_per_actor} CPU, {layout.gpus_per_engine:g} GPU{accel} "
                "each")

    def _wait_placed(self, model: str, hosts: list[Any], layout: EngineLayout) -> None:
        """Until the cluster has placed every host (an autoscaler may be starting GPU
        nodes), saying so every WAIT_LOG_EVERY_S."""
        import ray

        pending = {h.ping.remote(): h for h in hosts}
        started = time.monotonic()
        while pending:
            left = self.cfg.gpu_wait_timeout_s - (time.monotonic() - started)
            if left <= 0:
                raise UserError(
                    f"{len(pending)} of {len(hosts)} engine actors for model '{model}' were not "
                    f"placed within {self.cfg.gpu_wait_timeout_s:.0f} s ({self._needs(layout)}; "
                    f"cluster: {ray.cluster_resources()}; free: {ray.available_resources()})",
                    source="pipeline.gpu_wait_timeout_s")
            done, _ = ray.wait(list(pending), num_returns=len(pending),
                               timeout=min(WAIT_LOG_EVERY_S, left))
            for ref in done:
                pending.pop(ref)
            if pending:
                self._log.info("waiting_for_gpus", model=model, engines=len(hosts),
                               placed=len(hosts) - len(pending), needs=self._needs(layout),
                               cluster_gpus=ray.cluster_resources().get("GPU", 0),
                               free_gpus=ray.available_resources().get("GPU", 0),
                               waited_s=round(time.monotonic() - started))

    def _wait_ready(self, model: str, spec: ModelSpec, hosts: list[Any],
                    layout: EngineLayout) -> None:
        import ray

        timeout = start_timeout_s(spec, self.cfg.engine_start_timeout_s,
                                  self.cfg.engine_start_s_per_gb)
        ready, _ = ray.wait([h.ready.remote() for h in hosts], num_returns=len(hosts),
                            timeout=timeout)
        if len(ready) < len(hosts):
            raise UserError(
                f"{len(hosts) - len(ready)} of {len(hosts)} engines for model '{model}' did not "
                f"load within {timeout:.0f} s (pipeline.engine_start_timeout_s plus "
                f"engine_start_s_per_gb for its weights)", source="pipeline")
        ray.get(ready)  # an engine that failed to load raises here

    def _kill(self, hosts: list[Any], groups: list[Any], graceful: bool = True,
              gone: set[int] | None = None) -> None:
        """Each host closes its engine and ends its processes, then the actor goes. Hosts in
        `gone` (lost with their node, not back) are not waited for: none would answer."""
        import ray

        closing = [h.shutdown.remote() for i, h in enumerate(hosts)
                   if i not in (gone or set())] if graceful else []
        if closing:
            ray.wait(closing, num_returns=len(closing),
                     timeout=self.cfg.engine_close_timeout_s + 15)
        for h in hosts:
            ray.kill(h)
        for g in groups:
            ray.util.remove_placement_group(g)

    def _release_engines(self) -> None:
        lost = self.watch.lost_hosts() if self.watch is not None else set()
        for model, hosts in self._hosts.items():
            gone = {i for i in range(len(hosts)) if f"{model}/{i}" in lost}
            self._kill(hosts, self._groups.pop(model, []), gone=gone)
        self._hosts.clear()

    def crash_counts(self) -> dict[str, int]:
        import ray

        return ray.get(self.ledger().counts.remote())

    def close(self) -> None:
        import ray

        if self.watch is not None:
            self.watch.stop()
            self._verdict = self.watch.verdict
        self._release_engines()
        self.watch = None
        for actor in (self._fleet, self._ledger):
            if actor is not None:
                ray.kill(actor)
        self._fleet = self._ledger = None

    def __enter__(self) -> EngineHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
