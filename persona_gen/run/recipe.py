"""The recipe of a run: every table and every model stage of the job, declared once.

    census draw -> persona slots --(enrich, consistency)--> personas/personas.parquet
    prompt file -> prompts/candidates --(controversy, original)--> prompts/prompts.parquet
    personas x prompts -> plan --(critique, revision, verify)--> feedback/pairs

This is the method of PERSONA (arXiv 2407.17387): personas from census data,
value-laden prompts, and Direct Principle Feedback pairs judged by a role-playing model.
The job's phases, the manifest, `status`, progress, `plan-cost` and `bench` all read the
declarations below; none keeps a list of its own. A new model stage is one `Stage` value
here (plus its class, which declares its prompt, output columns and parser).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from persona_gen.bench.layout import FOLDER as BENCH_FOLDER
from persona_gen.pipeline.chain import Chain, Lookup, Step
from persona_gen.prompts.classify import CONTROVERSIAL, LABEL_COLUMN

if TYPE_CHECKING:
    from persona_gen.config.run import RunConfig
    from persona_gen.pipeline.stage import ModelStage

Phase = Literal["personas", "prompts", "plan", "pairs", "bench"]
PHASES: tuple[Phase, ...] = ("personas", "prompts", "plan", "pairs")
"""The job's phases in the order it runs them; `run --until PHASE` stops after one.
PERSONA Bench ("bench") runs later, on a finished run, with `persona-gen bench run`."""
Role = Literal["enricher", "judge", "classifier", "generator"]
Unit = Literal["persona_attempt", "source_prompt", "prompt", "pair", "request", "sample"]
"""What one call of a stage is made for (plan-cost counts calls by it)."""

# ---- tables the driver computes (no model) ------------------------------------------------
CENSUS_DRAW = "personas/census.parquet"
"""The weighted census draw the personas start from."""
PERSONAS = "personas/personas.parquet"
PERSONA_STATS = "personas/stats.json"
"""What the persona build kept, rejected and resampled (also in the manifest)."""
PROMPT_CANDIDATES = "prompts/candidates"
"""Prompts that passed the rule filters (and `prompts.limit`), in blocks."""
PROMPTS = "prompts/prompts.parquet"
"""Prompts with an original answer, with topic and train/held-out split."""
PROMPT_STATS = "prompts/stats.json"
"""Rows each filter and model step kept and rejected (also in the manifest)."""
PLAN = "plan"
"""pair_id, persona_id, prompt_id, question_type, in blocks grouped by persona."""
BENCH = BENCH_FOLDER


def _section(cfg: RunConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@dataclass(frozen=True)
class Stage:
    """One model stage of the job: what it reads and writes, with which model, and when.

    The stage's class (`kind`) declares the rest: its name, id column, the columns it
    needs and adds, its prompt template, output schema or choices, and parser.
    """

    kind: type
    phase: Phase
    role: Role
    model_key: str
    """Dotted config key naming the registry model, e.g. 'feedback.model'."""
    reads: str
    """Folder of the rows the stage is planned over."""
    writes: str
    """Folder its committed blocks go to (one Parquet file per block)."""
    unit: Unit
    max_tokens_key: str | None
    """Dotted config key of its output token cap (None: fixed by the stage)."""
    build: Callable[[RunConfig], ModelStage]
    retry_max_tokens_key: str | None = None
    """Dotted config key of the cap of its one retry for rows cut by length (None or 0:
    no retry)."""
    enabled_key: str | None = None
    """Dotted config key that must be truthy for the stage to run (None: always runs)."""
    reads_where: tuple[str, str] | None = None
    """Plan only input rows whose column has this value (rows an earlier filter kept)."""
    keep_if: tuple[str, tuple[str, ...]] | None = None
    """Only rows whose column has one of these values go on to the next stage."""
    drop: tuple[str, ...] = ()
    """Columns not stored in its blocks (joined again by the chain's lookups)."""
    persona_prefix: bool = False
    """Requests start with the persona block, so one persona's requests share a prefix."""

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def id_column(self) -> str:
        return self.kind.id_column

    @property
    def needs(self) -> tuple[str, ...]:
        return self.kind.needs

    @property
    def adds(self) -> tuple[str, ...]:
        return self.kind.adds()

    def enabled(self, cfg: RunConfig) -> bool:
        return self.enabled_key is None or bool(_section(cfg, self.enabled_key))

    def model(self, cfg: RunConfig) -> str:
        return _section(cfg, self.model_key)

    def max_tokens(self, cfg: RunConfig) -> int | None:
        return None if self.max_tokens_key is None else _section(cfg, self.max_tokens_key)

    def retry_max_tokens(self, cfg: RunConfig) -> int | None:
        key = self.retry_max_tokens_key
        return None if key is None else (_section(cfg, key) or None)


def _stage_classes() -> dict[str, type]:
    # Imported here, not at module level: the method packages import the pipeline, and the
    # recipe is read by light commands (status) that need no stage code until they build.
    from persona_gen.bench.answer import AnswerStage
    from persona_gen.bench.judge import JudgeStage as BenchJudgeStage
    from persona_gen.feedback.stages import CritiqueStage, OriginalStage, RevisionStage, VerifyStage
    from persona_gen.personas.enrich import EnrichStage
    from persona_gen.personas.judge import JudgeStage
    from persona_gen.prompts.classify import ControversyStage

    return {c.name: c for c in (EnrichStage, JudgeStage, ControversyStage, OriginalStage,
                                CritiqueStage, RevisionStage, VerifyStage, AnswerStage,
                                BenchJudgeStage)}


def _declare() -> tuple[Stage, ...]:
    k = _stage_classes()
    from persona_gen.bench import run as bench_run
    from persona_gen.feedback import stages as dpf
    from persona_gen.prompts import classify

    controversy = Stage(
        k["controversy"], "prompts", "classifier", "prompts.classifier_model",
        reads=PROMPT_CANDIDATES, writes="prompts/classified", unit="source_prompt",
        max_tokens_key=None, enabled_key="prompts.classifier_model",
        keep_if=(LABEL_COLUMN, (CONTROVERSIAL,)),
        build=lambda c: classify.for_model(c.prompts.classifier_model))
    original = Stage(
        k["original"], "prompts", "generator", "feedback.model",
        reads=controversy.writes, writes="feedback/originals", unit="prompt",
        max_tokens_key="feedback.original_max_tokens",
        retry_max_tokens_key="feedback.original_retry_max_tokens",
        reads_where=(LABEL_COLUMN, CONTROVERSIAL),
        build=lambda c: k["original"](dpf.sampling(c, "original"),
                                      dpf.retry_limit(c, "original")))
    return (
        Stage(k["enrich"], "personas", "enricher", "personas.enrich_model",
              reads="personas/enrich_input", writes="personas/enrich", unit="persona_attempt",
              max_tokens_key="personas.enrich_max_tokens",
              retry_max_tokens_key="personas.enrich_retry_max_tokens",
              build=lambda c: k["enrich"].from_config(c.personas, c.run.seed)),
        Stage(k["consistency"], "personas", "judge", "personas.judge_model",
              reads="personas/consistency_input", writes="personas/consistency",
              unit="persona_attempt", max_tokens_key="personas.judge_max_tokens",
              retry_max_tokens_key="personas.judge_retry_max_tokens",
              enabled_key="personas.model_consistency_check",
              build=lambda c: k["consistency"].from_config(c.personas, c.run.seed)),
        controversy,
        original,
        Stage(k["critique"], "pairs", "generator", "feedback.model",
              reads=PLAN, writes="feedback/critiques", unit="pair",
              max_tokens_key="feedback.critique_max_tokens",
              retry_max_tokens_key="feedback.critique_retry_max_tokens",
              drop=("persona",), persona_prefix=True,
              build=lambda c: k["critique"](dpf.sampling(c, "critique"),
                                            dpf.retry_limit(c, "critique"))),
        Stage(k["revision"], "pairs", "generator", "feedback.model",
              reads=PLAN, writes="feedback/pairs", unit="pair",
              max_tokens_key="feedback.revision_max_tokens",
              retry_max_tokens_key="feedback.revision_retry_max_tokens", persona_prefix=True,
              build=lambda c: k["revision"](dpf.sampling(c, "revision"),
                                            dpf.retry_limit(c, "revision"))),
        Stage(k["verify"], "pairs", "judge", "feedback.judge_model",
              reads=PLAN, writes="feedback/verification", unit="pair",
              max_tokens_key="feedback.verify_max_tokens",
              retry_max_tokens_key="feedback.verify_retry_max_tokens",
              enabled_key="feedback.verify",
              drop=("persona", "instruction", "original", "critique", "data"),
              persona_prefix=True,
              build=lambda c: k["verify"](dpf.judge_sampling(c), c.feedback.judge_model,
                                          dpf.retry_limit(c, "verify"))),
        Stage(k["bench_answer"], "bench", "generator", "bench.models",
              reads=f"{BENCH}/work/bench_answer_input", writes=f"{BENCH}/work/bench_answer",
              unit="request", max_tokens_key="bench.max_tokens",
              build=lambda c: bench_run.answer_stage(c.bench)),
        Stage(k["bench_judge"], "bench", "judge", "bench.judge_model",
              reads=f"{BENCH}/work/bench_judge_input", writes=f"{BENCH}/work/bench_judge",
              unit="sample", max_tokens_key="bench.judge_max_tokens",
              build=lambda c: bench_run.judge_stage(c.bench, c.run.seed)),
    )


_STAGES: tuple[Stage, ...] | None = None


def all_stages() -> tuple[Stage, ...]:
    """Every stage declaration, in the order the job runs them (bench stages last)."""
    global _STAGES
    if _STAGES is None:
        _STAGES = _declare()
    return _STAGES


def stage(name: str) -> Stage:
    for s in all_stages():
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r} in the recipe")


@dataclass(frozen=True)
class Recipe:
    """The stages one config enables, with their inputs resolved."""

    stages: tuple[Stage, ...]

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def get(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def in_phase(self, phase: Phase) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if s.phase == phase)


def recipe(cfg: RunConfig) -> Recipe:
    """The job's stages this config enables (bench stages are not part of the job).

    A disabled stage passes its input through: a stage that reads what a disabled stage
    writes reads that stage's input instead (no classifier: originals for every candidate).
    """
    declared = [s for s in all_stages() if s.phase != "bench"]
    off = {s.writes: s for s in declared if not s.enabled(cfg)}
    out = []
    for s in declared:
        if not s.enabled(cfg):
            continue
        while s.reads in off:
            skipped = off[s.reads]
            s = replace(s, reads=skipped.reads, reads_where=skipped.reads_where)
        out.append(s)
    return Recipe(tuple(out))


def models(cfg: RunConfig) -> list[str]:
    """Registry models the job's enabled stages use, sorted."""
    return sorted({s.model(cfg) for s in recipe(cfg)})


def chain(cfg: RunConfig, phase: Phase) -> Chain:
    """The pipeline chain of one phase's enabled stages over its input blocks.

    Pair blocks store ids only: the persona text, the question and the original answer
    are joined on from the run's tables when a block runs.
    """
    steps = tuple(
        Step(s.build(cfg), s.model(cfg), s.writes, id_column=s.id_column, drop=s.drop,
             keep_if=s.keep_if)
        for s in recipe(cfg).in_phase(phase)
    )
    if phase == "prompts":
        return Chain(phase, PROMPT_CANDIDATES, steps)
    originals = stage("original").writes
    lookups = (
        Lookup("persona", PERSONAS, "persona_id", "persona_text"),
        Lookup("instruction", PROMPTS, "prompt_id", "text"),
        Lookup("original", originals, "prompt_id", "original"),
        # Kept on every pair, so a pair whose rejected answer was cut off can be found.
        Lookup("original_finish_reason", originals, "prompt_id", "original_finish_reason"),
    )
    return Chain(phase, PLAN, steps, lookups)
