"""A watcher beside an engine host: when the host dies without closing its engine (SIGKILL,
the kernel's OOM killer, `ray.kill`), it ends the processes the host had started, so no
engine core keeps holding a GPU after its host is gone.

    python -m persona_gen.pipeline.reaper HOST_PID

The host starts it once; it notes the host's descendants every second and, once the host
is gone, terminates the last ones it saw (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import sys
import time

import psutil

POLL_S = 1.0
GRACE_S = 5.0


def end_processes(procs: list[psutil.Process], grace_s: float = GRACE_S) -> None:
    """SIGTERM, then SIGKILL what is still alive after `grace_s`."""
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=grace_s)


def watch(host_pid: int) -> None:
    me = os.getpid()
    try:
        host = psutil.Process(host_pid)
    except psutil.Error:
        return
    seen: dict[int, psutil.Process] = {}
    while True:
        try:
            alive = host.is_running() and host.status() != psutil.STATUS_ZOMBIE
            if alive:
                for child in host.children(recursive=True):
                    if child.pid != me:
                        seen.setdefault(child.pid, child)
        except psutil.Error:
            alive = False
        if not alive:
            break
        time.sleep(POLL_S)
    # is_running() compares creation times, so a reused pid is never taken for the child.
    end_processes([p for p in seen.values() if p.is_running()])


if __name__ == "__main__":
    watch(int(sys.argv[1]))
