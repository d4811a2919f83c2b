"""How model stages are laid out on the cluster."""

from __future__ import annotations

from pydantic import Field

from persona_gen.config.base import StrictModel


class PipelineConfig(StrictModel):
    batch_size: int = Field(default=256, ge=1)
    """Rows per block: the unit of engine calls, commits and resumption (a kill loses at
    most the blocks in flight). Larger blocks feed a GPU engine better."""
    actors: int = Field(default=1, ge=1)
    """Engine actors per model (one per GPU, or per tensor-parallel group, on a cluster)."""
    num_gpus_per_actor: float = Field(default=0, ge=0)
    """GPUs for each engine of a single-GPU model (0: CPU run). A model whose file sets
    tensor_parallel_size > 1 takes that many whole GPUs per engine, packed on one node."""
    blocks_in_flight: int = Field(default=4, ge=1)
    """Blocks each engine serves at once. Their requests share the engine's running batch,
    so it never drains between blocks: one block's tail and the next block's reads and
    commits overlap the others' generation (2-4 keep a GPU full)."""
    accelerator_type: str | None = None
    """Ray accelerator type for every GPU engine (e.g. H100); a model file's own wins."""
    num_cpus_per_actor: float = Field(default=0.5, gt=0)
    """CPUs for each engine actor; fractional on CPU boxes so Ray's other tasks still run."""
    num_cpus_per_worker: float = Field(default=0.25, gt=0)
    """CPUs for each Ray Data worker (reads blocks, calls its engine, commits files); one
    worker per engine runs its `blocks_in_flight` blocks in threads."""
    engine_start_timeout_s: float = Field(default=1800, gt=0)
    """How long engine actors may take to be scheduled and load their model."""
    ray_address: str | None = None
    """Cluster to join; default $RAY_ADDRESS, else a local instance."""
    local_num_cpus: int | None = None
    """CPUs for a local instance (default: all)."""
    max_error_fraction: float = Field(default=0.05, ge=0, le=1)
    """A stage whose committed error rows exceed this share of its rows fails the run (exit
    3) after everything is committed."""
