"""What the Ray cluster a run will use offers, read before the run joins it or starts one.

Three cases, decided as `ray_session` decides them:
- Ray already runs in this process (tests, notebooks): its cluster.
- An address (`pipeline.ray_address` or RAY_ADDRESS; a Ray job's driver has one): that
  cluster's live nodes and the node groups its autoscaler may start, read from its GCS the
  way `ray status` reads them, without joining it as a driver.
- Neither: the local instance `ray_session` would start, i.e. this machine's CPUs and the
  GPUs Ray would detect on it.

`fit_problem` then says whether one engine of a model's layout (`engine_layout`) can be
placed on any node the cluster has or can scale to: GPUs per engine, accelerator type,
CPUs. An engine that cannot be placed would otherwise wait `engine_start_timeout_s` (30
minutes by default) before failing.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from persona_gen.errors import InfrastructureError
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import EngineLayout
from persona_gen.pipeline.ray_session import init_kwargs

ACCELERATOR_PREFIX = "accelerator_type:"
"""Ray marks a node's GPU type as a resource `accelerator_type:H100`."""
CONNECT_TIMEOUT_S = 5.0
"""How long the cluster's address may take to accept a connection (a check answers now)."""
RPC_TIMEOUT_S = 10


@dataclass(frozen=True)
class NodeShape:
    """One kind of node: live ones, or a node group the autoscaler can start."""

    cpus: float
    gpus: float
    accelerators: tuple[str, ...] = ()
    count: int = 1
    """Live nodes of this shape, or the most the autoscaler may start (-1: no limit)."""
    scalable: bool = False

    def describe(self) -> str:
        gpu = f"{self.gpus:g} GPU" + (f" {'/'.join(self.accelerators)}" if self.accelerators else "")
        what = f"{self.cpus:g} CPU, {gpu}"
        if self.scalable:
            most = "any number" if self.count < 0 else f"up to {self.count}"
            return f"{most} x ({what}) by autoscaling"
        return f"{self.count} x ({what})"


@dataclass(frozen=True)
class ClusterOffer:
    """The nodes a run's engines may be placed on."""

    where: str
    """Which cluster, in words ("a local Ray instance on this machine", "the cluster at ...")."""
    nodes: tuple[NodeShape, ...]
    local: bool = False
    """Every node is this machine: engines run here (so what is installed or reachable here
    is what they get)."""

    @property
    def live_gpus(self) -> float:
        """GPUs of the live nodes (what `engine_layout` sizes the engine count by)."""
        return sum(n.gpus * n.count for n in self.nodes if not n.scalable)

    def describe(self) -> str:
        return f"{self.where}: " + ("; ".join(n.describe() for n in self.nodes) or "no nodes")


def engine_needs(layout: EngineLayout, cfg: PipelineConfig) -> tuple[float, float]:
    """(CPUs, GPUs) one engine takes on its node, as `EngineHosts` places it: a
    tensor-parallel engine is one bundle per GPU on one node (the host's bundle has its
    CPUs plus one, every other bundle one CPU)."""
    if layout.packed:
        tp = int(layout.gpus_per_engine)
        return cfg.num_cpus_per_actor + 1.0 + (tp - 1), float(tp)
    return cfg.num_cpus_per_actor, layout.gpus_per_engine


def fit_problem(layout: EngineLayout, cfg: PipelineConfig, offer: ClusterOffer) -> str | None:
    """Why not one engine of this layout can be placed on any node of the offer, or None."""
    cpus, gpus = engine_needs(layout, cfg)
    accel = layout.accelerator_type if gpus else None
    for node in offer.nodes:
        if node.cpus + 1e-9 < cpus or node.gpus + 1e-9 < gpus:
            continue
        if accel and accel not in node.accelerators:
            continue
        return None
    want = f"{cpus:g} CPU" + (f" and {gpus:g} GPU" if gpus else "")
    if accel:
        want += f" of type {accel}"
    return f"one engine needs {want} on one node; {offer.describe()}"


def offer(cfg: PipelineConfig) -> ClusterOffer | None:
    """What the cluster the run will use offers; None where it cannot be asked (a Ray
    Client `ray://` address). Raises InfrastructureError when an address is given but
    nothing answers there."""
    import ray

    if ray.is_initialized():
        return _from_gcs(ray.get_runtime_context().gcs_address, "the running Ray cluster")
    kwargs = init_kwargs(cfg)
    address = str(kwargs["address"])
    if address == "local":
        return _this_machine(int(kwargs["num_cpus"] or 1))
    if address.startswith(("ray://", "http://", "https://")):
        return None
    from ray._private import services

    try:
        gcs = services.canonicalize_bootstrap_address_or_die(address)
    except (ConnectionError, ValueError) as exc:
        raise InfrastructureError(f"no Ray cluster found at '{address}': {_first(exc)}"
                                  ) from None
    return _from_gcs(gcs, f"the cluster at {gcs}")


def _this_machine(cpus: int) -> ClusterOffer:
    """The local instance `ray_session` would start: these CPUs, and the GPUs Ray detects
    here (its own detection, honouring CUDA_VISIBLE_DEVICES)."""
    gpus, accelerators = 0, ()
    try:
        from ray._private import accelerators as ray_accelerators

        manager = ray_accelerators.get_accelerator_manager_for_resource("GPU")
        gpus = int(manager.get_current_node_num_accelerators() or 0)
        kind = manager.get_current_node_accelerator_type() if gpus else None
        accelerators = (kind,) if kind else ()
    except Exception:  # detection is best effort: Ray itself treats a failure as no GPUs
        gpus = 0
    return ClusterOffer("a local Ray instance on this machine",
                        (NodeShape(float(cpus), float(gpus), accelerators),), local=True)


def _from_gcs(gcs: str, where: str) -> ClusterOffer:
    from ray._raylet import (
        GCS_AUTOSCALER_CLUSTER_CONFIG_KEY,
        GCS_AUTOSCALER_STATE_NAMESPACE,
        GcsClient,
    )
    from ray.core.generated import autoscaler_pb2

    host, _, port = gcs.rpartition(":")
    try:
        # Fail in seconds where nothing listens: the GCS client alone waits about 40 s.
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
        client = GcsClient(address=gcs)
        infos = client.get_all_node_info(timeout=RPC_TIMEOUT_S)
        raw = client.internal_kv_get(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(),
                                     namespace=GCS_AUTOSCALER_STATE_NAMESPACE.encode(),
                                     timeout=RPC_TIMEOUT_S)
    except (OSError, ValueError, RuntimeError) as exc:  # RpcError is a RuntimeError
        raise InfrastructureError(f"cannot reach the Ray cluster at {gcs}: {_first(exc)}"
                                  ) from None
    from ray.util import get_node_ip_address

    shapes: dict[tuple[float, float, tuple[str, ...]], int] = {}
    addresses = set()
    for info in infos.values():
        if info.state != 0:  # GcsNodeInfo.ALIVE
            continue
        key = _shape(dict(info.resources_total))
        shapes[key] = shapes.get(key, 0) + 1
        addresses.add(info.node_manager_address)
    nodes = [NodeShape(c, g, a, n) for (c, g, a), n in shapes.items()]
    if raw:
        config = autoscaler_pb2.ClusterConfig.FromString(raw)
        for group in config.node_group_configs:
            if group.max_count == 0:
                continue
            c, g, a = _shape(dict(group.resources))
            nodes.append(NodeShape(c, g, a, group.max_count, scalable=True))
    local = bool(addresses) and addresses <= {get_node_ip_address()} and not raw
    return ClusterOffer(where, tuple(nodes), local=local)


def _shape(resources: dict[str, float]) -> tuple[float, float, tuple[str, ...]]:
    accelerators = tuple(sorted(k[len(ACCELERATOR_PREFIX):] for k in resources
                                if k.startswith(ACCELERATOR_PREFIX)))
    return float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), accelerators


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
