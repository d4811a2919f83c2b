"""A stage runner backed by the pipeline: `runner(stage, engine, table, batch_size)`.

Code written against `run_in_process` (persona builds with resampling rounds, bench runs)
takes a runner argument; this one sends each call through Ray Data and the run's engine
actors instead, committing blocks in the stage's folders. A block is named by its content:
a hash of the stage (with its settings), the model and the block's rows. A resumed caller
that asks for the same work gets the committed blocks back from storage instead of the
model; one that asks for other work (another model, other rows) never does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.hashing import hex_id
from persona_gen.pipeline.chain import BlockResult, Chain, Step, block_file, block_ids, error_file
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.stage import ModelStage
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

Folders = Callable[[str], tuple[str, str]]
"""Stage name -> (folder its input blocks go to, folder its output blocks go to)."""


@dataclass
class EngineRef:
    """Stands in for an engine in the driver: the real one lives in the engine actors."""

    name: str

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        raise RuntimeError("EngineRef runs no model; stages go through the pipeline runner")

    def close(self) -> None:
        return None


def block_name(stage: ModelStage, model: str, rows: pa.Table) -> str:
    """A content address: the same stage settings, model and rows give the same name."""
    content = json.dumps(rows.to_pylist(), sort_keys=True, default=str)
    return hex_id(repr(stage), model, content)


class PipelineRunner:
    def __init__(self, run: RunRef, folders: Folders, pipeline: PipelineConfig,
                 hosts: EngineHosts, id_columns: tuple[str, ...],
                 on_plan: Callable[[str, int], None] | None = None,
                 on_result: Callable[[BlockResult], None] | None = None) -> None:
        self.run, self.folders, self.pipeline = run, folders, pipeline
        self.hosts = hosts
        self.id_columns = id_columns
        self.on_plan, self.on_result = on_plan, on_result
        self.calls = 0

    def _id_column(self, table: pa.Table) -> str:
        for col in self.id_columns:
            if col in table.column_names:
                return col
        raise KeyError(f"none of the id columns {self.id_columns} is in the table")

    def __call__(self, stage: ModelStage, engine: EngineRef, table: pa.Table) -> pa.Table:
        call = self.calls
        self.calls += 1
        id_col = self._id_column(table)
        in_dir, out_dir = self.folders(stage.name)
        size = self.pipeline.batch_size
        slices = [table.slice(i * size, size)
                  for i in range(max(1, math.ceil(table.num_rows / size)))]
        names = [block_name(stage, engine.name, part) for part in slices]
        done = set(block_ids(self.run, out_dir))
        for name, part in zip(names, slices, strict=True):
            if name not in done:  # inputs are deterministic: rewriting one is harmless
                objects.write_table_atomic(block_file(self.run, in_dir, name), part)
        if self.on_plan:
            self.on_plan(stage.name, table.num_rows)
        chain = Chain(f"{stage.name}-{call}", in_dir,
                      (Step(stage, engine.name, out_dir, id_column=id_col),),
                      only=tuple(dict.fromkeys(names)))
        run_chains([chain], self.run, self.pipeline, on_result=self.on_result, hosts=self.hosts)
        return self._collect(stage, names, in_dir, out_dir, id_col, table)

    def _collect(self, stage: ModelStage, names: list[str], in_dir: str, out_dir: str,
                 id_col: str, table: pa.Table) -> pa.Table:
        """Committed rows plus the failed rows with their `error`, in the input's order."""
        parts = []
        for n in names:
            good = objects.read_table(block_file(self.run, out_dir, n))
            if good.num_rows:
                parts.append(good)
            err_loc = error_file(self.run, stage.name, n)
            if not objects.exists(err_loc):
                continue
            errs = objects.read_table(err_loc)
            inputs = objects.read_table(block_file(self.run, in_dir, n))
            failed = inputs.filter(pc.is_in(inputs.column(id_col), value_set=errs.column("id")))
            reason = dict(zip(errs.column("id").to_pylist(), errs.column("reason").to_pylist(),
                              strict=True))
            parts.append(failed.append_column("error", pa.array(
                [reason[i] for i in failed.column(id_col).to_pylist()], pa.string())))
        if not parts:
            return stage.results(table.slice(0, 0), [])
        out = pa.concat_tables(parts, promote_options="permissive")
        if "error" not in out.column_names:
            out = out.append_column("error", pa.nulls(out.num_rows, pa.string()))
        rank = {k: i for i, k in enumerate(table.column(id_col).to_pylist())}
        keys = out.column(id_col).to_pylist()
        order = sorted(range(out.num_rows), key=lambda i: rank.get(keys[i], len(rank)))
        return out.take(pa.array(order, pa.int64()))
