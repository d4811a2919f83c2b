"""Progress on the driver: rich bars on a terminal, and every `run.progress_every_s` one
INFO line per active stage (rows done/planned, rows/s, ETA, errors) that reaches the Ray job's
log anywhere, `ray job logs` included. Fed by committed block results."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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

from persona_gen.log import get_logger
from persona_gen.pipeline.chain import BlockResult


@dataclass
class StageCounts:
    """One stage's rows in this attempt; `start_done` counts what earlier attempts left."""

    planned: int
    start_done: int
    done: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)
    closed: bool = False
    """Its chain has ended: no more lines, whatever the counts (filtered rows never arrive)."""

    @property
    def finished(self) -> bool:
        return self.closed or (self.planned > 0 and self.done + self.errors >= self.planned)

    def line(self, now: float) -> dict[str, Any]:
        """The fields of a progress line: rows/s over this attempt, ETA from that rate."""
        elapsed = max(now - self.started, 1e-9)
        new = self.done + self.errors - self.start_done
        rate = new / elapsed
        left = max(self.planned - self.done - self.errors, 0)
        # planned None: not known yet (its input is still being written upstream).
        return {"done": self.done, "planned": self.planned or None, "errors": self.errors,
                "pct": round(100 * (self.done + self.errors) / self.planned, 1)
                if self.planned else None,
                "rows_per_s": round(rate, 2),
                "eta_s": round(left / rate) if rate > 0 else None,
                "elapsed_s": round(elapsed, 1)}


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
        self.counts: dict[str, StageCounts] = {}
        self._lock = threading.Lock()  # results arrive on the main thread, lines on a timer
        self._log = get_logger(stage="progress")

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def plan(self, stage: str, total: int, done: int = 0, errors: int = 0) -> None:
        with self._lock:
            c = self.counts.get(stage)
            if c is None:
                self.counts[stage] = StageCounts(total, done + errors, done, errors)
            else:
                c.planned, c.done, c.errors = total, max(c.done, done), max(c.errors, errors)
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, completed=done, rate="")
        else:
            self.progress.update(self.tasks[stage], total=total, completed=done)

    def close(self, stage: str, total: int, done: int, errors: int) -> None:
        """The stage's final counts (from storage) once its chain has ended.

        A stage fed by another in the same chain (originals from the controversy labels)
        has nothing to count when the chain starts; without this its line would repeat
        "planned 0" for the rest of the run."""
        self.plan(stage, total, done, errors)
        with self._lock:
            self.counts[stage].closed = True

    def on_result(self, res: BlockResult) -> None:
        for step in res.steps:
            if step.resumed or step.stage not in self.tasks:
                continue
            with self._lock:
                c = self.counts[step.stage]
                c.done += step.rows
                c.errors += step.errors
            task = self.tasks[step.stage]
            self.progress.advance(task, step.rows + step.errors)
            t = self.progress.tasks[self.progress.task_ids.index(task)]
            speed = t.speed or 0.0
            self.progress.update(task, rate=f"{speed:.1f} r/s")

    def log_lines(self) -> None:
        """One INFO line per stage that is planned and not finished."""
        now = time.monotonic()
        with self._lock:
            lines = [(s, c.line(now)) for s, c in self.counts.items() if not c.finished]
        for stage, fields in lines:
            self._log.info("progress", stage=stage, **fields)


class Ticker:
    """Calls `fn` every `every_s` seconds on a daemon thread until the block exits.

    A thread rather than a hook on block results: a stage whose blocks take longer than
    the interval (a big model, or a stalled store) must still report and keep its heartbeat.
    `fn`'s errors are logged and the ticker carries on.
    """

    def __init__(self, every_s: float, fn: Callable[[], None]) -> None:
        self.every_s, self.fn = every_s, fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="persona-gen-ticker",
                                        daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.fn()
            except Exception as exc:  # a missed tick must never end the run
                get_logger(stage="progress").warning("tick_failed", error=str(exc)[:300])

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
