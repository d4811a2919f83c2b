"""Connect to a Ray cluster (ray job submit, RAY_ADDRESS) or start a local one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from persona_gen.log import get_logger
from persona_gen.pipeline.config import PipelineConfig


@contextmanager
def ray_session(cfg: PipelineConfig) -> Iterator[None]:
    import ray

    log = get_logger(stage="ray")
    if ray.is_initialized():
        yield
        return
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"log_to_driver": False, "include_dashboard": False}
    if address:
        kwargs = {"address": address, "log_to_driver": False}
    else:
        kwargs["num_cpus"] = cfg.local_num_cpus or os.cpu_count()
    ray.init(**kwargs)
    log.info("ray_ready", address=address or "local", resources=ray.cluster_resources())
    try:
        yield
    finally:
        ray.shutdown()
