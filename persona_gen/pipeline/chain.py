"""Chains of model stages over blocks, with a committed file per (step, block).

A block is a fixed slice of a stage's input (a plan part, a prompt part...). For each
step a block is *done* exactly when its output file exists: files are written atomically
(temp + rename locally, single PUT on S3) and named by block, so a resumed or retried
block overwrites rather than duplicates, and readers never see partial data. A kill loses
only the blocks in flight. Row-level failures go to `errors/<stage>/<block>.parquet`,
written before the output so a committed block always has its errors recorded.

Why not Ray Data's checkpointing (`DataContext.checkpoint_config`): it needs a single
read -> map -> write pipeline and records finished row ids, while a run here is several
dependent passes whose steps write several outputs per block (stage rows and error rows),
and whose inputs are computed by the driver between passes. Committing whole files under
deterministic names gives exactly-once output under SIGKILL of the driver or of workers
without any id bookkeeping in memory: the listing of committed files is the checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.engines.base import Engine
from persona_gen.log import get_logger
from persona_gen.pipeline.columns import error_rows, ok_rows
from persona_gen.pipeline.stage import ModelStage, apply_stage
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef
from persona_gen.storage.uri import Location


@dataclass(frozen=True)
class Lookup:
    """Join a column from a run table onto block rows by key (persona text, prompt text...)."""

    column: str
    """Column added to the block."""
    part: str
    """Folder of the run holding the table, e.g. 'personas'."""
    key: str
    value: str


@dataclass(frozen=True)
class Step:
    stage: ModelStage
    model: str
    out: str
    """Folder under the run where this step's block files are committed."""
    id_column: str = "pair_id"
    drop: tuple[str, ...] = ()
    """Columns not worth storing in this step's files (re-joined by lookups when needed)."""
    keep_if: tuple[str, tuple[str, ...]] | None = None
    """Only rows whose column has one of these values go on to the next step."""

    @property
    def name(self) -> str:
        return self.stage.name


@dataclass(frozen=True)
class Chain:
    name: str
    input: str
    """Folder under the run holding the input blocks (`<block>.parquet`)."""
    steps: tuple[Step, ...]
    lookups: tuple[Lookup, ...] = ()
    only: tuple[str, ...] | None = None
    """Restrict to these blocks of the input folder (None: all of them)."""


@dataclass
class StepSummary:
    stage: str
    block: str
    rows: int = 0
    errors: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    started_at: float = 0.0
    """Wall-clock start and end (time.time()), to measure a pass's throughput."""
    finished_at: float = 0.0
    resumed: bool = False


@dataclass
class BlockResult:
    chain: str
    block: str
    steps: list[StepSummary] = field(default_factory=list)
    waiting_for: str | None = None
    """The next step's stage when it belongs to another model's pass."""


def block_file(run: RunRef, folder: str, block: str) -> Location:
    return run.child(folder, f"{block}.parquet")


def error_file(run: RunRef, stage: str, block: str) -> Location:
    return run.errors.child(stage, f"{block}.parquet")


class LookupCache:
    """Per-actor cache of lookup tables: loaded once, reused for every block."""

    def __init__(self, run: RunRef) -> None:
        self.run = run
        self._maps: dict[tuple[str, str, str], dict[str, Any]] = {}

    def get(self, lk: Lookup) -> dict[str, Any]:
        k = (lk.part, lk.key, lk.value)
        if k not in self._maps:
            t = objects.read_table(self.run.child(lk.part), columns=[lk.key, lk.value])
            self._maps[k] = dict(zip(t.column(lk.key).to_pylist(), t.column(lk.value).to_pylist(),
                                     strict=True))
        return self._maps[k]

    def join(self, table: pa.Table, lookups: tuple[Lookup, ...]) -> pa.Table:
        for lk in lookups:
            if lk.column in table.column_names:
                continue
            m = self.get(lk)
            keys = table.column(lk.key).to_pylist()
            table = table.append_column(lk.column, pa.array([m.get(k) for k in keys]))
        return table


def _keep(table: pa.Table, step: Step) -> pa.Table:
    if step.keep_if is None:
        return table
    col, values = step.keep_if
    return table.filter(pc.is_in(table.column(col), value_set=pa.array(list(values))))


def _error_table(bad: pa.Table, step: Step, block: str) -> pa.Table:
    n = bad.num_rows
    return pa.table({
        "id": bad.column(step.id_column).cast(pa.string()),
        "stage": pa.array([step.name] * n, pa.string()),
        "block": pa.array([block] * n, pa.string()),
        "model": pa.array([step.model] * n, pa.string()),
        "reason": bad.column("error").cast(pa.string()),
    })


def run_block(chain: Chain, block: str, model: str, engine: Engine, run: RunRef,
              cache: LookupCache) -> BlockResult:
    """Run the steps of `chain` on one block that belong to `model`, resuming what is done."""
    log = get_logger(stage=chain.name, block=block)
    result = BlockResult(chain=chain.name, block=block)
    source: Location = block_file(run, chain.input, block)
    previous: Step | None = None
    table: pa.Table | None = None
    for step in chain.steps:
        out = block_file(run, step.out, block)
        if objects.exists(out):
            result.steps.append(StepSummary(stage=step.name, block=block, resumed=True))
            source, previous, table = out, step, None
            continue
        if step.model != model:
            result.waiting_for = step.name
            break
        if table is None:
            table = objects.read_table(source)
            if previous is not None:
                table = _keep(ok_rows(table), previous)
        started, started_at = time.perf_counter(), time.time()
        prepared = cache.join(table, chain.lookups)
        if "error" in prepared.column_names:
            prepared = prepared.drop_columns(["error"])
        done = apply_stage(step.stage, engine, prepared)
        good, bad = ok_rows(done), error_rows(done)
        err_loc = error_file(run, step.name, block)
        if bad.num_rows:
            objects.write_table_atomic(err_loc, _error_table(bad, step, block))
        elif objects.exists(err_loc):
            objects.delete(err_loc)  # a stale record from an earlier, killed attempt
        good = good.drop_columns([c for c in (*step.drop, "error") if c in good.column_names])
        objects.write_table_atomic(out, good)
        tokens = f"{step.name}_output_tokens"  # every stage writes its own token counts
        summary = StepSummary(
            stage=step.name, block=block, rows=good.num_rows, errors=bad.num_rows,
            output_tokens=int(pc.sum(good.column(tokens)).as_py() or 0) if tokens in good.column_names else 0,
            seconds=time.perf_counter() - started, started_at=started_at, finished_at=time.time(),
        )
        result.steps.append(summary)
        log.debug("step_committed", step=step.name, rows=summary.rows, errors=summary.errors)
        source, previous, table = out, step, _keep(good, step)
    return result


def block_ids(run: RunRef, folder: str) -> list[str]:
    """Blocks present in a folder (by file name, without .parquet), sorted."""
    return [p.rsplit("/", 1)[-1][: -len(".parquet")]
            for p in objects.list_files(run.child(folder), ".parquet")]


def pending_blocks(run: RunRef, chain: Chain) -> dict[str, str]:
    """block -> the model of its next uncommitted step (blocks fully done are left out)."""
    done = {step.out: set(block_ids(run, step.out)) for step in chain.steps}
    out: dict[str, str] = {}
    blocks = block_ids(run, chain.input)
    if chain.only is not None:
        wanted = set(chain.only)
        blocks = [b for b in blocks if b in wanted]
    for block in blocks:
        for step in chain.steps:
            if block not in done[step.out]:
                out[block] = step.model
                break
    return out
