"""A model stage: rows -> chat requests -> engine -> rows with result columns.

Every language-model step (enrichment, consistency judge, prompt classifier, original,
critique, revision, verification, bench answers, bench judge) is a `ModelStage`. The same
object runs in-process (`run_in_process`, for small runs and tests) and inside Ray Data
actors (persona_gen.pipeline), so stage logic never knows where it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import pyarrow as pa

from persona_gen.engines.base import ChatRequest, ChatResult, Engine, Message, Sampling, Thinking
from persona_gen.hashing import stable_seed
from persona_gen.pipeline.columns import with_columns
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.template import PromptTemplate, shipped


@runtime_checkable
class ModelStage(Protocol):
    name: str
    """Short stage name, used in logs, errors/ and the manifest ('critique', 'enrich', ...)."""

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        """One request per row, in row order; request ids must be unique in the batch."""
        ...

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        """The batch with this stage's output columns added.

        Must add a string column `error` (null where the row succeeded) instead of raising
        for per-row failures such as unparseable output.
        """
        ...


Runner = Callable[[ModelStage, Engine, pa.Table], pa.Table]
"""(stage, engine, rows) -> rows with the stage's columns: `in_process(batch_size)`, or the
Ray Data pipeline (persona_gen.pipeline.runner.PipelineRunner)."""


@dataclass(frozen=True)
class Bound:
    """A built stage and the engine that runs it: what a phase receives to run."""

    stage: ModelStage
    engine: Engine


@runtime_checkable
class StageKind(Protocol):
    """What the recipe reads of a stage before building it: a `DeclaredStage` subclass (its
    class attributes) or a `TextKind` value. `build` is the one constructor signature."""

    @property
    def name(self) -> str: ...
    @property
    def id_column(self) -> str: ...
    @property
    def needs(self) -> tuple[str, ...]: ...
    @property
    def prompt_parts(self) -> tuple[str, ...]: ...
    @property
    def variables(self) -> tuple[str, ...]: ...
    @property
    def settings_type(self) -> type[StageSettings]: ...

    def adds(self) -> tuple[str, ...]: ...

    def build(self, settings: StageSettings, template: PromptTemplate, seed: int) -> ModelStage: ...


class OutputError(ValueError):
    """A model answer a stage cannot use; it becomes that row's `error`, never a crash."""


@dataclass(frozen=True)
class DeclaredStage:
    """A model stage declared as values, the one way every stage of a run is written.

    A subclass (a frozen dataclass) sets
      name        the stage's name (logs, errors/, manifest, the recipe)
      id_column   the column that identifies a row
      needs       the columns it reads
      variables   what its prompt template may use (`template_vars(row)` gives them)
      outputs     the columns its parser fills, with their Arrow types
      prompt_parts  what its prompt is made of, for sizing (system text is always there):
                  demographics, persona, prompt, original, critique, revision
    and writes `parse(row, result)` (the parser, raising OutputError). Its prompt is its
    template (`persona_gen/templates/<name>.jinja` unless the config names another) rendered
    with `template_vars(row)`. `json_schema()` or `choices()` constrain the output. Every row's
    sampling seed derives from the run seed, the stage and `row_key(row)` (the row's id
    unless the stage says otherwise), so a retried or resumed row samples the same way.
    The stage adds its outputs plus `<name>_prompt_tokens`, `<name>_output_tokens`,
    `<name>_finish_reason` (the engine's: 'stop', or 'length' when cut at max_tokens),
    `<name>_retried` and `error` ("<name>: <reason>"), typed as declared even when every
    row of a block failed.

    Truncation: a row whose answer was cut at max_tokens ('length') is asked once more with
    `retry_max_tokens` (same messages and seed, so the retry usually continues the same
    answer further). A row still cut after that is kept, and its `<name>_finish_reason`
    says 'length', so a dataset can filter or weigh it (a cut rejected answer would
    otherwise teach a preference for finished over cut-off text). Token counts add up both
    calls: they are what the model did.

    Thinking (`thinking`, off by default; engines.base.Thinking): every request carries
    it. A reasoning family's reasoning never reaches the stage's outputs (the engine takes
    it out of the answer). With thinking on, the stage also adds `<name>_reasoning` (the
    first sample's reasoning) and `<name>_reasoning_tokens` (the part of
    `<name>_output_tokens` spent reasoning); a row cut by length inside its reasoning has
    no answer and becomes an error.
    """

    name: ClassVar[str]
    id_column: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]
    variables: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[pa.Schema]
    prompt_parts: ClassVar[tuple[str, ...]] = ()
    settings_type: ClassVar[type[StageSettings]] = StageSettings
    sampling: Sampling = field(default_factory=Sampling)
    retry_max_tokens: int | None = None
    """Output cap of the one retry for rows cut by length; None: no retry."""
    template: PromptTemplate | None = None
    """None: the shipped default (`default_template()`)."""
    thinking: Thinking = field(default_factory=Thinking, kw_only=True)
    """Whether its requests let a reasoning model think (off: the paper's method has no
    reasoning step). `dataclasses.replace(stage, thinking=Thinking(on=True, budget=N))`."""

    @classmethod
    def build(cls, settings: StageSettings, template: PromptTemplate, seed: int) -> Any:
        """The stage from its resolved settings: the one constructor the recipe calls.
        Subclasses with settings of their own extend it."""
        return cls(sampling=settings.sampling(seed), retry_max_tokens=settings.retry_limit(),
                   template=template)

    @classmethod
    def adds(cls) -> tuple[str, ...]:
        return stage_adds(cls.name, cls.outputs)

    def default_template(self) -> PromptTemplate:
        return shipped(self.name)

    def prompt(self) -> PromptTemplate:
        return self.template or self.default_template()

    def reasoning_columns(self) -> tuple[str, ...]:
        """The columns thinking adds (none while it is off)."""
        if not self.thinking.on:
            return ()
        return (f"{self.name}_reasoning", f"{self.name}_reasoning_tokens")

    def row_key(self, row: dict[str, Any]) -> str:
        return str(row[self.id_column])

    def template_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        """The template's variables for one row (by default, the row's columns of the same
        names)."""
        return {v: row.get(v) for v in self.variables}

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return self.prompt().render(self.template_vars(row))

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any] | None:
        return None

    def choices(self) -> list[str] | None:
        return None

    def row_sampling(self, row: dict[str, Any]) -> Sampling:
        s = self.sampling
        if s.seed is None:
            return s
        return s.model_copy(update={"seed": stable_seed(s.seed, self.name, self.row_key(row))})

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        schema, choices = self.json_schema(), self.choices()
        return [
            ChatRequest(id=self.row_key(row), messages=self.messages(row),
                        sampling=self.row_sampling(row), json_schema=schema, choices=choices,
                        thinking=self.thinking)
            for row in batch.to_pylist()
        ]

    def retry_requests(self, requests: list[ChatRequest],
                       results: list[ChatResult]) -> list[tuple[int, ChatRequest]]:
        """(position, request with the larger cap) for every result cut by length."""
        limit = self.retry_max_tokens
        out = []
        for i, (req, res) in enumerate(zip(requests, results, strict=True)):
            if (limit and res.error is None and "length" in res.finish_reasons
                    and limit > req.sampling.max_tokens):
                out.append((i, req.model_copy(update={
                    "sampling": req.sampling.model_copy(update={"max_tokens": limit})})))
        return out

    def results(self, batch: pa.Table, results: list[ChatResult],
                retried: set[int] | None = None) -> pa.Table:
        values: dict[str, list[Any]] = {f.name: [] for f in self.outputs}
        errors: list[str | None] = []
        for row, res in zip(batch.to_pylist(), results, strict=True):
            parsed: dict[str, Any] = {}
            error = None if res.error is None else f"{self.name}: engine error: {res.error}"
            if error is None and res.reasoning is not None and not res.text.strip() and (
                    res.finish_reason == "length"):
                error = f"{self.name}: cut by length inside its reasoning, before any answer"
            if error is None:
                try:
                    parsed = self.parse(row, res)
                except OutputError as exc:
                    error = f"{self.name}: {exc}"
            for name, column in values.items():
                column.append(parsed.get(name))
            errors.append(error)
        columns: dict[str, pa.Array] = {
            f.name: pa.array(values[f.name], f.type) for f in self.outputs}
        columns[f"{self.name}_prompt_tokens"] = pa.array(
            [r.prompt_tokens for r in results], pa.int64())
        columns[f"{self.name}_output_tokens"] = pa.array(
            [r.output_tokens for r in results], pa.int64())
        columns[f"{self.name}_finish_reason"] = pa.array(
            [r.finish_reason for r in results], pa.string())
        columns[f"{self.name}_retried"] = pa.array(
            [i in (retried or ()) for i in range(len(results))], pa.bool_())
        if self.thinking.on:
            columns[f"{self.name}_reasoning"] = pa.array(
                [r.reasoning if r.error is None else None for r in results], pa.string())
            columns[f"{self.name}_reasoning_tokens"] = pa.array(
                [r.reasoning_tokens for r in results], pa.int64())
        columns["error"] = pa.array(errors, pa.string())
        return with_columns(batch, columns)


def stage_adds(name: str, outputs: pa.Schema) -> tuple[str, ...]:
    """The columns a declared stage adds: its outputs, then its bookkeeping columns."""
    return (*outputs.names, f"{name}_prompt_tokens", f"{name}_output_tokens",
            f"{name}_finish_reason", f"{name}_retried")


@dataclass(frozen=True)
class TextKind:
    """The declaration of a stage that writes one text column (the original answer, the
    critique, the revision): one value per stage, one class (`TextStage`) for all of them.
    Its template's variables are the columns it needs (its id aside)."""

    name: str
    output: str
    """The column it writes (the model's answer text)."""
    id_column: str
    needs: tuple[str, ...]
    prompt_parts: tuple[str, ...] = ()
    settings_type: ClassVar[type[StageSettings]] = StageSettings

    @property
    def outputs(self) -> pa.Schema:
        return pa.schema([(self.output, pa.string())])

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(c for c in self.needs if c != self.id_column)

    def adds(self) -> tuple[str, ...]:
        return stage_adds(self.name, self.outputs)

    def build(self, settings: StageSettings, template: PromptTemplate | None = None,
              seed: int | None = 0) -> TextStage:
        return TextStage(sampling=settings.sampling(seed), template=template, kind=self,
                         retry_max_tokens=settings.retry_limit())


@dataclass(frozen=True)
class TextStage(DeclaredStage):
    """A model stage whose answer is one text column, as its `TextKind` declares."""

    kind: TextKind | None = None

    def __post_init__(self) -> None:
        if self.kind is None:
            raise TypeError("TextStage needs its kind (a TextKind)")

    @property
    def _kind(self) -> TextKind:
        assert self.kind is not None
        return self.kind

    name = property(lambda self: self._kind.name)  # type: ignore[assignment]
    id_column = property(lambda self: self._kind.id_column)  # type: ignore[assignment]
    needs = property(lambda self: self._kind.needs)  # type: ignore[assignment]
    variables = property(lambda self: self._kind.variables)  # type: ignore[assignment]
    outputs = property(lambda self: self._kind.outputs)  # type: ignore[assignment]
    prompt_parts = property(lambda self: self._kind.prompt_parts)  # type: ignore[assignment]

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        return {self._kind.output: result.text}


def apply_stage(stage: ModelStage, engine: Engine, batch: pa.Table) -> pa.Table:
    """Run one batch through a stage with a given engine."""
    if batch.num_rows == 0:
        return stage.results(batch, [])
    reqs = stage.requests(batch)
    res = _generate(engine, reqs)
    if not isinstance(stage, DeclaredStage):
        return stage.results(batch, res)
    again = stage.retry_requests(reqs, res)
    if again:
        redone = _generate(engine, [r for _, r in again])
        for (i, _), new in zip(again, redone, strict=True):
            old = res[i]
            if new.error is not None:
                continue  # a failed retry leaves the cut answer (flagged 'length') in place
            # The retry's answer replaces the cut one; both calls' tokens were spent.
            res[i] = new.model_copy(update={
                "prompt_tokens": old.prompt_tokens + new.prompt_tokens,
                "output_tokens": old.output_tokens + new.output_tokens,
                "reasoning_tokens": old.reasoning_tokens + new.reasoning_tokens,
                "latency_s": old.latency_s + new.latency_s})
    return stage.results(batch, res, retried={i for i, _ in again})


def _generate(engine: Engine, reqs: list[ChatRequest]) -> list[ChatResult]:
    res = engine.generate(reqs)
    if len(res) != len(reqs):
        raise RuntimeError(f"engine {engine.name} returned {len(res)} results for {len(reqs)} requests")
    return res


def iter_batches(table: pa.Table, batch_size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)


def run_in_process(stage: ModelStage, engine: Engine, table: pa.Table, batch_size: int = 64) -> pa.Table:
    """Small runs and tests: the whole table through one engine in this process."""
    parts = [apply_stage(stage, engine, b) for b in iter_batches(table, batch_size)]
    if not parts:
        return apply_stage(stage, engine, table)
    return pa.concat_tables(parts, promote_options="default")


def in_process(batch_size: int = 64) -> Runner:
    """A `Runner` that calls the engine in this process, `batch_size` rows a call."""
    def run(stage: ModelStage, engine: Engine, table: pa.Table) -> pa.Table:
        return run_in_process(stage, engine, table, batch_size)

    return run
