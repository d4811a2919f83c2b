"""The cost plan: model calls, tokens, GPU-hours, wall time and storage for one run.

Pure functions over pydantic models. The stages, their models and their switches come
from the run's recipe (persona_gen.run.recipe); each stage's calls follow from its unit
(a persona attempt, a source prompt, a prompt, a pair) and its prompt from the parts its
class declares (persona, prompt, original, ...). At paper scale (arXiv 2407.17387): 1,586
personas x 200 prompts = 317,200 pairs over 3,868 prompts, the 1,586 counted after the
consistency filter, so the persona stages plan the census people drawn to keep them.
Output lengths are upper bounds: every call is assumed to run to its max_tokens setting.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field

from persona_gen.config.base import StrictModel
from persona_gen.cost.derive import at_gpus, rate_with_settings
from persona_gen.cost.model_size import does_not_fit
from persona_gen.cost.tables import ThroughputTable
from persona_gen.engines.registry import ModelSpec as ModelFile
from persona_gen.engines.settings import resolve_settings
from persona_gen.errors import UserError
from persona_gen.run.config import RunConfig

PAPER_PROMPTS = 3868
PRISM_SOURCE_PROMPTS = 8011
"""PRISM's opening prompts before the filters (PERSONA, arXiv 2407.17387: prompts)."""
EngineKind = Literal["vllm", "openai", "echo", "sim", "custom"]

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
    """The run orders requests so one persona's prefix is computed once per stage."""
    bytes_per_token: float = Field(4.0, gt=0)
    """UTF-8 bytes per token of English text (about four characters a token)."""
    plan_row_bytes: int = Field(64, ge=0)
    """Ids and split of one plan row."""


class StagePlan(StrictModel):
    """What the planner needs of one stage of the recipe."""

    stage: str
    model: str
    model_field: str
    """The config key that chose the model (for messages)."""
    unit: str
    prompt_parts: tuple[str, ...]
    output_tokens: int | None
    """The stage's output cap (None: the classifier's, from the assumptions)."""
    persona_prefix: bool
    writes: str
    reasoning_tokens: int = Field(0, ge=0)
    """Reasoning tokens per call (a stage with thinking on: its budget); 0: no thinking."""


class Workload(StrictModel):
    personas: int = Field(ge=0)
    """Personas kept (personas.n)."""
    prompts: int = Field(ge=0)
    pairs_per_persona: int = Field(ge=0)
    text_tokens: dict[str, int]
    """Output caps of the original, the critique and the revision (stages.<name>.max_tokens,
    resolved): the length each has where a later prompt quotes it."""
    max_resamples: int = Field(0, ge=0)
    on_inconsistent: Literal["drop", "replace"] = "replace"
    source_prompts: int = Field(0, ge=0)
    """Prompts the controversy classifier reads (0 without a classifier)."""
    stages: list[StagePlan]
    """The enabled stages, in the order a run runs them."""
    stored: list[str] = Field(default_factory=list)
    """Folders of stored text outputs (prompt and pair stages), enabled or not."""
    tokens: TokenAssumptions = Field(default_factory=TokenAssumptions)

    @property
    def pairs(self) -> int:
        return self.personas * self.pairs_per_persona


def workload_from_config(cfg: RunConfig, prompts: int = PAPER_PROMPTS,
                         tokens: TokenAssumptions | None = None,
                         source_prompts: int = PRISM_SOURCE_PROMPTS) -> Workload:
    from persona_gen.run.recipe import all_stages, recipe, settings

    plan = cfg.plan
    # Each stage's output cap is its resolved StageSettings.max_tokens, as the run builds it;
    # the classifier's one-word answer is sized by the assumptions instead of its cap.
    stages = [StagePlan(stage=s.name, model=s.model(cfg), model_field=s.model_key, unit=s.unit,
                        prompt_parts=s.kind.prompt_parts,
                        output_tokens=None if s.role == "classifier" else s.max_tokens(cfg),
                        persona_prefix=s.persona_prefix, writes=s.writes,
                        # Thinking on: its budget on top of the answer (no budget: the
                        # reasoning shares max_tokens, already counted).
                        reasoning_tokens=(s.settings(cfg).thinking_budget or 0)
                        if s.settings(cfg).thinking == "on" else 0)
              for s in recipe(cfg)]
    return Workload(
        personas=cfg.personas.n,
        prompts=prompts,
        pairs_per_persona=(plan.train_pairs_per_persona + plan.seen_test_pairs_per_persona
                           + plan.heldout_test_pairs_per_persona),
        text_tokens={"original": settings(cfg, "original").max_tokens or 0,
                     "critique": settings(cfg, "critique").max_tokens or 0,
                     "revision": settings(cfg, "revision").max_tokens or 0},
        max_resamples=cfg.personas.max_resamples,
        on_inconsistent=cfg.personas.on_inconsistent,
        source_prompts=source_prompts if any(s.stage == "controversy" for s in stages) else 0,
        stages=stages,
        stored=[s.writes for s in all_stages() if s.unit in ("prompt", "pair")],
        tokens=tokens or TokenAssumptions(),
    )


class StageVolume(StrictModel):
    stage: str
    model: str
    model_field: str
    calls: int
    prompt_tokens: int
    cached_prompt_tokens: int = 0
    """Prompt tokens served from the prefix cache (not recomputed)."""
    output_tokens: int
    reasoning_tokens: int = 0
    """Generated before the answers (thinking on), counted apart from output_tokens."""


def expected_attempts(rate: float, max_resamples: int) -> float:
    """Profiles generated per persona slot: resample while inconsistent, at most R times."""
    return sum(rate**k for k in range(max_resamples + 1))


def persona_attempts(w: Workload) -> int:
    """Persona profiles the build makes to keep `w.personas`. With `drop`: the census people
    it draws, round by round, as the build itself sizes its rounds
    (persona_gen.personas.build.planned_draws) at the assumed rejection rate; with
    `replace`: slots times the expected tries per slot."""
    from persona_gen.personas.build import planned_draws

    rate = w.tokens.inconsistency_rate
    if w.on_inconsistent == "drop":
        return planned_draws(w.personas, rate, w.max_resamples + 1)
    return math.ceil(w.personas * expected_attempts(rate, w.max_resamples))


def stage_volumes(w: Workload) -> list[StageVolume]:
    t = w.tokens
    pairs = w.pairs
    calls_per_unit = {
        "persona_attempt": persona_attempts(w),
        "source_prompt": w.source_prompts,
        "prompt": min(w.prompts, pairs),  # originals: one per prompt some pair uses
        "pair": pairs,
    }
    part_tokens = {"demographics": t.demographics_tokens, "persona": t.persona_tokens,
                   "prompt": t.prompt_tokens, **w.text_tokens}
    # Per-pair requests start with system + persona; with prefix caching only the first
    # request of each persona in a stage computes that prefix.
    cached = (pairs - w.personas) * (t.system_tokens + t.persona_tokens) if (
        t.prefix_cache and pairs > w.personas) else 0
    out = []
    for s in w.stages:
        calls = calls_per_unit[s.unit]
        if not calls:
            continue
        prompt_each = t.system_tokens + sum(part_tokens[p] for p in s.prompt_parts)
        out_each = t.classifier_output_tokens if s.output_tokens is None else s.output_tokens
        out.append(StageVolume(
            stage=s.stage, model=s.model, model_field=s.model_field, calls=calls,
            prompt_tokens=calls * prompt_each,
            cached_prompt_tokens=cached if s.persona_prefix else 0,
            output_tokens=calls * out_each, reasoning_tokens=calls * s.reasoning_tokens))
    return out


class EngineInfo(StrictModel):
    """What the model registry says about a model (persona_gen/models/*.yaml)."""

    kind: EngineKind
    tensor_parallel_size: int = Field(1, ge=1)
    spec: ModelFile | None = None
    """The model file, where known: each engine is then planned at the settings it resolves
    to on the cluster's GPU class (persona_gen.engines.settings), as the run does."""


class StageEstimate(StageVolume):
    gpus_per_replica: int = 0
    replicas: int = 0
    gpu_hours: float = 0.0
    """GPU time the stage keeps busy (replica time x GPUs per replica)."""
    wall_hours: float = 0.0
    """The stage alone, all replicas working in parallel."""
    basis: str = "none"
    """measured / derived (the table row's basis), hosted (an HTTP API), or no GPU (echo)."""
    running_seqs: int = 0
    """Sequences each engine keeps running, where planned from its resolved settings."""


def estimate_stage(v: StageVolume, cluster: Cluster, table: ThroughputTable,
                   engine: EngineInfo | None = None) -> StageEstimate:
    if (engine and engine.kind in ("echo", "custom")) or v.model in table.no_gpu_models:
        return StageEstimate(**v.model_dump(), basis="no GPU")
    if engine and engine.kind == "sim":
        return StageEstimate(**v.model_dump(), basis="simulated")
    if engine and engine.kind == "openai":
        # Served outside the cluster: tokens count, cluster GPU time does not.
        return StageEstimate(**v.model_dump(), basis="hosted")
    e = table.entry(v.model, cluster.gpu, field=v.model_field)
    gpus, out_s, pre_s, basis = e.gpus_per_replica, e.output_tok_s, e.prefill_tok_s, e.basis
    running = 0
    if engine and engine.kind == "vllm" and engine.spec is not None:
        # The engine's resolved settings on this GPU class: its max_num_seqs, and the
        # sequences of this stage's size its KV cache holds (the sim engine reads the same);
        # a cached persona prefix is held once for all the sequences that share it, though
        # each reads it every step (its whole prompt and, on average, half its output).
        settings = resolve_settings(engine.spec, cluster.gpu)
        calls = max(1, v.calls)
        own = (v.prompt_tokens - v.cached_prompt_tokens + v.output_tokens) // calls
        context = (v.prompt_tokens + v.output_tokens // 2) // calls
        rated = rate_with_settings(table, e, settings, own, context)
        if rated is None:
            raise does_not_fit(v.model, table.models[v.model], cluster.gpu,
                               table.gpus[cluster.gpu], settings.tensor_parallel_size,
                               table.derivation, v.model_field)
        out_s, pre_s, running = rated
        if settings.tensor_parallel_size != gpus:
            gpus, basis = settings.tensor_parallel_size, f"{e.basis}, scaled"
    elif engine and engine.kind == "vllm" and engine.tensor_parallel_size != gpus:
        # The run places each engine on the GPUs its model file asks for
        # (pipeline.engine_host.engine_layout): plan with that layout, not the table's.
        scaled = at_gpus(table, e, engine.tensor_parallel_size)
        if scaled is None:
            raise does_not_fit(v.model, table.models[v.model], cluster.gpu,
                               table.gpus[cluster.gpu], engine.tensor_parallel_size,
                               table.derivation, v.model_field)
        gpus, (out_s, pre_s), basis = engine.tensor_parallel_size, scaled, f"{e.basis}, scaled"
    replicas = cluster.count // gpus
    if replicas == 0:
        raise UserError(
            f"'{v.model}' needs {gpus} {cluster.gpu} GPUs per engine; "
            f"--cluster {cluster.label} has {cluster.count}", source=v.model_field)
    replica_s = ((v.output_tokens + v.reasoning_tokens) / out_s
                 + (v.prompt_tokens - v.cached_prompt_tokens) / pre_s)
    return StageEstimate(
        **v.model_dump(), gpus_per_replica=gpus, replicas=replicas,
        gpu_hours=replica_s * gpus / 3600,
        wall_hours=replica_s / replicas / 3600, basis=basis, running_seqs=running,
    )


def layout_notes(stages: list[StageEstimate], table: ThroughputTable, cluster: Cluster
                 ) -> list[str]:
    """Where the plan lays a model out differently from its throughput table row, and the
    batch each engine runs by its resolved settings."""
    notes = []
    for name in dict.fromkeys(s.model for s in stages if s.running_seqs):
        runs = ", ".join(f"{s.stage} {s.running_seqs}" for s in stages
                         if s.model == name and s.running_seqs)
        notes.append(f"{name}: running sequences per engine by its resolved settings on "
                     f"{cluster.gpu} (max_num_seqs, and what its KV cache holds): {runs}; the "
                     f"table's figures, at {table.derivation.anchor_max_num_seqs}, are rescaled "
                     "by the bandwidth roofline")
    for name in dict.fromkeys(s.model for s in stages if s.basis.endswith("scaled")):
        used = next(s for s in stages if s.model == name)
        row = next(e for e in table.entries if e.model == name and e.gpu == cluster.gpu)
        notes.append(f"{name}: {used.gpus_per_replica} GPUs per engine, {used.replicas} "
                     f"engine(s) (tensor_parallel_size in its model file); the table's figure "
                     f"is for {row.gpus_per_replica} GPUs, scaled by the bandwidth roofline "
                     "(more, smaller engines give more tokens per GPU)")
    return notes


class StorageEstimate(StrictModel):
    """Uncompressed text bytes; Parquet with compression stores text at a fraction of this."""

    parts: dict[str, int]
    """Bytes per folder of the run (as the recipe names them), final rows only."""
    total_bytes: int
    export_bytes: int
    """A denormalised export in the released columns (persona, instruction, original,
    critique, revision) for every pair."""


def storage_volume(w: Workload) -> StorageEstimate:
    t, b = w.tokens, w.tokens.bytes_per_token
    pairs = w.pairs
    parts = {
        "personas/": round(w.personas * t.persona_tokens * b),
        "prompts/": round(max(w.prompts, w.source_prompts) * t.prompt_tokens * b),
        "plan/": pairs * t.plan_row_bytes,
        **dict.fromkeys(w.stored, 0),
    }
    for v in stage_volumes(w):
        writes = next(s.writes for s in w.stages if s.stage == v.stage)
        if writes in parts:
            parts[writes] = round(v.output_tokens * b)
    export = round(pairs * (t.persona_tokens + t.prompt_tokens + sum(w.text_tokens.values())) * b)
    return StorageEstimate(parts=parts, total_bytes=sum(parts.values()), export_bytes=export)


class CostPlan(StrictModel):
    cluster: Cluster
    workload: Workload
    stages: list[StageEstimate]
    calls: int
    prompt_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    gpu_hours: float
    """Busy GPU time summed over stages."""
    wall_hours: float
    """Stages run one after another; engine start-up and I/O are not counted."""
    billed_gpu_hours: float
    """Wall time x every GPU in the cluster (what a cloud bill counts)."""
    storage: StorageEstimate
    persona_attempts: int = 0
    """Persona profiles made (census draws with `drop`) to keep workload.personas."""
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
        reasoning_tokens=sum(s.reasoning_tokens for s in stages),
        gpu_hours=sum(s.gpu_hours for s in stages),
        wall_hours=wall, billed_gpu_hours=wall * cluster.count,
        storage=storage_volume(w), persona_attempts=persona_attempts(w),
        notes=layout_notes(stages, table, cluster),
    )
