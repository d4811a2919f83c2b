"""A real one-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd
(Debian's `munge` and `slurm-wlm`, installed by `make test-slurm`), each in its own process
group, with every file (config, key, sockets, state, logs) in one private folder and ports
chosen free, so it touches no system Slurm or munge. Needs root (slurmd starts jobs as
their user)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def missing() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    if os.geteuid() != 0:
        return "needs root (slurmd starts jobs as their user)"
    absent = [b for b in BINARIES if not shutil.which(b)]
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install slurm-wlm munge)"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class LocalSlurm:
    root: Path
    cpus: int = 2
    memory_mb: int = 4000
    node: str = field(default_factory=socket.gethostname)
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        """What Slurm's client commands (sbatch, squeue, scancel) need to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _spawn(self, cmd: list[str], log: str) -> subprocess.Popen:
        with (self.root / log).open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout_s: float = 60) -> LocalSlurm:
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = self.root / "munge" / "munge.sock"
        self._spawn(["munged", "--foreground", "--force", f"--socket={sock}",
                     f"--key-file={key}", f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                     f"--log-file={self.root / 'munge' / 'munged.log'}",
                     f"--seed-file={self.root / 'munge' / 'munged.seed'}"], "munged.out")
        self._wait(lambda: sock.exists(), timeout_s, "munged")
        ctld_port, slurmd_port = _free_ports(2)
        r = self.root
        self.conf.write_text(f"""\
ClusterName=pgtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=10
InactiveLimit=0
MinJobAge=600
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        self._spawn(["slurmd", "-D", "-f", str(self.conf), "-N", self.node], "slurmd.out")
        self._wait(self._idle, timeout_s, "slurmd (node idle)")
        return self

    def _idle(self) -> bool:
        out = self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
        return out in ("idle", "mix", "alloc")

    def _wait(self, cond, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{p.args[0]} exited with {p.returncode}: "
                                       f"{self.log_tail()}")
            if cond():
                return
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{what} not ready within {timeout_s:.0f}s: {tail}")

    def log_tail(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            f = self.root / name
            if f.exists():
                parts.append(f"{name}: " + " | ".join(f.read_text(errors="replace")
                                                      .splitlines()[-5:]))
        return "; ".join(parts)

    def run(self, *cmd: str, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, check=check,
                              env={**os.environ, **(env or {}), **self.env()})

    def job_state(self, job_id: str) -> str:
        """PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, ... ("" once forgotten)."""
        out = self.run("scontrol", "show", "job", job_id, check=False).stdout
        for word in out.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return ""

    def job_exit(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", job_id, check=False).stdout
        return next((w.split("=", 1)[1] for w in out.split() if w.startswith("ExitCode=")), "")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--full", "--state=RUNNING", check=False)
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait(5)
        self.procs.clear()
