"""Which engines are alive and where, as the run's driver sees it: spot-safe runs.

A GPU node may be taken at any moment (spot or preemptible capacity). Its loss must cost
the blocks it had in flight and the reload of its engines, not the run. Three parts:

- `_Fleet`, a small actor on the driver's node (it lives as long as the driver; Ray
  restarts it there if it dies): it hands each Ray Data worker its preferred host, holds
  the driver's latest `FleetView`, and keeps which node every block in flight touches
  (its worker's and its engine's), so a loss can say how many blocks it redoes.
- `NodeWatch`, a thread of the driver: every WATCH_EVERY_S it reads the node table and the
  draining nodes from Ray's GCS and pings each host; it records each node lost (time,
  node, engines lost, blocks redone), logs `waiting_for_capacity` while fewer engines than
  planned are alive, and ends the attempt with `CapacityLost` (exit 5) past
  `pipeline.node_loss_budget` losses or after `pipeline.capacity_wait_s` with no engine.
- `RemoteEngine` (pipeline.engine_host) reads the view: it sends a block to its own host
  while that host is alive on a node that is not draining, else to another one; a call in
  flight on a host whose node died, or on a draining node near its deadline, is sent again
  elsewhere (nothing of it was committed: workers commit after a call returns).

Engine hosts restart by themselves (max_restarts=-1) wherever the cluster has room, or on
a replacement node when one joins; Ray Data restarts its workers and retries their
blocks. Nothing a restart needs lives on a worker node: the Ray Data workers' constructor
arguments are the driver's objects (its node's object store), and the fleet, crash ledger
and the driver sit on the driver's node, the one node that must live (the head).
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from persona_gen.errors import CapacityLost
from persona_gen.log import get_logger
from persona_gen.pipeline.config import PipelineConfig

WATCH_EVERY_S = 2.0
"""How often the driver reads the node table and pings the hosts."""
PING_TIMEOUT_S = 2.0
WAIT_LOG_EVERY_S = 30.0
"""How often the driver says it is still waiting for capacity."""
INTERRUPT_AFTER_S = 60.0
"""After a verdict, how long the driver waits for a worker to raise it before interrupting
its own main thread (no worker may be left to raise it)."""


@dataclass(frozen=True)
class FleetView:
    """The driver's latest view, as workers read it."""

    hosts: dict[str, str | None] = field(default_factory=dict)
    """host key (model/index) -> the node it last answered from (None: never yet). A host
    that is slow to answer (a loaded node, an engine reloading in place) keeps its node."""
    dead: frozenset[str] = frozenset()
    """Nodes Ray has marked dead during this attempt."""
    draining: dict[str, int] = field(default_factory=dict)
    """Draining nodes -> their drain deadline (ms since the epoch; 0: none)."""
    verdict: str | None = None
    """Set when the attempt must end (CapacityLost's line)."""

    def usable(self, key: str) -> bool:
        if key not in self.hosts:
            return True  # a host placed since the driver's last look: it answered `ready`
        node = self.hosts[key]
        return node is not None and node not in self.dead and node not in self.draining

    def up(self, key: str) -> bool:
        if key not in self.hosts:
            return True
        node = self.hosts[key]
        return node is not None and node not in self.dead


@dataclass(frozen=True)
class NodeLoss:
    """One node lost during the run, as the manifest records it."""

    at: str
    node_id: str
    node_ip: str
    engines_lost: int
    blocks_redone: int
    waited_s: float | None = None
    """Seconds until the engines planned were all alive again (None: not yet, or never)."""


class _Fleet:
    """The actor body (see the module's docstring)."""

    def __init__(self) -> None:
        self.n = -1
        self.view = FleetView()
        self.in_flight: dict[str, set[str]] = {}
        """block key -> nodes it touches while in flight (its worker's, its engines')."""

    def next(self) -> int:
        """Hands out 0, 1, 2, ...: spreads a pass's workers evenly over the hosts."""
        self.n += 1
        return self.n

    def publish(self, view: FleetView) -> None:
        self.view = view

    def get_view(self) -> FleetView:
        return self.view

    def touch(self, key: str, node: str) -> None:
        self.in_flight.setdefault(key, set()).add(node)

    def end(self, key: str) -> None:
        self.in_flight.pop(key, None)

    def in_flight_on(self, node: str) -> list[str]:
        return sorted(k for k, nodes in self.in_flight.items() if node in nodes)


def driver_node_actor(cls: type, **opts: Any) -> Any:
    """A run-wide helper actor on the driver's node, restarted there if it dies: it must
    not live on a node that may be lost (a spot worker)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(cls).options(
        num_cpus=0, max_restarts=-1, max_task_retries=-1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False), **opts).remote()


class NodeWatch:
    """The driver's thread that keeps the fleet's view (see the module's docstring).

    `hosts()` gives the current engine hosts as {host key: actor}; `on_change(losses,
    alive, planned)` is called when a loss is recorded or the number alive changes (the run
    writes them to the manifest)."""

    def __init__(self, cfg: PipelineConfig, fleet: Any, hosts: Callable[[], dict[str, Any]],
                 on_change: Callable[[list[NodeLoss], int, int], None] | None = None) -> None:
        self.cfg = cfg
        self.fleet = fleet
        self.hosts = hosts
        self.on_change = on_change
        self.losses: list[NodeLoss] = []
        self.verdict: CapacityLost | None = None
        self.alive = 0
        self.planned = 0
        self._pings: dict[str, Any] = {}
        self._where: dict[str, str | None] = {}
        """host key -> node it last answered from."""
        self._known: dict[str, str] = {}
        """node id -> ip of every node seen alive."""
        self._dead: set[str] = set()
        self._none_since: float | None = None
        self._short_since: float | None = None
        self._logged_at = 0.0
        self._verdict_at: float | None = None
        self._tick_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = get_logger(stage="fleet")

    def start(self) -> None:
        self.tick()
        self._thread = threading.Thread(target=self._loop, name="node-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            try:
                self.tick()
            except Exception as exc:  # a watch that dies must not hide why: log and go on
                self._log.warning("node_watch_error", error=str(exc)[:300])

    # -- one look -----------------------------------------------------------------------------

    def tick(self) -> None:
        with self._tick_lock:
            self._tick()

    def _tick(self) -> None:
        import ray
        from ray._private import state

        nodes = ray.nodes()
        draining = dict(state.state.get_draining_nodes())
        alive_nodes = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in nodes if n["Alive"]}
        newly_dead = [nid for nid in self._known if nid not in alive_nodes
                      and nid not in self._dead]
        self._known.update(alive_nodes)
        where = self._ping(self.hosts())
        for nid in newly_dead:
            self._dead.add(nid)
            self._record_loss(nid)
        self.planned = len(where)
        # Alive: the host answers, or its node is alive (a host reloading its engine after a
        # crash blocks its event loop for as long as the load takes, but it is coming back
        # on a node the run still has). Not alive: its node was lost and it has not answered
        # since from anywhere else.
        where = {k: n if n is not None else self._where.get(k) for k, n in where.items()}
        alive = sum(1 for n in where.values() if n not in (None, *self._dead))
        changed = alive != self.alive
        self.alive = alive
        self._capacity(alive)
        self.fleet.publish.remote(FleetView(
            hosts=where, dead=frozenset(self._dead), draining=draining,
            verdict=str(self.verdict) if self.verdict else None))
        if (changed or newly_dead) and self.on_change is not None:
            self.on_change(list(self.losses), self.alive, self.planned)
        if self.verdict is not None:
            self._interrupt_if_stuck()

    def lost_hosts(self) -> set[str]:
        """Hosts last seen on a node that was lost, not answering since."""
        return {k for k, n in self._where.items() if n in self._dead}

    def _ping(self, hosts: dict[str, Any]) -> dict[str, str | None]:
        """host key -> the node it answers from now (None: no answer within the timeout).
        At most one ping per host in flight: a host that cannot be placed keeps its one."""
        import ray

        for key in list(self._pings):
            if key not in hosts:
                self._pings.pop(key)
        for key, host in hosts.items():
            if key not in self._pings:
                self._pings[key] = host.where.remote()
        refs = {self._pings[k]: k for k in hosts}
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=PING_TIMEOUT_S)
        out: dict[str, str | None] = {k: None for k in hosts}
        for ref in done:
            key = refs[ref]
            self._pings.pop(key)
            try:
                out[key] = ray.get(ref)
            except Exception:  # the host died with its node: re-pinged next time
                out[key] = None
        for key, node in out.items():
            if node is not None:
                self._where[key] = node
        self._where = {k: v for k, v in self._where.items() if k in hosts}
        return out

    def _record_loss(self, node: str) -> None:
        import ray

        engines = sum(1 for n in self._where.values() if n == node)
        try:
            blocks = len(ray.get(self.fleet.in_flight_on.remote(node), timeout=30))
        except Exception:
            blocks = -1  # unknown; the loss itself is still recorded
        loss = NodeLoss(at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                        node_id=node, node_ip=self._known.get(node, ""), engines_lost=engines,
                        blocks_redone=blocks)
        self.losses.append(loss)
        self._log.warning("node_lost", node_id=node, node_ip=loss.node_ip,
                          engines_lost=engines, blocks_redone=blocks,
                          losses=len(self.losses), budget=self.cfg.node_loss_budget)
        if len(self.losses) > self.cfg.node_loss_budget and self.verdict is None:
            self._decide(CapacityLost(
                f"{len(self.losses)} nodes lost, over pipeline.node_loss_budget="
                f"{self.cfg.node_loss_budget}; everything committed is kept, and resubmitting "
                "resumes", source="pipeline.node_loss_budget"))

    def _capacity(self, alive: int) -> None:
        now = time.monotonic()
        if alive >= self.planned:
            if self._short_since is not None and self.losses and self.losses[-1].waited_s is None:
                last = self.losses[-1]
                self.losses[-1] = NodeLoss(**{**last.__dict__,
                                              "waited_s": round(now - self._short_since, 1)})
                self._log.info("capacity_restored", engines_alive=alive, planned=self.planned,
                               waited_s=round(now - self._short_since, 1))
            self._short_since = self._none_since = None
            return
        if self._short_since is None:
            self._short_since = now
        if alive == 0 and self._none_since is None:
            self._none_since = now
        elif alive > 0:
            self._none_since = None
        if now - self._logged_at >= WAIT_LOG_EVERY_S or self._logged_at < self._short_since:
            self._logged_at = now
            self._log.warning(
                "waiting_for_capacity", engines_alive=alive, engines_planned=self.planned,
                waited_s=round(now - self._short_since),
                gives_up_in_s=(round(self.cfg.capacity_wait_s - (now - self._none_since))
                               if self._none_since is not None else None))
        if (self._none_since is not None and now - self._none_since >= self.cfg.capacity_wait_s
                and self.verdict is None):
            self._decide(CapacityLost(
                f"no engine alive for {self.cfg.capacity_wait_s:g} s (0 of {self.planned} "
                "planned; their nodes were lost and none joined); everything committed is kept, "
                "and resubmitting resumes", source="pipeline.capacity_wait_s"))

    def _decide(self, verdict: CapacityLost) -> None:
        self.verdict = verdict
        self._verdict_at = time.monotonic()
        self._log.error("capacity_lost", reason=str(verdict))

    def _interrupt_if_stuck(self) -> None:
        """Workers raise the verdict when they next look; if none is left to (every worker
        lost too), interrupt the driver's main thread, which raises it (run_chains)."""
        assert self._verdict_at is not None
        if time.monotonic() - self._verdict_at >= INTERRUPT_AFTER_S:
            self._verdict_at = float("inf")
            _thread.interrupt_main()
