"""A model stage: rows -> chat requests -> engine -> rows with result columns.

Every language-model step (enrichment, consistency judge, prompt classifier, original,
critique, revision, verification, bench answers, bench judge) is a `ModelStage`. The same
object runs in-process (`run_in_process`, for small runs and tests) and inside Ray Data
actors (persona_gen.pipeline), so stage logic never knows where it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import pyarrow as pa

from persona_gen.engines.base import ChatRequest, ChatResult, Engine


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


def apply_stage(stage: ModelStage, engine: Engine, batch: pa.Table) -> pa.Table:
    """Run one batch through a stage with a given engine."""
    if batch.num_rows == 0:
        return stage.results(batch, [])
    reqs = stage.requests(batch)
    res = engine.generate(reqs)
    if len(res) != len(reqs):
        raise RuntimeError(f"engine {engine.name} returned {len(res)} results for {len(reqs)} requests")
    return stage.results(batch, res)


def iter_batches(table: pa.Table, batch_size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)


def run_in_process(stage: ModelStage, engine: Engine, table: pa.Table, batch_size: int = 64) -> pa.Table:
    """Small runs and tests: the whole table through one engine in this process."""
    parts = [apply_stage(stage, engine, b) for b in iter_batches(table, batch_size)]
    if not parts:
        return apply_stage(stage, engine, table)
    return pa.concat_tables(parts, promote_options="default")
