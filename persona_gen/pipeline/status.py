"""`persona-gen status`: rows done and planned per stage, read from storage alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow.parquet as pq

from persona_gen.feedback.folders import StageFolders
from persona_gen.storage import objects
from persona_gen.storage.layout import RunLayout
from persona_gen.storage.uri import Location


def count_rows(loc: Location, where: tuple[str, str] | None = None) -> tuple[int, int]:
    """(rows, files) under a folder: from Parquet footers, or reading one column for `where`."""
    files = objects.list_files(loc, ".parquet")

    def rows(path: str) -> int:
        with loc.fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            if where is None:
                return pf.metadata.num_rows
            col, value = where
            if col not in pf.schema_arrow.names:
                return pf.metadata.num_rows
            return pf.read(columns=[col]).column(col).to_pylist().count(value)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return sum(pool.map(rows, files)), len(files)


@dataclass
class StageStatus:
    stage: str
    done: int
    planned: int | None
    errors: int
    blocks: int


def run_status(layout: RunLayout, stages: dict[str, StageFolders]) -> list[StageStatus]:
    """For each stage: committed rows, planned rows (its input's rows), error rows."""
    out = []
    for stage, where in stages.items():
        done, blocks = count_rows(layout.base.child(where.out))
        planned, _ = count_rows(layout.base.child(where.inputs), where.inputs_where)
        errors, _ = count_rows(layout.errors.child(stage))
        out.append(StageStatus(stage, done, planned or None, errors, blocks))
    return out
