"""A Ray cluster of several raylets on this machine, for node-loss tests: a head (`ray start
--head`) and worker nodes (`ray start --address`), each in its own process group with its
own temp folder, ports and token, so killing one group is a node loss and nothing touches
~/.ray or another Ray here. Stopped through their own process ids, never `ray stop`."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from persona_gen.storage.local_server import free_ports

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[str]
    temp: str

    def kill(self) -> None:
        """SIGKILL of the node's whole process group: the node is lost, as a spot node is."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self.kill()
        shutil.rmtree(self.temp, ignore_errors=True)


@dataclass
class Cluster:
    env: dict[str, str]
    gcs: str
    dashboard: str
    head: Node
    workers: list[Node] = field(default_factory=list)
    lost: list[Node] = field(default_factory=list)
    """Nodes killed on purpose: their temp folders go at the end."""

    def lose(self, node: Node) -> None:
        """SIGKILL of a worker node's process group: a node loss, as a spot node's."""
        node.kill()
        self.workers.remove(node)
        self.lost.append(node)

    def add_worker(self, name: str, gpus: int = 1, cpus: int = 2, tries: int = 3) -> Node:
        """A worker node with `gpus` GPUs as Ray counts them (none exist here: Ray only
        schedules by them), tagged with the resource `name`. On a loaded machine a raylet
        may give up waiting for its own agents and exit: it is started again."""
        for attempt in range(tries):
            worker = self._start_worker(name, gpus, cpus)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and worker.proc.poll() is None:
                with contextlib.suppress(Exception):
                    if self.node_id(name) is not None:
                        self.workers.append(worker)
                        return worker
                time.sleep(0.5)
            worker.stop()
            if attempt + 1 == tries:
                raise AssertionError(f"node {name} did not join in {tries} tries")
        raise AssertionError("unreachable")

    def _start_worker(self, name: str, gpus: int, cpus: int) -> Node:
        temp = tempfile.mkdtemp(prefix=f"pg-{name}-", dir="/tmp")
        node, obj, metrics, agent, agent_grpc, env_agent = free_ports(6)
        proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", f"--address={self.gcs}",
             f"--num-cpus={cpus}", f"--num-gpus={gpus}", f"--resources={{\"{name}\": 1}}",
             f"--temp-dir={temp}/ray", "--node-ip-address=127.0.0.1",
             f"--node-manager-port={node}", f"--object-manager-port={obj}",
             f"--metrics-export-port={metrics}", f"--dashboard-agent-listen-port={agent}",
             f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
             "--worker-port-list=" + ",".join(map(str, free_ports(16))), "--disable-usage-stats"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        return Node(name, proc, temp)

    def nodes(self) -> list[dict[str, object]]:
        """Every node the GCS knows: id, alive, resources. Asked from a child process with
        the cluster's token (Ray reads its auth mode once per process)."""
        code = ("import json, sys\n"
                "from ray._raylet import GcsClient\n"
                "infos = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10)\n"
                "print(json.dumps([{'id': n.hex(), 'alive': i.state == 0, "
                "'resources': dict(i.resources_total)} for n, i in infos.items()]))")
        res = subprocess.run([sys.executable, "-c", code, self.gcs], env=self.env,
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-500:])
        return json.loads(res.stdout.strip().splitlines()[-1])

    def node_id(self, name: str) -> str | None:
        for n in self.nodes():
            if n["alive"] and name in n["resources"]:  # type: ignore[operator]
                return str(n["id"])
        return None

    def wait_for(self, cond: object, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if cond():  # type: ignore[operator]
                    return
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def ray(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ray"), *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        for w in [*self.workers, *self.lost]:
            w.stop()
        self.head.stop()


def start_cluster(extra_env: dict[str, str], head_cpus: int = 2) -> Cluster:
    """A head with no GPU (the on-demand node that must live), token auth on."""
    temp = tempfile.mkdtemp(prefix="pg-head-", dir="/tmp")
    gcs, dash, client, node, obj, agent, agent_grpc, metrics, env_agent = free_ports(9)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
        **extra_env,
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--num-cpus={head_cpus}",
         "--num-gpus=0", f"--temp-dir={temp}/ray", "--node-ip-address=127.0.0.1",
         f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
         f"--node-manager-port={node}", f"--object-manager-port={obj}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}",
         "--worker-port-list=" + ",".join(map(str, free_ports(24))), "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)
    head = Node("head", proc, temp)
    cluster = Cluster(env, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", head)
    headers = {"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}

    def dashboard_up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ray start --head exited with {proc.returncode}")
        with urllib.request.urlopen(urllib.request.Request(
                f"{cluster.dashboard}/api/version", headers=headers), timeout=2):
            return True

    try:
        cluster.wait_for(dashboard_up, "the head's dashboard", 120)
    except BaseException:
        head.stop()
        raise
    return cluster
