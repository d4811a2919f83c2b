"""The persona phase of the job: census draw -> persona build, model stages on Ray Data.

`personas.build.build_personas` owns the method (traits, rules, enrichment, judge,
resampling rounds); this module gives it a runner that sends each model-stage call through
the actor-pool pipeline (pipeline.runner), committing blocks under `personas/<stage>/`.
"""

from __future__ import annotations

import pyarrow as pa

from persona_gen.feedback import folders as F
from persona_gen.pipeline.chain import BlockResult
from persona_gen.pipeline.runner import EngineRef, PipelineRunner
from persona_gen.storage import objects


def build_personas_phase(job) -> pa.Table:
    """personas/personas.parquet, built (or resumed) through the pipeline."""
    from persona_gen.personas.build import build_personas
    from persona_gen.personas.job import census_sampler, resampler

    loc = job.loc(F.PERSONAS_FILE)
    if objects.exists(loc):
        return objects.read_table(loc)
    cfg = job.cfg
    census_seed = cfg.census.seed if cfg.census.seed is not None else cfg.run.seed
    census = census_sampler(cfg, cfg.census.n, census_seed)
    objects.write_table_atomic(job.loc("personas/census.parquet"), census)
    pc_cfg = cfg.personas
    judge = EngineRef(pc_cfg.judge_model) if pc_cfg.model_consistency_check else None
    table, stats = build_personas(census, EngineRef(pc_cfg.enrich_model), judge, pc_cfg,
                                  cfg.run.seed, resampler(cfg, census_sampler),
                                  runner=_runner(job))
    objects.write_table_atomic(loc, table)
    job.manifest.counts["personas"] = stats.model_dump(mode="json")
    job.manifest.save(job.layout)
    return table


def _runner(job) -> PipelineRunner:
    from persona_gen.feedback.job import tally

    def on_plan(stage: str, rows: int) -> None:
        rec = job.manifest.stages.get(stage)
        total = (rec.planned if rec else 0) + rows
        job.bars.plan(stage, total)
        job.record(stage, planned=total)

    def on_result(res: BlockResult) -> None:
        job.bars.on_result(res)
        tally(job, [res])

    return PipelineRunner(job.layout, "personas", job.cfg.pipeline, job.cfg.storage, job.hosts,
                          ("persona_id",), on_plan=on_plan, on_result=on_result)
