"""Per-stage progress bars on the driver (rows/s and ETA), fed by committed block results."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from persona_gen.pipeline.chain import BlockResult


class StageProgress:
    """One bar per stage; `planned` may grow as later stages learn their size."""

    def __init__(self, enabled: bool | None = None) -> None:
        enabled = sys.stderr.isatty() if enabled is None else enabled
        self.progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not enabled, transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def plan(self, stage: str, total: int, done: int = 0) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, completed=done, rate="")
        else:
            self.progress.update(self.tasks[stage], total=total, completed=done)

    def on_result(self, res: BlockResult) -> None:
        for step in res.steps:
            if step.resumed or step.stage not in self.tasks:
                continue
            task = self.tasks[step.stage]
            self.progress.advance(task, step.rows + step.errors)
            t = self.progress.tasks[self.progress.task_ids.index(task)]
            speed = t.speed or 0.0
            self.progress.update(task, rate=f"{speed:.1f} r/s")
