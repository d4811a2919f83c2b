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


def test_resumed_bench_with_another_model_gets_that_models_answers(tmp_path, ray_local,
                                                                   echo_models):
    """Blocks are named by content (stage, model, rows): a resumed run that asks for other
    work never gets an earlier run's blocks back."""
    from persona_gen.bench import layout as L
    from persona_gen.bench.layout import BenchLayout
    from persona_gen.storage.uri import resolve

    a, b = echo_models
    cfg, run_uri = _make_run(tmp_path / "one", _bench_section([a], "echo", loo_attributes=[]))
    assert runner.invoke(app, ["bench", "run", "--config", cfg]).exit_code == 0
    run = Path(run_uri)
    a_blocks = _blocks(run, "bench_answer")

    # The same run id, now with models A and B.
    cfg_ab, _ = _make_run(tmp_path / "one", _bench_section([a, b], "echo", loo_attributes=[]))
    res = runner.invoke(app, ["bench", "run", "--config", cfg_ab])
    assert res.exit_code == 0, res.output
    assert {p: t for p, t in _blocks(run, "bench_answer").items() if p in a_blocks} == a_blocks

    # B alone in a fresh run: the answers B gave in the resumed run are exactly these.
    cfg_b, fresh_uri = _make_run(tmp_path / "two", _bench_section([b], "echo", loo_attributes=[]))
    assert runner.invoke(app, ["bench", "run", "--config", cfg_b]).exit_code == 0

    def answers(uri: str, model: str) -> list[tuple]:
        t = BenchLayout(resolve(uri).child("bench")).read(L.ANSWERS).to_pylist()
        return sorted((r["sample_id"], r["model"], r["answer"]) for r in t if r["model"] == model)

    resumed_b = answers(run_uri, b)
    assert resumed_b and resumed_b == answers(fresh_uri, b)
    assert answers(run_uri, a) != [(s, a, t) for s, _, t in resumed_b]
