"""The recipe of a run: every table, phase and model stage, declared once.

    census draw -> persona slots --(enrich, consistency)--> personas/personas.parquet
    prompt file -> prompts/candidates --(controversy, original)--> prompts/prompts.parquet
    personas x prompts -> plan --(critique, revision, verify)--> feedback/pairs

This is the method of PERSONA (arXiv 2407.17387): personas from census data,
value-laden prompts, and Direct Principle Feedback pairs judged by a role-playing model.
The run's phases, the config's `stages` section, the manifest, `status`, progress,
`persona-gen cost` and `bench` all read the declarations below; none keeps a list of its own.

A new model stage is one `Stage` value in `_declare` (its kind: a `DeclaredStage` class, or
a `TextKind` for a stage that writes one text column) plus its default template,
`persona_gen/templates/<name>.jinja`. Every stage is built here, by `build(cfg, name)`, from
its resolved `StageSettings`; phases receive built stages and run them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from persona_gen.bench.answer import AnswerStage
from persona_gen.bench.judge import BenchJudgeStage
from persona_gen.bench.layout import FOLDER as BENCH_FOLDER
from persona_gen.bench.roleplay import RoleplayChoiceStage
from persona_gen.errors import ConfigError
from persona_gen.feedback.stages import CRITIQUE, ORIGINAL, REVISION, VerifyStage
from persona_gen.personas.consistency import ConsistencyStage
from persona_gen.personas.enrich import EnrichStage
from persona_gen.pipeline.chain import Chain, Lookup, Step
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.stage import ModelStage, StageKind
from persona_gen.pipeline.template import PromptTemplate
from persona_gen.pipeline.template import load as load_template
from persona_gen.prompts.classify import CONTROVERSIAL, LABEL_COLUMN, ControversyStage

if TYPE_CHECKING:
    from persona_gen.run.config import RunConfig

Phase = Literal["personas", "prompts", "plan", "pairs", "bench"]
Role = Literal["enricher", "judge", "classifier", "generator"]
Unit = Literal["persona_attempt", "source_prompt", "prompt", "pair", "request", "sample"]
"""What one call of a stage is made for (the cost plan counts calls by it)."""

# ---- tables the driver computes (no model) ------------------------------------------------
CENSUS_DRAW = "personas/census.parquet"
"""The weighted census draw the personas start from: everyone drawn, in draw order."""
FIDELITY = "personas/fidelity.json"
"""The kept personas' census fidelity (persona_gen.census.fidelity), written by the
personas phase; `census fidelity --sample <run>/personas/census.parquet` writes here too."""
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


@dataclass(frozen=True)
class PhaseStep:
    """One phase of the run: the table that marks it done and the tables it reads."""

    name: Phase
    makes: str
    needs: tuple[str, ...] = ()


GRAPH: tuple[PhaseStep, ...] = (
    PhaseStep("personas", PERSONAS),
    PhaseStep("prompts", PROMPTS),
    PhaseStep("plan", PLAN, needs=(PERSONAS, PROMPTS)),
    PhaseStep("pairs", "feedback/pairs", needs=(PLAN,)),
)
"""The run's phases in the order it runs them; `run --until PHASE` stops after one.
PERSONA Bench ("bench") runs later, on a finished run, with `persona-gen bench run`."""
PHASES: tuple[Phase, ...] = tuple(p.name for p in GRAPH)


def phase(name: str) -> PhaseStep:
    return next(p for p in GRAPH if p.name == name)


def maker(table: str) -> Phase:
    """The phase that writes a table."""
    return next(p.name for p in GRAPH if p.makes == table)


@dataclass(frozen=True)
class Stage:
    """One model stage of the run: what it reads and writes, and when.

    Its kind declares the rest: its name, id column, the columns it needs and adds, its
    template's variables, its settings type and parser. Its settings come from the config
    (`stages.<name>`), resolved over `stages.defaults` and `built_in`.
    """

    kind: StageKind
    phase: Phase
    role: Role
    reads: str
    """Folder of the rows the stage is planned over."""
    writes: str
    """Folder its committed blocks go to (one Parquet file per block)."""
    unit: Unit
    built_in: dict[str, Any] = field(default_factory=dict)
    """Its own defaults where they differ from StageSettings' (a judge is greedy, ...)."""
    reads_where: tuple[str, str] | None = None
    """Plan only input rows whose column has this value (rows an earlier filter kept)."""
    keep_if: tuple[str, tuple[str, ...]] | None = None
    """Only rows whose column has one of these values go on to the next stage."""
    drop: tuple[str, ...] = ()
    """Columns not stored in its blocks (joined again by the chain's lookups)."""
    persona_prefix: bool = False
    """Requests start with the persona block, so one persona's requests share a prefix."""
    models_from: str | None = None
    """The key listing the models it runs, when it runs several rather than one of its own
    (the bench's models under test; the human study's role-players)."""

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

    @property
    def model_key(self) -> str:
        """The config key naming its model (for messages)."""
        return self.models_from or f"stages.{self.name}.model"

    def settings(self, cfg: RunConfig) -> StageSettings:
        """Its settings, every field filled (own value, stages.defaults, built-in)."""
        own: StageSettings = getattr(cfg.stages, self.name)
        return own.resolve(cfg.stages.defaults, self.built_in)

    def enabled(self, cfg: RunConfig) -> bool:
        return bool(self.settings(cfg).enabled)

    def model(self, cfg: RunConfig) -> str:
        if self.models_from:
            raise ValueError(f"stage {self.name} runs every model of {self.models_from}")
        return str(self.settings(cfg).model)

    def max_tokens(self, cfg: RunConfig) -> int:
        return int(self.settings(cfg).max_tokens or 0)

    def retry_max_tokens(self, cfg: RunConfig) -> int | None:
        return self.settings(cfg).retry_limit()

    def template(self, cfg: RunConfig) -> PromptTemplate | None:
        """The config's template for it (checked), or None for the shipped default."""
        value = self.settings(cfg).template
        if value is None:
            return None
        where = f"stages.{self.name}.template"
        return load_template(value, where).check(self.kind.variables, where)

    def build(self, cfg: RunConfig) -> ModelStage:
        """The stage, ready to run: its one constructor, from its resolved settings."""
        settings = self.settings(cfg)
        stage = self.kind.build(settings, self.template(cfg), cfg.run.seed)
        thinking = settings.thinking_value()
        if hasattr(stage, "thinking"):
            stage = replace(stage, thinking=thinking)  # type: ignore[type-var]
        elif thinking.on:
            raise ConfigError("this stage has no thinking switch (its modes ask for reasoning "
                              "where the method wants it)", source=f"stages.{self.name}.thinking")
        return stage

def _declare() -> tuple[Stage, ...]:
    greedy = {"temperature": 0.0}
    controversy = Stage(
        ControversyStage, "prompts", "classifier", reads=PROMPT_CANDIDATES,
        writes="prompts/classified", unit="source_prompt",
        built_in={**greedy, "max_tokens": 32, "retry_max_tokens": 64},
        keep_if=(LABEL_COLUMN, (CONTROVERSIAL,)))
    return (
        Stage(EnrichStage, "personas", "enricher", reads="personas/enrich_input",
              writes="personas/enrich", unit="persona_attempt",
              built_in={"temperature": 0.8, "max_tokens": 400}),
        Stage(ConsistencyStage, "personas", "judge", reads="personas/consistency_input",
              writes="personas/consistency", unit="persona_attempt",
              built_in={**greedy, "max_tokens": 96}),
        controversy,
        Stage(ORIGINAL, "prompts", "generator", reads=controversy.writes,
              writes="feedback/originals", unit="prompt",
              reads_where=(LABEL_COLUMN, CONTROVERSIAL)),
        Stage(CRITIQUE, "pairs", "generator", reads=PLAN, writes="feedback/critiques",
              unit="pair", drop=("persona",), persona_prefix=True),
        Stage(REVISION, "pairs", "generator", reads=PLAN, writes="feedback/pairs", unit="pair",
              persona_prefix=True),
        Stage(VerifyStage, "pairs", "judge", reads=PLAN, writes="feedback/verification",
              unit="pair", built_in={**greedy, "max_tokens": 96},
              drop=("persona", "instruction", "original", "critique", "data"),
              persona_prefix=True),
        Stage(AnswerStage, "bench", "generator", reads=f"{BENCH}/work/bench_answer_input",
              writes=f"{BENCH}/work/bench_answer", unit="request",
              built_in={"retry_max_tokens": 0}, models_from="bench.models",
              persona_prefix=True),
        Stage(BenchJudgeStage, "bench", "judge", reads=f"{BENCH}/work/bench_judge_input",
              writes=f"{BENCH}/work/bench_judge", unit="sample",
              built_in={**greedy, "max_tokens": 384, "retry_max_tokens": 0},
              persona_prefix=True),
        Stage(RoleplayChoiceStage, "bench", "judge", reads=f"{BENCH}/human/items",
              writes=f"{BENCH}/human/roleplay", unit="sample",
              built_in={**greedy, "max_tokens": 4, "retry_max_tokens": 0},
              models_from="bench roleplay --model", persona_prefix=True),
    )


_STAGES: tuple[Stage, ...] | None = None


def all_stages() -> tuple[Stage, ...]:
    """Every stage declaration, in the order a run runs them (bench stages last)."""
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
    """The run's stages this config enables (bench stages are not part of it).

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
    """Registry models the run's enabled stages use, sorted."""
    return sorted({s.model(cfg) for s in recipe(cfg)})


def settings(cfg: RunConfig, name: str) -> StageSettings:
    """A stage's resolved settings: what the run builds it from and the cost plan plans with."""
    return stage(name).settings(cfg)


def build(cfg: RunConfig, name: str) -> ModelStage:
    return stage(name).build(cfg)


def built(cfg: RunConfig, phase_name: Phase) -> dict[str, ModelStage]:
    """Every enabled stage of a phase, built (bench: both of its stages)."""
    stages = all_stages() if phase_name == "bench" else recipe(cfg).stages
    return {s.name: s.build(cfg) for s in stages if s.phase == phase_name and s.enabled(cfg)}


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
