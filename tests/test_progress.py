"""Progress lines (run.progress_every_s): one line per stage still at work, none after."""

from __future__ import annotations

from typing import Any

from persona_gen.pipeline.chain import BlockResult, StepSummary
from persona_gen.run.progress import StageProgress


class _Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


def _bars() -> tuple[StageProgress, _Lines]:
    bars, lines = StageProgress(enabled=False), _Lines()
    bars._log = lines  # type: ignore[assignment]
    return bars, lines


def _result(stage: str, rows: int, errors: int = 0) -> BlockResult:
    return BlockResult("c", "b1", [StepSummary(stage=stage, block="b1", rows=rows,
                                               errors=errors)])


def test_a_stage_fed_within_its_chain_stops_reporting_once_the_chain_ends() -> None:
    bars, lines = _bars()
    bars.plan("controversy", 14)
    bars.plan("original", 0)  # its input (the controversial prompts) does not exist yet
    bars.on_result(_result("controversy", 14))
    bars.on_result(_result("original", 9))
    bars.log_lines()
    assert [(x["stage"], x["planned"], x["pct"]) for x in lines.lines] == [
        ("original", None, None)]

    bars.close("original", 9, 9, 0)  # what storage holds after the chain
    bars.plan("critique", 24)
    lines.lines.clear()
    bars.log_lines()
    assert [x["stage"] for x in lines.lines] == ["critique"]


def test_a_closed_stage_with_filtered_or_failed_rows_is_silent_and_keeps_its_counts() -> None:
    bars, lines = _bars()
    bars.plan("verify", 10)
    bars.on_result(_result("verify", 6, errors=1))
    bars.log_lines()
    line = lines.lines[-1]
    assert (line["done"], line["planned"], line["errors"], line["pct"]) == (6, 10, 1, 70.0)
    assert line["eta_s"] is not None and line["rows_per_s"] > 0

    bars.close("verify", 10, 7, 1)
    lines.lines.clear()
    bars.log_lines()
    assert lines.lines == []
    counts = bars.counts["verify"]
    assert (counts.planned, counts.done, counts.errors, counts.finished) == (10, 7, 1, True)
