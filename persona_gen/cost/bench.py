"""The cost plan of a PERSONA Bench: requests, samples, judge calls, tokens, GPU-hours and
wall time per model under test and mode, before it runs.

Counts come either from a config alone (`persona-gen cost` on a bench config: personas and prompts
as the run's splits size them) or from the request table a `bench run` is about to answer
(exact). Each (model, mode, study) line is planned as two stages, the answers and their
judging, with the same throughput table, engine settings and `estimate_stage` as a run's
stages, so a bench and a run are priced the same way.

Token model (upper bounds, like the run's plan): every sample runs to its mode's answer
limit (`stages.bench_answer.max_tokens_by_mode`), every sample is judged, and the judge
writes its `max_tokens`. An answer request asks for `k` samples at once (Sampling.n): its
prompt is computed once and shared by the k sequences; requests for one persona share the
persona prefix (the request table is ordered by persona), as do the judge's.
"""

from __future__ import annotations

import math
from typing import Literal

import pyarrow as pa
from pydantic import Field

from persona_gen.config.base import StrictModel
from persona_gen.cost.estimate import (
    PAPER_PROMPTS,
    Cluster,
    EngineInfo,
    StageEstimate,
    StageVolume,
    TokenAssumptions,
    estimate_stage,
)
from persona_gen.cost.tables import ThroughputTable
from persona_gen.run.config import RunConfig

Study = Literal["main", "loo"]


class BenchCount(StrictModel):
    """Answer requests of one model under test in one mode of one study."""

    model: str
    mode: str
    study: Study
    requests: int = Field(ge=0)
    personas: int = Field(ge=0)
    """Distinct personas among them (each computes its persona prefix once)."""


class BenchLine(StrictModel):
    model: str
    mode: str
    study: Study
    requests: int
    samples: int
    judge_calls: int
    answer: StageEstimate
    judge: StageEstimate

    @property
    def gpu_hours(self) -> float:
        return self.answer.gpu_hours + self.judge.gpu_hours

    @property
    def wall_hours(self) -> float:
        return self.answer.wall_hours + self.judge.wall_hours


class BenchPlan(StrictModel):
    cluster: Cluster | None
    """None: the config names no GPUs (a CPU run): counts and tokens only."""
    source: Literal["config", "requests"]
    """Counts sized from the config's splits, or counted in the built request table."""
    k: int
    judge_model: str
    personas: int
    prompts: int
    prompts_per_persona: int
    lines: list[BenchLine]
    requests: int
    samples: int
    judge_calls: int
    prompt_tokens: int
    output_tokens: int
    gpu_hours: float
    wall_hours: float
    """Lines run one after another; engine start-up and I/O are not counted."""
    billed_gpu_hours: float
    max_gpu_hours: float | None = None
    notes: list[str] = []

    @property
    def over_budget(self) -> bool:
        return self.max_gpu_hours is not None and self.gpu_hours > self.max_gpu_hours


def _split_count(total: int, split: str | None, held: int, held_name: str) -> int:
    if split is None:
        return total
    return held if split == held_name else total - held


def counts_from_config(cfg: RunConfig, prompts: int = PAPER_PROMPTS) -> tuple[list[BenchCount], int, int, int]:
    """Per (model, mode, study) request counts from the config alone, and the personas,
    prompts and prompts per persona they assume. LOO counts are upper bounds (a persona
    lacking an attribute skips that twin)."""
    from persona_gen.personas.split import held_out_count

    b = cfg.bench
    n = cfg.personas.n
    test = held_out_count(n, cfg.personas.test_fraction)
    heldout = min(prompts, max(0, round(prompts * cfg.prompts.heldout_fraction)))
    p = _split_count(n, b.persona_split, test, "test")
    q = _split_count(prompts, b.prompt_split, heldout, "heldout")
    p = min(p, b.max_personas or p)
    q = min(q, b.max_prompts or q)
    per = min(q, b.prompts_per_persona or q)
    out = [BenchCount(model=m, mode=mode, study="main", requests=p * per, personas=p)
           for m in b.models for mode in b.modes]
    if b.loo_attributes:
        lp, lq = min(p, b.loo_personas or p), min(q, b.loo_prompts or q)
        twins = len(b.loo_attributes) + (1 if b.loo_all_removed else 0)
        # Full twins are new requests unless the grid has them: none when loo_mode is not
        # benched; with a per-persona prompt sample, the expected share outside it.
        inside = (per / q if q else 0.0) if b.loo_mode in b.modes else 0.0
        extra = lp * lq - round(lp * lq * inside)
        out += [BenchCount(model=m, mode=b.loo_mode, study="loo",
                           requests=lp * lq * twins + extra, personas=lp) for m in b.models]
    return out, p, q, per


def counts_from_requests(requests: pa.Table) -> list[BenchCount]:
    """Per (model, mode, study) counts of a built request table (study 'loo': leave-one-out
    rows and the full twins the grid lacks)."""
    groups: dict[tuple[str, str, str], tuple[int, set[str]]] = {}
    cols = [requests.column(c).to_pylist() for c in ("model", "mode", "persona_id", "study")]
    for model, mode, pid, study in zip(*cols, strict=True):
        key = (model, mode, study or "main")
        n, ids = groups.get(key, (0, set()))
        ids.add(pid)
        groups[key] = (n + 1, ids)
    return [BenchCount(model=m, mode=mode, study=study, requests=n, personas=len(ids))  # type: ignore[arg-type]
            for (m, mode, study), (n, ids) in groups.items()]


def _volumes(c: BenchCount, k: int, answer_tokens: int, judge_model: str, judge_tokens: int,
             t: TokenAssumptions) -> tuple[StageVolume, StageVolume]:
    samples = c.requests * k
    persona = t.persona_tokens if c.mode != "baseline" else 0
    prompt_each = t.system_tokens + persona + t.prompt_tokens
    # Computed once per request (the k samples share it); with the prefix cache, a persona's
    # system + persona block once per persona.
    computed = c.requests * prompt_each
    if t.prefix_cache and persona and c.requests > c.personas:
        computed -= (c.requests - c.personas) * (t.system_tokens + persona)
    answer = StageVolume(stage="bench_answer", model=c.model, model_field="bench.models",
                         calls=samples, prompt_tokens=samples * prompt_each,
                         cached_prompt_tokens=samples * prompt_each - computed,
                         output_tokens=samples * answer_tokens)
    # The judge reads persona, question and the answer (at most the answer's limit).
    judge_each = t.system_tokens + t.persona_tokens + t.prompt_tokens + answer_tokens
    cached = ((samples - c.personas) * (t.system_tokens + t.persona_tokens)
              if t.prefix_cache and samples > c.personas else 0)
    judge = StageVolume(stage="bench_judge", model=judge_model,
                        model_field="stages.bench_judge.model", calls=samples,
                        prompt_tokens=samples * judge_each, cached_prompt_tokens=cached,
                        output_tokens=samples * judge_tokens)
    return answer, judge


def _estimate(v: StageVolume, cluster: Cluster | None, table: ThroughputTable,
              engine: EngineInfo | None) -> StageEstimate:
    if cluster is None:
        return StageEstimate(**v.model_dump(), basis="no GPU cluster")
    return estimate_stage(v, cluster, table, engine)


def plan_bench(cfg: RunConfig, counts: list[BenchCount], cluster: Cluster | None,
               table: ThroughputTable, engines: dict[str, EngineInfo] | None = None,
               tokens: TokenAssumptions | None = None, *, source: Literal["config", "requests"],
               personas: int = 0, prompts: int = 0, prompts_per_persona: int = 0) -> BenchPlan:
    from persona_gen.run.bench import bench_stages

    engines = engines or {}
    t = tokens or TokenAssumptions()
    stages = bench_stages(cfg)
    k = cfg.bench.k
    judge_model = stages.judge.judge_model
    judge_tokens = stages.judge.sampling.max_tokens
    lines = []
    for c in counts:
        if not c.requests:
            continue
        av, jv = _volumes(c, k, stages.answer.max_tokens_for(c.mode), judge_model, judge_tokens, t)
        lines.append(BenchLine(model=c.model, mode=c.mode, study=c.study, requests=c.requests,
                               samples=av.calls, judge_calls=jv.calls,
                               answer=_estimate(av, cluster, table, engines.get(c.model)),
                               judge=_estimate(jv, cluster, table, engines.get(judge_model))))
    order = {m: i for i, m in enumerate(cfg.bench.models)}
    lines.sort(key=lambda ln: (ln.study != "main", order.get(ln.model, len(order)), ln.model,
                               _mode_rank(ln.mode)))
    wall = sum(ln.wall_hours for ln in lines)
    notes = []
    if cluster is None:
        notes.append("pipeline.num_gpus_per_actor is 0 or pipeline.accelerator_type is unset: "
                     "no GPU-hours planned (pass --cluster to `persona-gen cost` for a GPU cluster)")
    return BenchPlan(
        cluster=cluster, source=source, k=k, judge_model=judge_model, personas=personas,
        prompts=prompts, prompts_per_persona=prompts_per_persona, lines=lines,
        requests=sum(ln.requests for ln in lines), samples=sum(ln.samples for ln in lines),
        judge_calls=sum(ln.judge_calls for ln in lines),
        prompt_tokens=sum(ln.answer.prompt_tokens + ln.judge.prompt_tokens for ln in lines),
        output_tokens=sum(ln.answer.output_tokens + ln.judge.output_tokens for ln in lines),
        gpu_hours=sum(ln.gpu_hours for ln in lines), wall_hours=wall,
        billed_gpu_hours=wall * (cluster.count if cluster else 0),
        max_gpu_hours=cfg.bench.max_gpu_hours, notes=notes)


def _mode_rank(mode: str) -> int:
    from persona_gen.bench.config import ALL_MODES

    return ALL_MODES.index(mode) if mode in ALL_MODES else len(ALL_MODES)  # type: ignore[arg-type]


def pipeline_cluster(cfg: RunConfig, table: ThroughputTable) -> Cluster | None:
    """The GPUs a run's pipeline section asks for (actors x GPUs per actor of its accelerator
    type); None for a CPU run."""
    from persona_gen.cost.estimate import parse_cluster

    p = cfg.pipeline
    gpus = math.floor(p.actors * p.num_gpus_per_actor)
    if gpus < 1 or not p.accelerator_type:
        return None
    return parse_cluster(f"{gpus}x{p.accelerator_type}", table)


__all__ = ["BenchCount", "BenchLine", "BenchPlan", "counts_from_config", "counts_from_requests",
           "pipeline_cluster", "plan_bench"]
