"""`bench run` as five replaceable steps, executed in-process for small runs.

    build_requests (pure) -> answer stage -> explode_samples -> judge stage -> metrics -> write

`run_answers` and `run_judge` are the two places that call engines; they receive their
stages built (the recipe builds them from `stages.bench_answer` and `stages.bench_judge`)
and a runner: in-process, or the distributed pipeline (same stages, same tables). Both skip work
whose ids are already done (`request_id` for answers, `judgment_id` for verdicts), which is
the resumption contract the pipeline keeps too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.bench import layout as L
from persona_gen.bench.answer import CUT_BEFORE_MARKER, AnswerStage, explode_samples, judgeable
from persona_gen.bench.config import BenchConfig
from persona_gen.bench.judge import BenchJudgeStage, judgment_ids
from persona_gen.bench.layout import BenchLayout
from persona_gen.bench.metrics import loo_kappas, loo_table, mode_scores, scores_table
from persona_gen.engines.base import Engine
from persona_gen.log import get_logger
from persona_gen.pipeline.stage import Runner, in_process

EngineFor = Callable[[str], Engine]
"""Model registry name -> a ready engine (the caller owns its lifetime)."""

log = get_logger(stage="bench")


@dataclass(frozen=True)
class BenchOutputs:
    requests: pa.Table
    answers: pa.Table
    """One row per sample (answer_error set where the answer failed)."""
    judgments: pa.Table
    """One row per judged sample (error set where the judge failed)."""
    accuracy: pa.Table
    loo_kappa: pa.Table


@dataclass(frozen=True)
class BenchStages:
    """The bench's two model stages, built."""

    answer: AnswerStage
    judge: BenchJudgeStage


def _done_ids(done: pa.Table | None, id_column: str, error_column: str) -> set[str]:
    """Ids finished without error; failed rows are retried on resume."""
    if done is None or done.num_rows == 0 or id_column not in done.column_names:
        return set()
    ok = done.filter(pc.is_null(done.column(error_column)))
    return set(ok.column(id_column).to_pylist())


def _keep_done(done: pa.Table | None, id_column: str, ids: set[str]) -> pa.Table | None:
    if done is None or not ids:
        return None
    return done.filter(pc.is_in(done.column(id_column), pa.array(sorted(ids), pa.string())))


def _concat(parts: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(parts, promote_options="permissive")


def run_answers(requests: pa.Table, cfg: BenchConfig, stage: AnswerStage,
                engine_for: EngineFor, done: pa.Table | None = None,
                runner: Runner | None = None) -> pa.Table:
    """Answer every request not already done; one row per sample out."""
    runner = runner or in_process()
    done_ids: set[str] = set()
    if done is not None and done.num_rows and "request_id" in done.column_names:
        # A request counts as done only if none of its samples failed. A sample cut before
        # its marker is a final outcome (the same seed and limit would cut it again), not a
        # failure to retry; raising the limit means answering afresh.
        errors = done.column("answer_error")
        retry = pc.and_kleene(pc.is_valid(errors), pc.not_equal(errors, CUT_BEFORE_MARKER))
        failed = set(done.filter(retry).column("request_id").to_pylist())
        done_ids = set(done.column("request_id").to_pylist()) - failed
    # Work from an earlier config that this one no longer asks for is left out.
    done_ids &= set(requests.column("request_id").to_pylist())
    todo = requests.filter(pc.invert(pc.is_in(requests.column("request_id"),
                                             pa.array(sorted(done_ids), pa.string()))))
    parts = [t for t in [_keep_done(done, "request_id", done_ids)] if t is not None]
    for model in dict.fromkeys(todo.column("model").to_pylist()):
        rows = todo.filter(pc.equal(todo.column("model"), model))
        log.info("answering", model=model, requests=rows.num_rows, samples=rows.num_rows * cfg.k)
        answered = runner(stage, engine_for(model), rows)
        parts.append(explode_samples(answered))
    if not parts:
        return explode_samples(stage.results(requests.slice(0, 0), []))
    return _in_request_order(_concat(parts), requests)


def run_judge(answers: pa.Table, stage: BenchJudgeStage, engine_for: EngineFor,
              done: pa.Table | None = None, runner: Runner | None = None) -> pa.Table:
    """Judge every answered sample not already judged by this judge model."""
    runner = runner or in_process()
    samples = judgeable(answers).drop_columns(["answer_error"])
    ids = judgment_ids(samples, stage.judge_model)
    done_ids = _done_ids(done, "judgment_id", "error") & set(ids)
    todo = samples.filter(pa.array([i not in done_ids for i in ids], pa.bool_()))
    log.info("judging", judge=stage.judge_model, samples=todo.num_rows, reused=len(done_ids))
    if todo.num_rows:
        judged = runner(stage, engine_for(stage.judge_model), todo)
    else:  # nothing left: do not load the judge at all
        judged = stage.results(todo, [])
    kept = _keep_done(done, "judgment_id", done_ids)
    return judged if kept is None else _in_request_order(_concat([kept, judged]), samples)


def _in_request_order(table: pa.Table, reference: pa.Table) -> pa.Table:
    """Rows in the reference's request order, then by sample: the same files on every run."""
    rank = {rid: i for i, rid in enumerate(dict.fromkeys(reference.column("request_id").to_pylist()))}
    keys = [(rank.get(rid, len(rank)), s) for rid, s in
            zip(table.column("request_id").to_pylist(), table.column("sample_index").to_pylist(),
                strict=True)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return table.take(pa.array(order, pa.int64()))


def scored_samples(answers: pa.Table, judgments: pa.Table) -> pa.Table:
    """Every sample with its verdict (null where the answer or the judge failed), `cut`
    (cut before its answer marker: the metrics score it 0) and `judge_persona`."""
    verdict = {}
    if judgments.num_rows:
        for sid, v in zip(judgments.column("sample_id").to_pylist(),
                          judgments.column("verdict").to_pylist(), strict=True):
            verdict[sid] = v
    cols = ["model", "mode", "persona_id", "prompt_id", "ablated_attribute", "sample_index",
            "sample_id"]
    base = answers.select(cols)
    cut = pc.fill_null(pc.equal(answers.column("answer_error"), CUT_BEFORE_MARKER), False)
    # Tables from before the option existed: the judge saw the full persona.
    judge_persona = (answers.column("judge_persona") if "judge_persona" in answers.column_names
                     else pa.array(["full"] * answers.num_rows, pa.string()))
    return (base.append_column("verdict", pa.array(
        [verdict.get(s) for s in base.column("sample_id").to_pylist()], pa.int8()))
        .append_column("cut", cut).append_column("judge_persona", judge_persona)
        # Tables from before the column existed: every full-persona row was in the grid.
        .append_column("study", answers.column("study") if "study" in answers.column_names
                       else pa.array(["main"] * answers.num_rows, pa.string())))


def compute_metrics(answers: pa.Table, judgments: pa.Table, cfg: BenchConfig,
                    seed: int) -> tuple[pa.Table, pa.Table]:
    scored = scored_samples(answers, judgments)
    # Full twins added only for the LOO study (study 'loo') stay out of accuracy; so does a
    # mode benched only for it.
    accuracy = scores_table([s for s in mode_scores(scored, cfg.k, cfg.bootstrap_samples, seed)
                             if s.mode in cfg.modes])
    loo = loo_table(loo_kappas(scored, cfg.loo_mode) if cfg.loo_attributes else [])
    return accuracy, loo


def run_bench(requests: pa.Table, cfg: BenchConfig, stages: BenchStages, engine_for: EngineFor,
              seed: int, done_answers: pa.Table | None = None,
              done_judgments: pa.Table | None = None,
              runner: Runner | None = None) -> BenchOutputs:
    answers = run_answers(requests, cfg, stages.answer, engine_for, done_answers, runner)
    judgments = run_judge(answers, stages.judge, engine_for, done_judgments, runner)
    accuracy, loo = compute_metrics(answers, judgments, cfg, seed)
    return BenchOutputs(requests, answers, judgments, accuracy, loo)


def write_outputs(bench: BenchLayout, out: BenchOutputs) -> None:
    bench.write(L.REQUESTS, out.requests)
    bench.write(L.ANSWERS, out.answers)
    bench.write(L.JUDGMENTS, out.judgments)
    bench.write(L.ACCURACY, out.accuracy)
    bench.write(L.LOO_KAPPA, out.loo_kappa)


class EnginePool:
    """Creates each model's engine once and closes them all at the end (in-process runs)."""

    def __init__(self, factory: Callable[[str], Engine]) -> None:
        self._factory = factory
        self._engines: dict[str, Engine] = {}

    def __call__(self, name: str) -> Engine:
        if name not in self._engines:
            self._engines[name] = self._factory(name)
        return self._engines[name]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


@contextmanager
def engine_pool(factory: Callable[[str], Engine] | None = None) -> Iterator[EnginePool]:
    if factory is None:
        from persona_gen.engines.factory import create_engine  # heavy (vLLM): import late

        factory = create_engine
    pool = EnginePool(factory)
    try:
        yield pool
    finally:
        pool.close()


__all__ = ["BenchOutputs", "BenchStages", "EngineFor", "EnginePool", "compute_metrics",
           "engine_pool", "run_answers", "run_bench", "run_judge", "write_outputs"]
