"""The whole feedback job (BRIEF 2.1-2.3) as resumable phases over storage.

    census sample -> persona candidates --(enrich, consistency)--> personas
    prompt file   -> prompt candidates --(controversy, original)--> prompts + originals
    personas x prompts -> plan --(critique, revision, verify)--> feedback pairs

Each phase first looks at what storage already holds, so re-running a run id resumes. The
driver computes only small, deterministic tables (samples, plan); every model call runs in
Ray Data actor pools (persona_gen.pipeline.executor).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.table import Table

from persona_gen.config.run import RunConfig
from persona_gen.engines.base import Sampling
from persona_gen.feedback import folders as F
from persona_gen.feedback.stages import CritiqueStage, OriginalStage, RevisionStage, VerifyStage
from persona_gen.log import bind_run, configure, get_logger
from persona_gen.pipeline.chain import BlockResult, Chain, Lookup, Step
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.manifest import Manifest, StageRecord, load_or_create, new_run_id
from persona_gen.pipeline.progress import StageProgress
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.pipeline.status import count_rows
from persona_gen.storage import objects
from persona_gen.storage.layout import RunLayout
from persona_gen.storage.uri import Location

FEEDBACK_COLUMNS = ("pair_id", "persona_id", "prompt_id", "persona", "instruction", "original",
                    "critique", "data", "question_type")


@dataclass
class JobSummary:
    run_id: str
    base_uri: str
    dataset_uri: str
    stages: dict[str, StageRecord]
    seconds: float
    example: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    cfg: RunConfig
    layout: RunLayout
    manifest: Manifest
    bars: StageProgress
    hosts: EngineHosts | None = None
    """Engine actors kept for the whole job (set once Ray is up)."""

    @property
    def seed(self) -> int:
        return self.cfg.run.seed

    def loc(self, folder: str) -> Location:
        return self.layout.base.child(folder)

    def has(self, folder: str) -> bool:
        return bool(objects.list_files(self.loc(folder), ".parquet"))

    def write_blocks(self, folder: str, table: pa.Table) -> int:
        """Split `table` into fixed blocks (`part-00000.parquet`, ...) committed one by one."""
        size = self.cfg.pipeline.batch_size
        n = max(1, math.ceil(table.num_rows / size))
        for i in range(n):
            objects.write_table_atomic(self.loc(folder).child(f"part-{i:05d}.parquet"),
                                       table.slice(i * size, size))
        return n

    def record(self, stage: str, **values: Any) -> None:
        rec = self.manifest.stages.setdefault(stage, StageRecord())
        for k, v in values.items():
            setattr(rec, k, v)
        self.manifest.save(self.layout)


def sampling(cfg: RunConfig, max_tokens: int | None = None, temperature: float | None = None) -> Sampling:
    fb = cfg.feedback
    return Sampling(temperature=fb.temperature if temperature is None else temperature,
                    top_p=fb.top_p, max_tokens=max_tokens or fb.max_tokens, seed=cfg.run.seed)


# ---- chains -------------------------------------------------------------------------------

def prompt_chain(cfg: RunConfig) -> Chain:
    from persona_gen.prompts.classify import CONTROVERSIAL, LABEL_COLUMN, ControversyStage

    steps = []
    if cfg.prompts.classifier_model:
        steps.append(Step(ControversyStage(), cfg.prompts.classifier_model, F.PROMPTS_CLASSIFIED,
                          id_column="prompt_id", keep_if=(LABEL_COLUMN, (CONTROVERSIAL,))))
    steps.append(Step(OriginalStage(sampling(cfg)), cfg.feedback.model, F.ORIGINALS,
                      id_column="prompt_id"))
    return Chain("prompts", F.PROMPT_CANDIDATES, tuple(steps))


def pair_chain(cfg: RunConfig) -> Chain:
    s = sampling(cfg)
    steps = [
        Step(CritiqueStage(s), cfg.feedback.model, F.CRITIQUES, drop=("persona",)),
        Step(RevisionStage(s), cfg.feedback.model, F.PAIRS),
    ]
    if cfg.feedback.verify:
        judge = Sampling(temperature=0.0, max_tokens=cfg.feedback.verify_max_tokens,
                         seed=cfg.run.seed)
        steps.append(Step(VerifyStage(judge, cfg.feedback.judge_model), cfg.feedback.judge_model,
                          F.VERIFICATION, drop=("persona", "instruction", "original", "critique",
                                                "data")))
    lookups = (
        Lookup("persona", F.PERSONAS_FILE, "persona_id", "persona_text"),
        Lookup("instruction", F.PROMPTS_FILE, "prompt_id", "text"),
        Lookup("original", F.ORIGINALS, "prompt_id", "original"),
    )
    return Chain("pairs", F.PLAN, tuple(steps), lookups)


# ---- phases --------------------------------------------------------------------------------

def prompt_candidates(job: Job) -> None:
    """Load the prompt file and apply the rule filters (question mark, length, duplicates)."""
    from persona_gen.prompts.build import select_prompts

    if job.has(F.PROMPT_CANDIDATES):
        return
    sel = select_prompts(job.cfg.prompts, engine=None, s3=job.cfg.storage)
    kept = sel.kept
    if job.cfg.prompts.limit is not None and kept.num_rows > job.cfg.prompts.limit:
        kept = _seeded_subset(kept, "prompt_id", job.cfg.prompts.limit, job.seed)
    job.write_blocks(F.PROMPT_CANDIDATES, kept)
    job.manifest.counts["prompt_filters"] = sel.stats.model_dump(mode="json")
    job.record("controversy" if job.cfg.prompts.classifier_model else "original",
               planned=kept.num_rows)


def _seeded_subset(table: pa.Table, key: str, n: int, seed: int) -> pa.Table:
    """n rows chosen by a seeded hash of their key: the same rows for the same seed and set."""
    import hashlib

    keys = table.column(key).to_pylist()
    rank = sorted(range(len(keys)), key=lambda i: hashlib.blake2b(
        f"{seed}:{keys[i]}".encode(), digest_size=8).digest())
    return table.take(pa.array(sorted(rank[:n]), pa.int64()))


def select_prompts_phase(job: Job) -> pa.Table:
    """Controversial prompts with their original answers -> topics and train/held-out split."""
    from persona_gen.prompts.build import finalize_prompts

    loc = job.loc(F.PROMPTS_FILE)
    if objects.exists(loc):
        return objects.read_table(loc)
    answered = objects.read_table(job.loc(F.ORIGINALS), columns=["prompt_id", "text", "topic"])
    table, stats = finalize_prompts(answered, job.cfg.prompts, job.seed)
    objects.write_table_atomic(loc, table)
    job.manifest.counts["prompts"] = stats.model_dump(mode="json")
    job.manifest.save(job.layout)
    return table


def write_plan(job: Job, personas: pa.Table, prompts: pa.Table) -> int:
    from persona_gen.plan.assign import build_plan

    if job.has(F.PLAN):
        return count_rows(job.loc(F.PLAN))[0]
    split = prompts.column("split")
    train = pc.filter(prompts.column("prompt_id"), pc.equal(split, "train")).to_pylist()
    heldout = pc.filter(prompts.column("prompt_id"), pc.equal(split, "heldout")).to_pylist()
    plan = build_plan(personas.column("persona_id").to_pylist(), train, heldout, job.cfg.plan,
                      job.seed)
    job.write_blocks(F.PLAN, plan)
    job.manifest.counts["plan"] = {
        "pairs": plan.num_rows,
        "train": int(pc.sum(pc.equal(plan.column("question_type"), "train")).as_py() or 0),
        "test": int(pc.sum(pc.equal(plan.column("question_type"), "test")).as_py() or 0),
    }
    job.manifest.save(job.layout)
    return plan.num_rows


def tally(job: Job, results: list[BlockResult]) -> None:
    """Add newly committed steps' errors, tokens and model time to the manifest's stages."""
    for res in results:
        for st in res.steps:
            if st.resumed:
                continue
            rec = job.manifest.stages.setdefault(st.stage, StageRecord())
            rec.errors += st.errors
            rec.output_tokens += st.output_tokens
            rec.seconds += st.seconds


def _refresh_done(job: Job) -> None:
    """Counts in the manifest from storage (the truth after resumes), not from memory."""
    for stage, where in F.stages_for(job.cfg.model_dump(mode="json")).items():
        done = count_rows(job.loc(where.out))[0]
        if not done and stage not in job.manifest.stages:
            continue
        rec = job.manifest.stages.setdefault(stage, StageRecord())
        rec.done = done
        rec.errors = count_rows(job.layout.errors.child(stage))[0]
        rec.planned = count_rows(job.loc(where.inputs), where.inputs_where)[0]


def run_chain_phase(job: Job, chains: list[Chain]) -> None:
    for chain in chains:
        for step in chain.steps:
            rec = job.manifest.stages.get(step.name)
            done = count_rows(job.loc(step.out))[0]
            job.bars.plan(step.name, rec.planned if rec and rec.planned else done, done)
    results = run_chains(chains, job.layout, job.cfg.pipeline, job.cfg.storage,
                         on_result=job.bars.on_result, hosts=job.hosts)
    tally(job, results)
    _refresh_done(job)
    job.manifest.save(job.layout)


def run_job(cfg: RunConfig, *, output: str | None = None, run_id: str | None = None,
            progress: bool | None = None) -> JobSummary:
    """Run (or resume) the whole job; returns the summary printed by `persona-gen run`."""
    from persona_gen.feedback.persona_phase import build_personas_phase

    configure(level=cfg.run.log_level)
    run_id = run_id or cfg.run.run_id or new_run_id()
    output = output or cfg.run.output
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"run_id": run_id, "output": output})})
    layout = RunLayout.at(output, run_id, cfg.storage)
    bind_run(run_id)
    log = get_logger(stage="job")
    started = time.perf_counter()
    manifest = load_or_create(layout, cfg.model_dump(mode="json"), cfg.run.seed)
    log.info("run_start", base=layout.base.uri, attempt=manifest.attempts)
    with StageProgress(progress) as bars:
        job = Job(cfg, layout, manifest, bars)
        prompt_candidates(job)
        with ray_session(cfg.pipeline), EngineHosts(cfg.pipeline, run_id) as hosts:
            job.hosts = hosts
            personas = build_personas_phase(job)
            run_chain_phase(job, [prompt_chain(cfg)])
            prompts = select_prompts_phase(job)
            planned = write_plan(job, personas, prompts)
            for stage in ("critique", "revision", "verify"):
                job.record(stage, planned=planned)
            run_chain_phase(job, [pair_chain(cfg)])
    _remove_temporaries(layout)
    manifest.status = "complete"
    manifest.models = _models(cfg)
    manifest.save(layout)
    summary = JobSummary(run_id=run_id, base_uri=layout.base.uri, dataset_uri=job.loc(F.PAIRS).uri,
                         stages=manifest.stages, seconds=time.perf_counter() - started,
                         example=_example(job))
    log.info("run_complete", seconds=round(summary.seconds, 1),
             pairs=manifest.stages.get("revision", StageRecord()).done)
    return summary


def _remove_temporaries(layout: RunLayout) -> None:
    """Temp files of writers killed mid-write (local storage only; S3 PUTs leave none)."""
    if not layout.base.is_local:
        return
    from pathlib import Path

    for tmp in Path(layout.base.path).rglob(".tmp-*"):
        tmp.unlink(missing_ok=True)


def _models(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    from persona_gen.engines.registry import discover

    names = {cfg.personas.enrich_model, cfg.personas.judge_model, cfg.feedback.model,
             cfg.feedback.judge_model}
    if cfg.prompts.classifier_model:
        names.add(cfg.prompts.classifier_model)
    registry = discover()
    return {n: {**registry[n].spec.model_dump(mode="json"), "registry_file": registry[n].path}
            for n in sorted(names) if n in registry}


def _example(job: Job) -> dict[str, Any]:
    files = objects.list_files(job.loc(F.PAIRS), ".parquet")
    if not files:
        return {}
    t = objects.read_table(Location(job.layout.root.fs, files[0], files[0]))
    if t.num_rows == 0:
        return {}
    row = t.slice(0, 1).to_pylist()[0]
    return {k: row.get(k) for k in FEEDBACK_COLUMNS}


def summary_table(summary: JobSummary) -> Table:
    table = Table(title=f"run {summary.run_id} ({summary.seconds:.0f} s) -> {summary.base_uri}")
    for col in ("stage", "rows done", "planned", "errors", "output tokens", "model seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, rec in summary.stages.items():
        table.add_row(name, f"{rec.done:,}", f"{rec.planned:,}", f"{rec.errors:,}",
                      f"{rec.output_tokens:,}", f"{rec.seconds:.1f}")
    return table
