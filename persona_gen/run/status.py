"""`persona-gen status`: rows done and planned per stage, read from storage alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from persona_gen.run.scan import tally
from persona_gen.storage.runref import RunRef


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


@dataclass
class StageStatus:
    stage: str
    done: int
    planned: int | None
    errors: int
    blocks: int


def stage_status(run: RunRef, stage: StageFolders) -> StageStatus:
    """Committed rows, planned rows (its input's rows), error rows: from storage alone."""
    done = tally(run.child(stage.writes))
    where = dict([stage.reads_where]) if stage.reads_where else None
    read = tally(run.child(stage.reads), equal=where)
    planned = read.equal[stage.reads_where[0]] if stage.reads_where else read.rows
    errors = tally(run.errors.child(stage.name)).rows
    return StageStatus(stage.name, done.rows, planned or None, errors, done.files)


def run_status(run: RunRef, stages: Iterable[StageFolders]) -> list[StageStatus]:
    return [stage_status(run, s) for s in stages]
