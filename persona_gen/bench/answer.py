"""The model under test answers bench requests: a ModelStage over the request table.

One stage serves every mode (the row's `mode` picks the prompt and the parser) so a
model's requests run in one actor pool, one pass. `AnswerStage(modes=("cot",))` is the
single-mode stage for callers that split by mode.

The stage keeps one row per request with list columns (one entry per sample), as the
ModelStage contract asks; `explode_samples` then gives one row per sample, which is
what the judge and the metrics consume.

Truncation: each sample's finish reason is kept (`answer_finish_reasons`, then
`answer_finish_reason` per sample). A cot or summary sample cut by length before its
final-answer marker is a failed sample (`answer_error` = CUT_BEFORE_MARKER): judging the
whole text would score half-finished reasoning as if it were the answer. A cut sample
that reached the marker is kept; its finish reason says it was cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from persona_gen.bench.config import ALL_MODES, Mode
from persona_gen.bench.ids import sample_id
from persona_gen.bench.modes import build_messages, parse_answer, uses_marker
from persona_gen.engines.base import ChatRequest, ChatResult, Sampling
from persona_gen.pipeline.columns import column, with_columns
from persona_gen.pipeline.settings import StageSettings
from persona_gen.pipeline.template import PromptTemplate, shipped

DEFAULT_MAX_TOKENS_BY_MODE: dict[Mode, int] = {"cot": 768, "summary": 768}
"""Reasoning modes write notes before their final answer; at the plain `max_tokens` (256)
a capable model is often cut before the marker, and such a sample cannot be judged. 768 is
our choice (the paper does not state its limits)."""


class BenchAnswerSettings(StageSettings):
    """`stages.bench_answer`: the models under test are `bench.models` and the samples per
    request are `bench.k`, so `model` and `n` are not set here; answers cut before their
    marker are a final outcome, so there is no retry."""

    max_tokens_by_mode: dict[Mode, int] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_TOKENS_BY_MODE))
    """Per-mode answer limits. Given modes replace the defaults one by one, so setting only
    `cot` keeps summary's default; a mode absent here uses `max_tokens`."""

    @field_validator("max_tokens_by_mode", mode="before")
    @classmethod
    def _merge_mode_limits(cls, value: object) -> object:
        # A config naming one mode should not silently drop the other mode's default.
        if isinstance(value, dict):
            return {**DEFAULT_MAX_TOKENS_BY_MODE, **value}
        return value

    @field_validator("max_tokens_by_mode")
    @classmethod
    def _positive_limits(cls, value: dict[Mode, int]) -> dict[Mode, int]:
        bad = {m: n for m, n in value.items() if n < 1}
        if bad:
            raise ValueError(f"token limits must be >= 1, got {bad}")
        return value

    @model_validator(mode="after")
    def _not_here(self) -> BenchAnswerSettings:
        if self.n not in (None, 1):
            raise ValueError("set the samples per request with bench.k, not n")
        if self.retry_max_tokens:
            raise ValueError("bench answers are not retried (retry_max_tokens must be 0)")
        return self

_LIST = pa.list_(pa.string())

CUT_BEFORE_MARKER = "cut by length before the final-answer marker"
"""answer_error of a reasoning-mode sample that never reached its answer. It is a final
outcome (same seed, same cut), so a resumed run does not ask again."""


def mode_limits(limits: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Per-mode limits as sorted pairs: the stage stays a hashable frozen dataclass."""
    return tuple(sorted(limits.items()))


def is_cut_before_marker(mode: str, finish_reason: str | None, parse_kind: str | None) -> bool:
    return uses_marker(mode) and finish_reason == "length" and parse_kind != "marker"


@dataclass(frozen=True)
class AnswerStage:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    """Limit for modes not in max_tokens_by_mode."""
    max_tokens_by_mode: tuple[tuple[str, int], ...] = mode_limits(DEFAULT_MAX_TOKENS_BY_MODE)
    modes: tuple[Mode, ...] = ALL_MODES
    template: PromptTemplate | None = None
    """None: templates/bench_answer.jinja."""
    name: ClassVar[str] = "bench_answer"
    id_column: ClassVar[str] = "request_id"
    needs: ClassVar[tuple[str, ...]] = ("request_id", "mode", "question", "answer_persona_text",
                                        "k", "seed")
    variables: ClassVar[tuple[str, ...]] = ("mode", "persona", "question", "final_marker")
    prompt_parts: ClassVar[tuple[str, ...]] = ("persona", "prompt")
    settings_type: ClassVar[type[StageSettings]] = BenchAnswerSettings

    @classmethod
    def build(cls, settings: StageSettings, template: PromptTemplate | None,
              seed: int | None = None) -> AnswerStage:
        # Seeds are per request (the request table's `seed`), derived from the run seed.
        assert isinstance(settings, BenchAnswerSettings)
        return cls(temperature=settings.temperature or 0.0, top_p=settings.top_p or 1.0,
                   max_tokens=settings.max_tokens or 1,
                   max_tokens_by_mode=mode_limits(settings.max_tokens_by_mode),
                   template=template)

    @classmethod
    def adds(cls) -> tuple[str, ...]:
        # One row per request with a list entry per sample (explode_samples flattens them),
        # so this stage writes its own columns rather than DeclaredStage's scalar ones.
        return ("raw_answers", "answers", "answer_preambles", "answer_parse",
                "answer_finish_reasons", f"{cls.name}_prompt_tokens",
                f"{cls.name}_output_tokens")

    def prompt(self) -> PromptTemplate:
        return self.template or shipped("bench_answer")

    def max_tokens_for(self, mode: str) -> int:
        return dict(self.max_tokens_by_mode).get(mode, self.max_tokens)

    def requests(self, batch: pa.Table) -> list[ChatRequest]:
        out = []
        rows = zip(column(batch, "request_id"), column(batch, "mode"), column(batch, "question"),
                   column(batch, "answer_persona_text"), column(batch, "k"), column(batch, "seed"),
                   strict=True)
        for rid, mode, question, persona_text, k, seed in rows:
            if mode not in self.modes:
                raise ValueError(f"stage {self.name} handles {self.modes}, got a {mode!r} row")
            out.append(ChatRequest(
                id=rid,
                messages=build_messages(mode, question, persona_text, self.template),
                sampling=Sampling(temperature=self.temperature, top_p=self.top_p,
                                  max_tokens=self.max_tokens_for(mode), seed=seed, n=k),
            ))
        return out

    def results(self, batch: pa.Table, results: list[ChatResult]) -> pa.Table:
        raw, answers, preambles, kinds, reasons, errors = [], [], [], [], [], []
        for mode, k, r in zip(column(batch, "mode"), column(batch, "k"), results, strict=True):
            if not r.ok:
                raw.append(None)
                answers.append(None)
                preambles.append(None)
                kinds.append(None)
                reasons.append(None)
                errors.append(r.error)
                continue
            parsed = [parse_answer(mode, t) for t in r.texts]
            raw.append(list(r.texts))
            answers.append([p.answer for p in parsed])
            preambles.append([p.preamble for p in parsed])
            kinds.append([p.kind for p in parsed])
            # An engine may report no reasons at all: unknown (null), never assumed 'stop'.
            got = list(r.finish_reasons)[: len(r.texts)]
            reasons.append(got + [None] * (len(r.texts) - len(got)))
            # Fewer samples than asked is a row error, but the ones we got are kept.
            errors.append(None if len(r.texts) >= k else f"engine returned {len(r.texts)} of {k} samples")
        return with_columns(batch, {
            "raw_answers": pa.array(raw, _LIST),
            "answers": pa.array(answers, _LIST),
            "answer_preambles": pa.array(preambles, _LIST),
            "answer_parse": pa.array(kinds, _LIST),
            "answer_finish_reasons": pa.array(reasons, _LIST),
            f"{self.name}_prompt_tokens": pa.array([r.prompt_tokens for r in results], pa.int64()),
            f"{self.name}_output_tokens": pa.array([r.output_tokens for r in results], pa.int64()),
            "error": pa.array(errors, pa.string()),
        })


_SAMPLE_LISTS = {"raw_answers": "raw_answer", "answers": "answer",
                 "answer_preambles": "answer_preamble", "answer_parse": "answer_parse",
                 "answer_finish_reasons": "answer_finish_reason"}


def explode_samples(answered: pa.Table) -> pa.Table:
    """One row per sample: `sample_index`, `sample_id`, scalar answer columns, `answer_error`.

    A request that failed outright still yields `k` rows (answer null, answer_error set),
    so sample counts stay honest in the metrics; so does a sample the engine never returned.
    A reasoning-mode sample cut before its marker gets answer_error = CUT_BEFORE_MARKER.
    """
    keep = [c for c in answered.column_names if c not in _SAMPLE_LISTS and c != "error"]
    base = answered.select(keep).to_pylist()
    # Answers written before finish reasons were kept lack the column: reasons unknown.
    lists = {c: column(answered, c) if c in answered.column_names else [None] * answered.num_rows
             for c in _SAMPLE_LISTS}
    errors = column(answered, "error")
    rows = []
    for i, row in enumerate(base):
        got = lists["answers"][i] or []
        for s in range(max(int(row["k"]), len(got))):
            out = dict(row)
            out["sample_index"] = s
            out["sample_id"] = sample_id(row["request_id"], s)
            for src, dst in _SAMPLE_LISTS.items():
                values = lists[src][i] or []
                out[dst] = values[s] if s < len(values) else None
            out["answer_error"] = errors[i] if s >= len(got) else None
            if s >= len(got) and out["answer_error"] is None:
                out["answer_error"] = "sample missing"
            if out["answer_error"] is None and is_cut_before_marker(
                    row["mode"], out["answer_finish_reason"], out["answer_parse"]):
                out["answer_error"] = CUT_BEFORE_MARKER
            rows.append(out)
    schema = answered.select(keep).schema
    for name, typ in (("sample_index", pa.int32()), ("sample_id", pa.string()),
                      ("raw_answer", pa.string()), ("answer", pa.string()),
                      ("answer_preamble", pa.string()), ("answer_parse", pa.string()),
                      ("answer_finish_reason", pa.string()), ("answer_error", pa.string())):
        schema = schema.append(pa.field(name, typ))
    return pa.Table.from_pylist(rows, schema=schema)


def judgeable(samples: pa.Table) -> pa.Table:
    """Samples the judge should see: those with an answer and no answer error."""
    ok = pc.and_(pc.is_null(samples.column("answer_error")), pc.is_valid(samples.column("answer")))
    return samples.filter(ok)
