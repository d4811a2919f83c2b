"""How model stages are laid out on the cluster."""

from __future__ import annotations

from pydantic import Field

from persona_gen.config.base import StrictModel


class PipelineConfig(StrictModel):
    batch_size: int = Field(default=256, ge=1)
    """Rows per block: the unit of engine calls, commits and resumption (a kill loses at
    most the blocks in flight). Larger blocks feed a GPU engine better."""
    actors: int = Field(default=1, ge=1)
    """Engine actors per model for a single-GPU model (one per GPU on a cluster). With
    num_gpus_per_actor they give the run's GPUs: actors x num_gpus_per_actor; a model whose
    file sets tensor_parallel_size > 1 gets that many GPUs' worth of engines (8 GPUs, a
    70B model over 8: one engine), whatever the cluster shows at start (an autoscaling
    cluster may start with none)."""
    num_gpus_per_actor: float = Field(default=0, ge=0)
    """GPUs for each engine of a single-GPU model (0: CPU run). A model whose file sets
    tensor_parallel_size > 1 takes that many whole GPUs per engine, packed on one node."""
    blocks_in_flight: int = Field(default=4, ge=1)
    """Blocks each engine serves at once. Their requests share the engine's running batch,
    so it never drains between blocks: one block's tail and the next block's reads and
    commits overlap the others' generation. batch_size x blocks_in_flight should be at least
    twice the engine's admission limit (1.1 x max_num_seqs: 1,127 on an H100), or the batch
    drains at block ends; the run warns (`engine_underfed`) when it is not."""
    accelerator_type: str | None = None
    """Ray accelerator type for every GPU engine (e.g. H100); a model file's own wins."""
    num_cpus_per_actor: float = Field(default=0.5, gt=0)
    """CPUs for each engine actor; fractional on CPU boxes so Ray's other tasks still run."""
    num_cpus_per_worker: float = Field(default=0.25, gt=0)
    """CPUs for each Ray Data worker (reads blocks, calls its engine, commits files); one
    worker per engine runs its `blocks_in_flight` blocks in threads."""
    engine_start_timeout_s: float = Field(default=1800, gt=0)
    """How long an engine may take to load, before the part for its weights' size (below):
    download or copy, load, compile, CUDA graphs."""
    engine_start_s_per_gb: float = Field(default=20, ge=0)
    """Added to engine_start_timeout_s per GB of weights (the model file's architecture):
    20 s/GB allows 50 MB/s end to end, so a 70B model (141 GB) gets 1800 + 2820 s."""
    gpu_wait_timeout_s: float = Field(default=3600, gt=0)
    """How long to wait for the cluster to place engine actors (an autoscaling cluster
    starting GPU nodes) before the model's load timeout starts; the job logs
    `waiting_for_gpus` meanwhile."""
    call_deadline_s: float | None = Field(default=None, gt=0)
    """Deadline of one engine call (a block); None: derived from the block's rows and token
    limits (see deadline_min_tok_s). Past it, the engine host is restarted and the call
    sent again once; a second miss fails the run (exit 4; a rerun resumes)."""
    deadline_min_tok_s: float = Field(default=100, gt=0)
    """The slowest an engine may generate before its call counts as hung, for the derived
    deadline: engine start time + blocks_in_flight x the block's token limits / this rate
    (GPU engines; CPU engines get a twentieth of it)."""
    engine_close_timeout_s: float = Field(default=30, gt=0)
    """How long a stopping engine host waits for its engine to shut down before it kills
    the engine's processes."""
    node_loss_budget: int = Field(default=3, ge=0)
    """How many Ray nodes holding engines or workers the run may lose (spot preemption, a
    crash) and carry on: engines restart on the nodes left or on replacements, the blocks in
    flight there are redone. One more loss ends the attempt (exit 5); a resubmission
    resumes."""
    capacity_wait_s: float = Field(default=900, gt=0)
    """How long the run waits with no engine alive (every engine node lost, none yet back)
    before it exits (exit 5) naming this wait. With fewer engines than planned it carries
    on and logs `waiting_for_capacity`."""
    drain_margin_s: float = Field(default=10, ge=0)
    """On a node Ray marks as draining (a spot notice), engine calls still running this many
    seconds before the drain deadline are handed to engines elsewhere."""
    ray_address: str | None = None
    """Cluster to join; default $RAY_ADDRESS, else a local instance."""
    local_num_cpus: int | None = None
    """CPUs for a local instance (default: all)."""
    max_error_fraction: float = Field(default=0.05, ge=0, le=1)
    """A stage whose committed error rows exceed this share of its rows fails the run (exit
    3) after everything is committed."""
