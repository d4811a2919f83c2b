"""`bench run` on the Ray Data pipeline: an interrupted run resumes without regenerating."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from persona_gen.cli.main import app
from tests.test_bench_run import _bench_section, _make_run

pytestmark = pytest.mark.ray
runner = CliRunner()


def _blocks(run: Path, stage: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (run / "bench" / "work" / stage).glob("*.parquet")}


def test_interrupted_bench_run_regenerates_nothing_already_done(tmp_path, ray_local):
    cfg, run_uri = _make_run(tmp_path, _bench_section(["echo"], "echo"))
    run = Path(run_uri)
    res = runner.invoke(app, ["bench", "run", "--config", cfg])
    assert res.exit_code == 0, res.output
    answers = _blocks(run, "bench_answer")
    judged = _blocks(run, "bench_judge")
    assert answers and judged

    # An interruption after the answers were committed, before judging and the final
    # tables: the judge's blocks and the outputs are gone.
    shutil.rmtree(run / "bench" / "work" / "bench_judge")
    shutil.rmtree(run / "bench" / "metrics")
    for name in ("answers.parquet", "judgments.parquet"):
        (run / "bench" / name).unlink()
    res = runner.invoke(app, ["bench", "run", "--config", cfg])
    assert res.exit_code == 0, res.output
    assert _blocks(run, "bench_answer") == answers  # not one answer block written again
    assert set(_blocks(run, "bench_judge")) == set(judged)
    assert list((run / "bench" / "metrics").glob("*.parquet"))
