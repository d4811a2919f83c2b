"""The cost plan: model calls, tokens, GPU-hours, wall time and storage for one job (BRIEF 3).

Pure functions over pydantic models. Stages, in the order the job runs them:
  enrich        one call per persona profile attempted (inconsistent ones are resampled)
  consistency   one judge call per attempted profile (when model_consistency_check is on)
  controversy   one classifier call per source prompt (when prompts.classifier_model is set)
  original      one answer per prompt, without a persona (reused by every pair)
  critique      one per (persona, prompt) pair: persona + prompt + original
  revision      one per pair: persona + prompt + original + critique
  verify        one judge call per pair: persona + prompt + original + revision
Output lengths are upper bounds: every call is assumed to run to its max_tokens setting.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field

from persona_gen.config.base import StrictModel
from persona_gen.config.run import RunConfig
from persona_gen.cost.tables import ThroughputTable
from persona_gen.errors import UserError

PAPER_PROMPTS = 3868
PRISM_SOURCE_PROMPTS = 8011
"""PRISM's opening prompts before the filters (BRIEF 2.2)."""
# Named as persona_gen.feedback.folders.STAGES names them, so plan-cost and status agree.
Stage = Literal["enrich", "consistency", "controversy", "original", "critique", "revision",
                "verify"]
EngineKind = Literal["vllm", "openai", "echo"]

_CLUSTER = re.compile(r"^\s*(\d+)\s*[xX*]\s*([A-Za-z0-9][A-Za-z0-9-]*)\s*$")


class Cluster(StrictModel):
    gpu: str
    count: int = Field(ge=1)

    @property
    def label(self) -> str:
        return f"{self.count}x{self.gpu}"


def parse_cluster(spec: str, table: ThroughputTable) -> Cluster:
    """'8xH100' -> Cluster(gpu='H100', count=8); the GPU must be in the table."""
    m = _CLUSTER.match(spec)
    if not m or int(m.group(1)) < 1:
        raise UserError(f"'{spec}' should look like COUNTxGPU, e.g. 8xH100, 4xA10G or 1xL4",
                        source="--cluster")
    name, _ = table.gpu(m.group(2))
    return Cluster(gpu=name, count=int(m.group(1)))


class TokenAssumptions(StrictModel):
    """Sizes the config does not fix. Estimates; override with `--assume key=value`."""

    system_tokens: int = Field(150, ge=0)
    """Instructions and chat template around each request (feedback/stages.py's templates
    are 40 to 110 tokens of English, plus the chat template's markup)."""
    persona_tokens: int = Field(600, ge=0)
    """A rendered persona: 33 `key: value` lines; the six written attributes are capped at
    personas.enrich_field_max_chars (240 characters, about 60 tokens) each."""
    demographics_tokens: int = Field(250, ge=0)
    """The census fields an enrichment request starts from."""
    prompt_tokens: int = Field(40, ge=0)
    """One PRISM opening prompt (a question of one to three sentences)."""
    classifier_output_tokens: int = Field(8, ge=1)
    """The controversy classifier's answer cap (persona_gen/prompts/classify.py)."""
    inconsistency_rate: float = Field(0.085, ge=0, lt=1)
    """Share of profiles judged inconsistent (the paper dropped about 8.5%)."""
    prefix_cache: bool = True
    """The job orders requests so one persona's prefix is computed once per stage."""
    bytes_per_token: float = Field(4.0, gt=0)
    """UTF-8 bytes per token of English text (about four characters a token)."""
    plan_row_bytes: int = Field(64, ge=0)
    """Ids and split of one plan row."""


class StageModels(StrictModel):
    """Which model serves each stage, and the config key that chose it (for messages)."""

    enrich: tuple[str, str]
    consistency: tuple[str, str]
    controversy: tuple[str, str] | None = None
    original: tuple[str, str]
    critique: tuple[str, str]
    revision: tuple[str, str]
    verify: tuple[str, str]


class Workload(StrictModel):
    personas: int = Field(ge=0)
    prompts: int = Field(ge=0)
    pairs_per_persona: int = Field(ge=0)
    max_tokens: int = Field(ge=1)
    """feedback.max_tokens: originals, critiques and revisions."""
    enrich_max_tokens: int = Field(ge=1)
    judge_max_tokens: int = Field(ge=1)
    verify_max_tokens: int = Field(ge=1)
    verify: bool = True
    model_consistency_check: bool = True
    max_resamples: int = Field(0, ge=0)
    source_prompts: int = Field(0, ge=0)
    """Prompts the controversy classifier reads (0 without a classifier)."""
    models: StageModels
    tokens: TokenAssumptions = Field(default_factory=TokenAssumptions)

    @property
    def pairs(self) -> int:
        return self.personas * self.pairs_per_persona


def workload_from_config(cfg: RunConfig, prompts: int = PAPER_PROMPTS,
                         tokens: TokenAssumptions | None = None,
                         source_prompts: int = PRISM_SOURCE_PROMPTS) -> Workload:
    plan = cfg.plan
    classifier = cfg.prompts.classifier_model
    return Workload(
        personas=cfg.census.n,
        prompts=prompts,
        pairs_per_persona=(plan.train_pairs_per_persona + plan.seen_test_pairs_per_persona
                           + plan.heldout_test_pairs_per_persona),
        max_tokens=cfg.feedback.max_tokens,
        enrich_max_tokens=cfg.personas.enrich_max_tokens,
        judge_max_tokens=cfg.personas.judge_max_tokens,
        verify_max_tokens=cfg.feedback.verify_max_tokens,
        verify=cfg.feedback.verify,
        model_consistency_check=cfg.personas.model_consistency_check,
        max_resamples=cfg.personas.max_resamples,
        source_prompts=source_prompts if classifier else 0,
        models=StageModels(
            enrich=(cfg.personas.enrich_model, "personas.enrich_model"),
            consistency=(cfg.personas.judge_model, "personas.judge_model"),
            controversy=(classifier, "prompts.classifier_model") if classifier else None,
            original=(cfg.feedback.model, "feedback.model"),
            critique=(cfg.feedback.model, "feedback.model"),
            revision=(cfg.feedback.model, "feedback.model"),
            verify=(cfg.feedback.judge_model, "feedback.judge_model"),
        ),
        tokens=tokens or TokenAssumptions(),
    )


class StageVolume(StrictModel):
    stage: Stage
    model: str
    model_field: str
    calls: int
    prompt_tokens: int
    cached_prompt_tokens: int = 0
    """Prompt tokens served from the prefix cache (not recomputed)."""
    output_tokens: int


def expected_attempts(rate: float, max_resamples: int) -> float:
    """Profiles generated per persona slot: resample while inconsistent, at most R times."""
    return sum(rate**k for k in range(max_resamples + 1))


def stage_volumes(w: Workload) -> list[StageVolume]:
    t, m = w.tokens, w.max_tokens
    pairs = w.pairs
    attempts = math.ceil(w.personas * expected_attempts(t.inconsistency_rate, w.max_resamples))
    originals = min(w.prompts, pairs)
    # Per-pair requests start with system + persona; with prefix caching only the first
    # request of each persona in a stage computes that prefix.
    cached = (pairs - w.personas) * (t.system_tokens + t.persona_tokens) if (
        t.prefix_cache and pairs > w.personas) else 0
    head = t.system_tokens + t.persona_tokens + t.prompt_tokens

    def vol(stage: Stage, calls: int, prompt_each: int, out_each: int, cache: int = 0):
        model, field = getattr(w.models, stage)
        return StageVolume(stage=stage, model=model, model_field=field, calls=calls,
                           prompt_tokens=calls * prompt_each, cached_prompt_tokens=cache,
                           output_tokens=calls * out_each)

    out = [vol("enrich", attempts, t.system_tokens + t.demographics_tokens,
               w.enrich_max_tokens)]
    if w.model_consistency_check:
        out.append(vol("consistency", attempts, t.system_tokens + t.persona_tokens,
                       w.judge_max_tokens))
    if w.models.controversy is not None and w.source_prompts:
        out.append(vol("controversy", w.source_prompts, t.system_tokens + t.prompt_tokens,
                       t.classifier_output_tokens))
    out += [
        vol("original", originals, t.system_tokens + t.prompt_tokens, m),
        vol("critique", pairs, head + m, m, cached),
        vol("revision", pairs, head + 2 * m, m, cached),
    ]
    if w.verify:
        out.append(vol("verify", pairs, head + 2 * m, w.verify_max_tokens, cached))
    return out


class EngineInfo(StrictModel):
    """What the model registry says about a model (persona_gen/models/*.yaml)."""

    kind: EngineKind
    tensor_parallel_size: int = Field(1, ge=1)


class StageEstimate(StageVolume):
    gpus_per_replica: int = 0
    replicas: int = 0
    gpu_hours: float = 0.0
    """GPU time the stage keeps busy (replica time x GPUs per replica)."""
    wall_hours: float = 0.0
    """The stage alone, all replicas working in parallel."""
    basis: str = "none"
    """measured / derived (the table row's basis), hosted (an HTTP API), or no GPU (echo)."""


def estimate_stage(v: StageVolume, cluster: Cluster, table: ThroughputTable,
                   engine: EngineInfo | None = None) -> StageEstimate:
    if (engine and engine.kind == "echo") or v.model in table.no_gpu_models:
        return StageEstimate(**v.model_dump(), basis="no GPU")
    if engine and engine.kind == "openai":
        # Served outside the cluster: tokens count, cluster GPU time does not.
        return StageEstimate(**v.model_dump(), basis="hosted")
    e = table.entry(v.model, cluster.gpu, field=v.model_field)
    replicas = cluster.count // e.gpus_per_replica
    if replicas == 0:
        raise UserError(
            f"'{v.model}' needs {e.gpus_per_replica} {cluster.gpu} GPUs per engine; "
            f"--cluster {cluster.label} has {cluster.count}", source=v.model_field)
    replica_s = (v.output_tokens / e.output_tok_s
                 + (v.prompt_tokens - v.cached_prompt_tokens) / e.prefill_tok_s)
    return StageEstimate(
        **v.model_dump(), gpus_per_replica=e.gpus_per_replica, replicas=replicas,
        gpu_hours=replica_s * e.gpus_per_replica / 3600,
        wall_hours=replica_s / replicas / 3600, basis=e.basis,
    )


def layout_notes(stages: list[StageEstimate], engines: dict[str, EngineInfo]) -> list[str]:
    """Where the registry lays a model out differently from the figure the plan used."""
    notes = []
    for name in dict.fromkeys(s.model for s in stages if s.gpus_per_replica):
        info = engines.get(name)
        used = next(s.gpus_per_replica for s in stages if s.model == name)
        if info and info.kind == "vllm" and info.tensor_parallel_size != used:
            notes.append(f"{name}: the registry sets tensor_parallel_size "
                         f"{info.tensor_parallel_size}; these figures assume {used} GPUs per "
                         "engine (more, smaller engines give more tokens per GPU)")
    return notes


class StorageEstimate(StrictModel):
    """Uncompressed text bytes; Parquet with compression stores text at a fraction of this."""

    parts: dict[str, int]
    """Bytes per folder of the run (persona_gen.feedback.folders), final rows only."""
    total_bytes: int
    export_bytes: int
    """A denormalised export in the released columns (persona, instruction, original,
    critique, revision) for every pair."""


def storage_volume(w: Workload) -> StorageEstimate:
    t, m, b = w.tokens, w.max_tokens, w.tokens.bytes_per_token
    pairs = w.pairs
    verdict = w.verify_max_tokens if w.verify else 0
    parts = {
        "personas/": round(w.personas * t.persona_tokens * b),
        "prompts/": round(max(w.prompts, w.source_prompts) * t.prompt_tokens * b),
        "plan/": pairs * t.plan_row_bytes,
        "feedback/originals": round(min(w.prompts, pairs) * m * b),
        "feedback/critiques": round(pairs * m * b),
        "feedback/pairs": round(pairs * m * b),
        "feedback/verification": round(pairs * verdict * b),
    }
    export = round(pairs * (t.persona_tokens + t.prompt_tokens + 3 * m) * b)
    return StorageEstimate(parts=parts, total_bytes=sum(parts.values()), export_bytes=export)


class CostPlan(StrictModel):
    cluster: Cluster
    workload: Workload
    stages: list[StageEstimate]
    calls: int
    prompt_tokens: int
    output_tokens: int
    gpu_hours: float
    """Busy GPU time summed over stages."""
    wall_hours: float
    """Stages run one after another; engine start-up and I/O are not counted."""
    billed_gpu_hours: float
    """Wall time x every GPU in the cluster (what a cloud bill counts)."""
    storage: StorageEstimate
    notes: list[str] = []


def plan_cost(w: Workload, cluster: Cluster, table: ThroughputTable,
              engines: dict[str, EngineInfo] | None = None) -> CostPlan:
    """The whole plan. `engines` (from the model registry) marks hosted and no-model engines."""
    engines = engines or {}
    stages = [estimate_stage(v, cluster, table, engines.get(v.model))
              for v in stage_volumes(w)]
    wall = sum(s.wall_hours for s in stages)
    return CostPlan(
        cluster=cluster, workload=w, stages=stages,
        calls=sum(s.calls for s in stages),
        prompt_tokens=sum(s.prompt_tokens for s in stages),
        output_tokens=sum(s.output_tokens for s in stages),
        gpu_hours=sum(s.gpu_hours for s in stages),
        wall_hours=wall, billed_gpu_hours=wall * cluster.count,
        storage=storage_volume(w), notes=layout_notes(stages, engines),
    )
