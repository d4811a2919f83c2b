"""`persona-gen status`: rows done and planned per stage, read from storage alone."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import pyarrow.parquet as pq

from persona_gen.storage import objects
from persona_gen.storage.retry import retrying
from persona_gen.storage.runref import RunRef
from persona_gen.storage.uri import Location


class StageFolders(Protocol):
    """Where a stage commits rows, and the input rows it is planned over."""

    @property
    def name(self) -> str: ...
    @property
    def writes(self) -> str: ...
    @property
    def reads(self) -> str: ...
    @property
    def reads_where(self) -> tuple[str, str] | None: ...


def count_rows(loc: Location, where: tuple[str, str] | None = None) -> tuple[int, int]:
    """(rows, files) under a folder: from Parquet footers, or reading one column for `where`."""
    files = objects.list_files(loc, ".parquet")

    def rows_once(path: str) -> int:
        with loc.fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            if where is None:
                return pf.metadata.num_rows
            col, value = where
            if col not in pf.schema_arrow.names:
                return pf.metadata.num_rows
            return pf.read(columns=[col]).column(col).to_pylist().count(value)

    def rows(path: str) -> int:
        return retrying("GET", loc.at(path), lambda: rows_once(path))

    with ThreadPoolExecutor(max_workers=16) as pool:
        return sum(pool.map(rows, files)), len(files)


def sum_columns(loc: Location, columns: tuple[str, ...]) -> dict[str, int]:
    """The sums of integer columns over every Parquet file under a folder (0 where absent),
    reading each file once for all of them."""
    import pyarrow.compute as pc

    files = objects.list_files(loc, ".parquet")

    def totals_once(path: str) -> dict[str, int]:
        with loc.fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            present = [c for c in columns if c in pf.schema_arrow.names]
            table = pf.read(columns=present) if present else None
            return {c: int(pc.sum(table.column(c)).as_py() or 0) if c in present else 0
                    for c in columns}

    def totals(path: str) -> dict[str, int]:
        return retrying("GET", loc.at(path), lambda: totals_once(path))

    out = dict.fromkeys(columns, 0)
    with ThreadPoolExecutor(max_workers=16) as pool:
        for part in pool.map(totals, files):
            for c, v in part.items():
                out[c] += v
    return out


@dataclass
class StageStatus:
    stage: str
    done: int
    planned: int | None
    errors: int
    blocks: int


def stage_status(run: RunRef, stage: StageFolders) -> StageStatus:
    """Committed rows, planned rows (its input's rows), error rows: from storage alone."""
    done, blocks = count_rows(run.child(stage.writes))
    planned, _ = count_rows(run.child(stage.reads), stage.reads_where)
    errors, _ = count_rows(run.errors.child(stage.name))
    return StageStatus(stage.name, done, planned or None, errors, blocks)


def run_status(run: RunRef, stages: Iterable[StageFolders]) -> list[StageStatus]:
    return [stage_status(run, s) for s in stages]
