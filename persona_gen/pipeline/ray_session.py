"""Connect to a Ray cluster (ray job submit, RAY_ADDRESS, pipeline.ray_address) or start a
local instance of our own.

Local mode passes `address="local"`: a bare `ray.init()` joins whatever cluster `ray start`
recorded in Ray's temp folder (`ray_current_cluster`), even a dead one, and then refuses
`num_cpus`. Joining a cluster passes no local-only arguments.

`log_to_driver=True`: engine and worker logs (stderr, JSON) reach the driver's stderr and so
`ray job logs`. What Ray's driver relays from workers' and raylets' stdout (e.g. "N PYTHON
worker processes have been started") it writes to `sys.stdout` (ray/_private/worker.py,
`print_to_stdstream`), so while a session is open stdout is stderr: a command's stdout
carries its result only. Ray Data is told which errors are transient storage errors, so a block
whose storage call still fails after the worker's own retries is retried as a whole.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any

from persona_gen.errors import InfrastructureError
from persona_gen.log import get_logger
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.storage.retry import TRANSIENT_PATTERNS


def init_kwargs(cfg: PipelineConfig) -> dict[str, Any]:
    """ray.init's arguments: join the given address, else start a local instance."""
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        return {"address": address, "log_to_driver": True}
    return {"address": "local", "num_cpus": cfg.local_num_cpus or os.cpu_count(),
            "include_dashboard": False, "log_to_driver": True}


RAY_TRANSIENT_PATTERNS = tuple(re.escape(p) for p in TRANSIENT_PATTERNS)
"""TRANSIENT_PATTERNS as Ray Data matches them: a substring, else a regex
(ray/_common/retry.py:55, `matches_error`). Unescaped, '[ServerBusy]' is a character class
that matches nearly any message, and every failure, a deterministic one too, is retried."""


def configure_ray_data() -> None:
    """Retry transient storage errors in Ray Data's own I/O and in our map workers."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.retried_io_errors = sorted(set(ctx.retried_io_errors) | set(RAY_TRANSIENT_PATTERNS))
    # A worker rides out an outage itself (storage.retry); this catches what escapes it.
    ctx.retried_map_errors = list(RAY_TRANSIENT_PATTERNS)
    ctx.max_map_retries = max(ctx.max_map_retries, 3)


@contextmanager
def ray_session(cfg: PipelineConfig) -> Iterator[None]:
    import ray

    log = get_logger(stage="ray")
    configure_ray_data()
    if ray.is_initialized():
        yield
        return
    kwargs = init_kwargs(cfg)
    with redirect_stdout(sys.stderr):
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = kwargs["address"] if kwargs["address"] != "local" else "a local instance"
            raise InfrastructureError(f"could not start or join Ray at {where}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else exc!r}",
                                      source="pipeline.ray_address") from None
        log.info("ray_ready", address=kwargs["address"], resources=ray.cluster_resources())
        try:
            yield
        finally:
            ray.shutdown()
