"""The persona phase of the job: census draw -> persona build, model stages on Ray Data.

`personas.build.build_personas` owns the method (traits, rules, enrichment, judge,
resampling rounds); this module gives it a runner that sends each model-stage call through
the actor-pool pipeline, committing blocks under `personas/<stage>/` so a resumed run
replays finished calls from storage instead of the model. The build is deterministic for a
seed, so a resumed build asks for the same calls in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.feedback import folders as F
from persona_gen.pipeline.chain import Chain, Step, block_file, block_ids, error_file
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.stage import ModelStage
from persona_gen.storage import objects


@dataclass
class EngineRef:
    """Stands in for an engine in the driver: the real one lives in the pipeline's actors."""

    name: str

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        raise RuntimeError("EngineRef runs no model; stages go through the pipeline runner")

    def close(self) -> None:
        return None


class PipelineRunner:
    """`runner(stage, engine, table, batch_size)` for build_personas, backed by run_chains."""

    def __init__(self, job) -> None:  # job: persona_gen.feedback.job.Job
        self.job = job
        self.calls = 0

    def __call__(self, stage: ModelStage, engine: EngineRef, table: pa.Table, _bs: int) -> pa.Table:
        job = self.job
        call = self.calls
        self.calls += 1
        out_dir, in_dir = f"personas/{stage.name}", f"personas/{stage.name}_input"
        size = job.cfg.pipeline.batch_size
        prefix = f"c{call:03d}-part-"
        names = [f"{prefix}{i:05d}" for i in range(max(1, math.ceil(table.num_rows / size)))]
        done = set(block_ids(job.layout, out_dir))
        for i, name in enumerate(names):
            if name not in done:  # inputs are deterministic: rewriting one is harmless
                objects.write_table_atomic(block_file(job.layout, in_dir, name),
                                           table.slice(i * size, size))
        chain = Chain(f"personas-{stage.name}-{call}", in_dir,
                      (Step(stage, engine.name, out_dir, id_column="persona_id"),))
        planned = job.manifest.stages.get(stage.name)
        job.bars.plan(stage.name, (planned.planned if planned else 0) + table.num_rows)
        job.record(stage.name, planned=(planned.planned if planned else 0) + table.num_rows)
        run_chains([_only(chain, names)], job.layout, job.cfg.pipeline, job.cfg.storage,
                   on_result=job.bars.on_result, hosts=job.hosts)
        return self._collect(stage, names, in_dir, out_dir)

    def _collect(self, stage: ModelStage, names: list[str], in_dir: str, out_dir: str) -> pa.Table:
        """Committed rows plus the failed rows (with their `error`), as the stage returned them."""
        job = self.job
        good = [objects.read_table(block_file(job.layout, out_dir, n)) for n in names]
        parts = [g for g in good if g.num_rows]
        for n in names:
            err_loc = error_file(job.layout, stage.name, n)
            if not objects.exists(err_loc):
                continue
            errs = objects.read_table(err_loc)
            inputs = objects.read_table(block_file(job.layout, in_dir, n))
            failed = inputs.filter(pc.is_in(inputs.column("persona_id"), value_set=errs.column("id")))
            reason = dict(zip(errs.column("id").to_pylist(), errs.column("reason").to_pylist(),
                              strict=True))
            failed = failed.append_column(
                "error", pa.array([reason[p] for p in failed.column("persona_id").to_pylist()],
                                  pa.string()))
            parts.append(failed)
        if not parts:
            return good[0].append_column("error", pa.nulls(0, pa.string())) if good else pa.table({})
        table = pa.concat_tables(parts, promote_options="permissive")
        if "error" not in table.column_names:
            table = table.append_column("error", pa.nulls(table.num_rows, pa.string()))
        order = {p: i for i, p in enumerate(_ids_in(job, in_dir, names))}
        idx = sorted(range(table.num_rows), key=lambda i: order.get(
            table.column("persona_id")[i].as_py(), len(order)))
        return table.take(pa.array(idx, pa.int64()))


def _ids_in(job, in_dir: str, names: list[str]) -> list[str]:
    ids: list[str] = []
    for n in names:
        ids += objects.read_table(block_file(job.layout, in_dir, n), columns=["persona_id"]) \
            .column("persona_id").to_pylist()
    return ids


def _only(chain: Chain, names: list[str]) -> Chain:
    return Chain(chain.name, chain.input, chain.steps, chain.lookups, only=tuple(names))


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
                                  runner=PipelineRunner(job))
    objects.write_table_atomic(loc, table)
    job.manifest.counts["personas"] = stats.model_dump(mode="json")
    job.manifest.save(job.layout)
    return table
