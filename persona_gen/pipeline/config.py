"""How model stages are laid out on the cluster."""

from __future__ import annotations

from persona_gen.config.base import StrictModel


class PipelineConfig(StrictModel):
    batch_size: int = 64
    actors: int = 1
    """Engine actors per model stage (one per GPU on a cluster)."""
    num_gpus_per_actor: float = 0
    num_cpus_per_actor: float = 0.5
    """Fractional on CPU boxes so the read stage is not starved."""
    ray_address: str | None = None
