"""Executing a run: the recipe's phases run (or resumed) over storage, one attempt at a time.

    personas   census draw -> persona slots --(enrich, consistency)--> personas
    prompts    prompt file -> candidates --(controversy, original)--> prompts
    plan       personas x prompts -> plan (pair ids, question types)
    pairs      plan --(critique, revision, verify)--> feedback pairs

Each phase first looks at what storage already holds, so re-running a run id resumes, and
`run --until PHASE` (or `--only PHASE`) writes exactly what the full run writes, so a
later full run carries on from it. The driver computes only small, deterministic tables
(census draw, candidates, plan); every model call runs in Ray Data actor pools bound to
engine actors that live for the whole attempt (persona_gen.pipeline).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.errors import EXIT_BUG, FailedRowsError, exit_code_for, one_line
from persona_gen.log import bind_run, configure, get_logger
from persona_gen.pipeline.chain import BlockResult, Chain
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.fleet import NodeLoss
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.pipeline.runner import PipelineRunner
from persona_gen.pipeline.stage import Bound, ModelStage
from persona_gen.run import preflight, quality
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from persona_gen.run.manifest import (
    Failure,
    Manifest,
    StageRecord,
    load_or_create,
    refuse_deterministic_retry,
)
from persona_gen.run.preflight import DONE_MARKER, Candidates
from persona_gen.run.progress import StageProgress, Ticker
from persona_gen.run.scan import tally
from persona_gen.run.status import stage_status
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

DATASET_COLUMNS = ("pair_id", "persona_id", "prompt_id", "persona", "instruction", "original",
                   "critique", "data", "question_type")


@dataclass
class RunSummary:
    run: RunRef
    phases: list[str]
    stages: dict[str, StageRecord]
    seconds: float
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def base_uri(self) -> str:
        return self.run.uri

    @property
    def dataset_uri(self) -> str:
        return self.run.child(R.stage("revision").writes).uri


def phases_to_run(until: R.Phase = "pairs", only: R.Phase | None = None) -> list[R.Phase]:
    if only is not None:
        return [only]
    return list(R.PHASES[: R.PHASES.index(until) + 1])


class Attempt:
    """One attempt at a run: its config, address, manifest, progress and engines."""

    def __init__(self, cfg: RunConfig, run: RunRef, manifest: Manifest,
                 bars: StageProgress, stack: ExitStack, candidates: Candidates | None) -> None:
        self.cfg, self.run, self.manifest, self.bars = cfg, run, manifest, bars
        self.recipe = R.recipe(cfg)
        self.candidates = candidates
        """Prompt candidates read by the checks before the manifest was written."""
        self._stack = stack
        self._hosts: EngineHosts | None = None
        self._save_lock = threading.Lock()
        """The heartbeat thread and the phases both save the manifest."""
        self._earlier_losses = list(manifest.node_losses)

    @property
    def seed(self) -> int:
        return self.cfg.run.seed

    @property
    def hosts(self) -> EngineHosts:
        """Ray and the engine actors, started on first use (the plan phase needs neither)."""
        if self._hosts is None:
            self._stack.enter_context(ray_session(self.cfg.pipeline))
            self._hosts = self._stack.enter_context(
                EngineHosts(self.cfg.pipeline, self.run.run_id, s3=self.cfg.storage,
                            on_settings=self.record_engine_settings,
                            on_capacity=self.record_capacity))
        return self._hosts

    def record_engine_settings(self, model: str, line: dict[str, Any]) -> None:
        """A model's engines started: what they run with goes in the manifest at once."""
        self.manifest.engine_settings[model] = line
        self.save()

    def record_capacity(self, losses: list[NodeLoss], alive: int, planned: int) -> None:
        """The node watch saw a node lost or the engines alive change: in the manifest at
        once, so `status` shows it while the run waits."""
        p = self.cfg.pipeline
        self.manifest.engines = {"alive": alive, "planned": planned,
                                 "at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
        self.manifest.node_losses = self._earlier_losses + [
            {**asdict(loss), "attempt": self.manifest.attempts,
             "node_loss_budget": p.node_loss_budget, "capacity_wait_s": p.capacity_wait_s}
            for loss in losses]
        self.save()

    def complete(self, folder: str) -> bool:
        return objects.exists(self.run.child(folder, DONE_MARKER))

    def write_blocks(self, folder: str, table: pa.Table) -> int:
        """Fixed blocks (`part-00000.parquet`, ...) committed one by one, then the marker:
        a folder killed half-way is not taken for complete, and is rewritten the same."""
        size = self.cfg.pipeline.batch_size
        n = max(1, math.ceil(table.num_rows / size))
        for i in range(n):
            objects.write_table_atomic(self.run.child(folder, f"part-{i:05d}.parquet"),
                                       table.slice(i * size, size))
        objects.write_json_atomic(self.run.child(folder, DONE_MARKER),
                                  {"blocks": n, "rows": table.num_rows})
        return n

    def commit_table(self, path: str, table: pa.Table, stats_path: str, count: str,
                     stats: dict[str, Any]) -> None:
        """A phase's table with its stats: the stats first, the table last (its presence
        marks the phase done), then the counts in the manifest."""
        objects.write_json_atomic(self.run.child(stats_path), stats)
        objects.write_table_atomic(self.run.child(path), table)
        self.manifest.counts[count] = stats
        self.refresh()

    def save(self) -> None:
        with self._save_lock:
            self.manifest.save(self.run)

    def tick(self) -> None:
        """Every run.progress_every_s: a progress line per active stage, and the heartbeat."""
        self.bars.log_lines()
        self.save()

    def refresh(self) -> None:
        """Every enabled stage's counts in the manifest, from storage (the truth after
        resumes and kills), never from memory."""
        stages: dict[str, StageRecord] = {}
        for s in self.recipe:
            st = stage_status(self.run, s)
            old = self.manifest.stages.get(s.name, StageRecord())
            prompt, output = f"{s.name}_prompt_tokens", f"{s.name}_output_tokens"
            reasoning = f"{s.name}_reasoning_tokens"  # 0 where the stage does not think
            tokens = tally(self.run.child(s.writes), sums=(prompt, output, reasoning)).sums
            stages[s.name] = StageRecord(
                planned=st.planned or 0, done=st.done, errors=st.errors,
                prompt_tokens=tokens[prompt], output_tokens=tokens[output],
                reasoning_tokens=tokens[reasoning], seconds=old.seconds)
        self.manifest.stages = stages
        quality.record(self.manifest.counts, self.run, self.recipe)  # persona_gen.run.quality
        self.save()

    def on_result(self, res: BlockResult) -> None:
        """Model time of newly committed steps (counts and tokens come from storage)."""
        self.bars.on_result(res)
        for st in res.steps:
            if not st.resumed and st.stage in self.manifest.stages:
                self.manifest.stages[st.stage].seconds += st.seconds

    def run_chain(self, chain: Chain) -> None:
        for step in chain.steps:
            st = stage_status(self.run, self.recipe.get(step.name))
            self.bars.plan(step.name, st.planned or st.done, st.done, st.errors)
        run_chains([chain], self.run, self.cfg.pipeline, on_result=self.on_result,
                   hosts=self.hosts)
        self.refresh()
        self.close_bars([step.name for step in chain.steps])

    def close_bars(self, names: list[str]) -> None:
        """Their work is over: final counts from the manifest (just refreshed), no more lines."""
        for name in names:
            rec = self.manifest.stages.get(name)
            if rec is not None:
                self.bars.close(name, rec.planned or rec.done, rec.done, rec.errors)


# ---- phases --------------------------------------------------------------------------------

PhaseRunner = Callable[[Attempt], None]
_RUNNERS: dict[str, PhaseRunner] = {}


def runs(phase: R.Phase) -> Callable[[PhaseRunner], PhaseRunner]:
    """Register the code of one phase of the recipe's graph (R.GRAPH)."""
    def register(fn: PhaseRunner) -> PhaseRunner:
        _RUNNERS[phase] = fn
        return fn

    return register


def _bound(attempt: Attempt, built: dict[str, ModelStage], name: str) -> Bound | None:
    """A built stage with the engine that runs it (a stand-in: the engines live in the
    attempt's engine hosts), or None when the config disables it."""
    from persona_gen.pipeline.runner import EngineRef

    stage = built.get(name)
    return None if stage is None else Bound(stage, EngineRef(R.stage(name).model(attempt.cfg)))


@runs("personas")
def personas_phase(attempt: Attempt) -> None:
    """The census draw, then persona slots through the persona stages: with `drop`, more of
    the draw in draw order until personas.n are kept; with `replace`, fresh draws per slot.
    Then the kept personas' census fidelity (personas/fidelity.json)."""
    from persona_gen.personas.build import build_personas
    from persona_gen.run.draws import DrawOrder, census_sampler, resampler

    if objects.exists(attempt.run.child(R.PERSONAS)):
        return
    cfg = attempt.cfg
    draws = DrawOrder(cfg, census_sampler)
    census = draws.next(cfg.personas.n)
    built = R.built(cfg, "personas")
    table, stats = build_personas(
        census, cfg.personas, cfg.run.seed, resampler(cfg, census_sampler),
        enrich=_bound(attempt, built, "enrich"),
        consistency=_bound(attempt, built, "consistency"), runner=_runner(attempt),
        keep=cfg.personas.n, more=draws.next)
    # Everyone drawn, in draw order (with `replace`, the first draw; its redraws are
    # independent draws, recorded on the personas themselves).
    objects.write_table_atomic(attempt.run.child(R.CENSUS_DRAW), draws.table())
    if cfg.census.fidelity.report:
        _write_fidelity(attempt, draws.table(), table)
    attempt.commit_table(R.PERSONAS, table, R.PERSONA_STATS, "personas",
                         stats.model_dump(mode="json"))
    attempt.close_bars([s.name for s in attempt.recipe.in_phase("personas")])


def _write_fidelity(attempt: Attempt, draw: pa.Table, personas: pa.Table) -> None:
    """The kept personas against the weighted census population they were drawn from
    (persona_gen.census.fidelity), where status and the dataset card read it. Not
    computable (a census file gone unreadable): a warning, and the card computes it later."""
    from persona_gen.census.fidelity import fidelity_report, kept_sample
    from persona_gen.errors import UserError

    c = attempt.cfg.census
    try:
        report = fidelity_report(
            c.sources, kept_sample(draw, personas), sample_name="kept personas",
            threshold=c.fidelity.threshold, noise_draws=c.fidelity.noise_draws,
            block_bytes=c.block_mb << 20, s3=attempt.cfg.storage)
    except (UserError, OSError) as exc:
        get_logger(stage="personas").warning("fidelity_not_computed", reason=one_line(exc))
        return
    objects.write_json_atomic(attempt.run.child(R.FIDELITY), report.model_dump(mode="json"))


def _runner(attempt: Attempt) -> PipelineRunner:
    def folders(name: str) -> tuple[str, str]:
        s = R.stage(name)
        return s.reads, s.writes

    def on_plan(stage: str, rows: int) -> None:
        st = stage_status(attempt.run, R.stage(stage))
        attempt.bars.plan(stage, st.planned or rows, st.done, st.errors)

    return PipelineRunner(attempt.run, folders, attempt.cfg.pipeline, attempt.hosts,
                          ("persona_id",), on_plan=on_plan, on_result=attempt.on_result)


def prompt_candidates(cfg: RunConfig) -> Candidates:
    """The prompt file through the rule filters and `prompts.limit` (no model)."""
    from persona_gen.prompts.build import select_prompts

    sel = select_prompts(cfg.prompts, None, s3=cfg.storage, seed=cfg.run.seed)
    return sel.kept, sel.stats.model_dump(mode="json")


@runs("prompts")
def prompts_phase(attempt: Attempt) -> None:
    """Candidates -> controversy -> originals -> topics and split: prompts.parquet."""
    if objects.exists(attempt.run.child(R.PROMPTS)):
        return
    if not attempt.complete(R.PROMPT_CANDIDATES):
        kept, filters = attempt.candidates or prompt_candidates(attempt.cfg)
        attempt.write_blocks(R.PROMPT_CANDIDATES, kept)
        attempt.manifest.counts["prompt_filters"] = filters
        attempt.save()
    attempt.run_chain(R.chain(attempt.cfg, "prompts"))
    _finalize_prompts(attempt)


def _finalize_prompts(attempt: Attempt) -> None:
    from persona_gen.prompts.build import finalize_prompts
    from persona_gen.prompts.stats import PromptStats, StepCount

    filters = PromptStats.model_validate(attempt.manifest.counts["prompt_filters"])
    original = R.stage("original")
    answered = objects.read_table(attempt.run.child(original.writes),
                                  columns=["prompt_id", "text", "topic"])
    # The model steps, counted from storage like everything else.
    for s in attempt.recipe.in_phase("prompts"):
        st = stage_status(attempt.run, s)
        loc = attempt.run.child(s.writes)
        if s.keep_if:
            column, values = s.keep_if
            n = tally(loc, equal={column: values[0]}).equal[column]
        else:
            n = tally(loc).rows
        filters.steps.append(StepCount(name=s.name, seen=st.planned or 0, kept=n,
                                       rejected=(st.planned or 0) - n, errors=st.errors))
    classifier = attempt.recipe.get("controversy")
    filters.classifier = classifier.model(attempt.cfg) if classifier else None
    table, stats = finalize_prompts(answered, attempt.cfg.prompts, attempt.seed, filters)
    attempt.commit_table(R.PROMPTS, table, R.PROMPT_STATS, "prompts",
                         stats.model_dump(mode="json"))


@runs("plan")
def plan_phase(attempt: Attempt) -> None:
    from persona_gen.plan.assign import build_plan

    if attempt.complete(R.PLAN):
        return
    personas = objects.read_table(attempt.run.child(R.PERSONAS), columns=["persona_id"])
    prompts = objects.read_table(attempt.run.child(R.PROMPTS), columns=["prompt_id", "split"])
    split = prompts.column("split")
    train = pc.filter(prompts.column("prompt_id"), pc.equal(split, "train")).to_pylist()
    heldout = pc.filter(prompts.column("prompt_id"), pc.equal(split, "heldout")).to_pylist()
    plan = build_plan(personas.column("persona_id").to_pylist(), train, heldout,
                      attempt.cfg.plan, attempt.seed)
    attempt.write_blocks(R.PLAN, plan)
    qtype = plan.column("question_type")
    attempt.manifest.counts["plan"] = {
        "pairs": plan.num_rows,
        "train": int(pc.sum(pc.equal(qtype, "train")).as_py() or 0),
        "test": int(pc.sum(pc.equal(qtype, "test")).as_py() or 0),
    }
    attempt.refresh()


@runs("pairs")
def pairs_phase(attempt: Attempt) -> None:
    attempt.run_chain(R.chain(attempt.cfg, "pairs"))


if set(_RUNNERS) != set(R.PHASES):
    raise AssertionError(f"phases with no code, or code with no phase: {set(_RUNNERS) ^ set(R.PHASES)}")


# ---- an attempt ----------------------------------------------------------------------------

def execute(cfg: RunConfig, run: RunRef, *, until: R.Phase = "pairs",
            only: R.Phase | None = None, progress: bool | None = None,
            allow_template_change: bool = False) -> RunSummary:
    """Run (or resume) the run's phases up to `until` (or `only` one); returns the summary
    `persona-gen run` prints.

    Raises FailedRowsError (after everything is committed) when a stage's error rows are
    over pipeline.max_error_fraction. Whatever ends the attempt with an error is recorded
    in the manifest: status `failed` and the reason, where storage can be reached.
    """
    configure(level=cfg.run.log_level)
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(
        update={"run_id": run.run_id, "output": run.root_uri})})
    bind_run(run.run_id)
    log = get_logger(stage="run")
    phases = phases_to_run(until, only)
    refuse_deterministic_retry(run, cfg.model_dump(mode="json"))  # before anything starts
    # Every check before anything starts; a failure raises, listing all of them.
    candidates = preflight.before_run(cfg, run, phases,
                                      allow_template_change=allow_template_change).candidates
    started = time.perf_counter()
    manifest = load_or_create(run, cfg, allow_template_change=allow_template_change)
    log.info("run_start", base=run.uri, attempt=manifest.attempts, phases=phases)
    attempt: Attempt | None = None
    try:
        with StageProgress(progress) as bars, ExitStack() as stack:
            attempt = Attempt(cfg, run, manifest, bars, stack, candidates)
            stack.enter_context(Ticker(cfg.run.progress_every_s, attempt.tick))
            attempt.refresh()
            for phase in phases:
                log.info("phase_start", phase=phase)
                _RUNNERS[phase](attempt)
        _remove_temporaries(run)
        done = sorted(set(manifest.phases) | set(phases), key=R.PHASES.index)
        manifest.phases = done
        manifest.status = "complete" if done == list(R.PHASES) else "partial"
        manifest.models = _models(cfg)
        attempt.refresh()
        summary = RunSummary(run=run, phases=done, stages=manifest.stages,
                             seconds=time.perf_counter() - started, example=_example(run))
        check_error_rates(manifest.stages, cfg.pipeline.max_error_fraction, summary)
    except BaseException as exc:
        verdict = attempt._hosts.verdict if attempt is not None and attempt._hosts else None
        if isinstance(exc, KeyboardInterrupt) and verdict is not None:
            # The node watch interrupted the driver: capacity was lost (exit 5), not Ctrl-C.
            _record_failure(run, manifest, verdict, attempt)
            raise verdict from None
        _record_failure(run, manifest, exc, attempt)
        raise
    log.info("run_complete", seconds=round(summary.seconds, 1), phases=done,
             pairs=manifest.stages.get("revision", StageRecord()).done)
    return summary


def check_error_rates(stages: dict[str, StageRecord], limit: float,
                      summary: RunSummary | None = None) -> None:
    """FailedRowsError naming the worst stage whose committed error rows are over `limit`
    (a share of the rows it committed, good and failed)."""
    rates = {name: rec.errors / (rec.done + rec.errors)
             for name, rec in stages.items() if rec.done + rec.errors}
    over = {name: rate for name, rate in rates.items() if rate > limit}
    if not over:
        return
    name = max(over, key=over.__getitem__)
    rec = stages[name]
    err = FailedRowsError(
        f"stage {name}: {rec.errors:,} of {rec.done + rec.errors:,} rows failed "
        f"({over[name]:.1%}), over pipeline.max_error_fraction={limit:g}; every good row is "
        f"committed (see errors/{name}/)")
    err.summary = summary  # type: ignore[attr-defined]  # for callers that report it anyway
    raise err


def _record_failure(run: RunRef, manifest: Manifest, exc: BaseException,
                    attempt: Attempt | None) -> None:
    """status `failed` with the reason, so `status` tells a dead run from a live one. If
    storage is what failed, this write may fail too: then the heartbeat goes stale."""
    code = exit_code_for(exc)
    manifest.status = "failed"
    manifest.failure = Failure(reason=one_line(exc), exit_code=EXIT_BUG if code is None else code,
                               at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    try:
        if attempt is not None:
            attempt.save()
        else:
            manifest.save(run)
    except Exception as save_exc:
        get_logger(stage="run").error("manifest_not_updated", reason=one_line(save_exc),
                                      note="status will show this run as stale")


def _remove_temporaries(run: RunRef) -> None:
    """Temporaries of writers killed mid-write (local files, Azure blobs; S3 and GCS
    uploads leave none): no writer of this run is left by now."""
    objects.remove_temporaries(run.base)


def _models(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    from persona_gen.engines.registry import discover

    registry = discover()
    return {n: {**registry[n].spec.model_dump(mode="json"), "registry_file": registry[n].path}
            for n in R.models(cfg) if n in registry}


def _example(run: RunRef) -> dict[str, Any]:
    loc = run.child(R.stage("revision").writes)
    files = objects.list_files(loc, ".parquet")
    if not files:
        return {}
    t = objects.read_table(loc.at(files[0]))
    if t.num_rows == 0:
        return {}
    row = t.slice(0, 1).to_pylist()[0]
    return {k: row.get(k) for k in DATASET_COLUMNS}
