"""`bench compare RUN_A RUN_B`: per-mode accuracy and per-attribute kappa differences with
bootstrap intervals, as a table, Markdown and a PNG."""

from __future__ import annotations

import pyarrow as pa
import pytest
from test_bench_data import bench_setup, personas_table, prompts_table
from typer.testing import CliRunner

from persona_gen.bench.compare import mode_diffs
from persona_gen.bench.layout import BenchLayout
from persona_gen.bench.requests import build_requests
from persona_gen.bench.run import run_bench, write_outputs
from persona_gen.cli.main import app, main
from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.storage.runref import RunRef

PNG = b"\x89PNG\r\n\x1a\n"


class Scripted:
    """Answers with a fixed word; the judge passes answers containing 'good'."""

    name = "scripted"

    def __init__(self, word: str) -> None:
        self.word = word

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        out = []
        for r in requests:
            if r.json_schema is not None:
                ok = "good" in r.messages[-1].content
                out.append(ChatResult(id=r.id, texts=["{}"], finish_reasons=["stop"], parsed=[{
                    "chain_of_thought": "", "personalization_critic": "",
                    "helpfulness_critic": "", "conclusion": "", "needs_revision": not ok}]))
            else:
                n = r.sampling.n
                # Sample 0 is always good, so run A is not all-zero.
                texts = ["good answer"] + [f"{self.word} answer {i}" for i in range(1, n)]
                out.append(ChatResult(id=r.id, texts=texts, finish_reasons=["stop"] * n))
        return out

    def close(self) -> None:
        pass


def _run(tmp_path, run_id: str, model: str, word: str) -> str:
    cfg, stages = bench_setup("j", None, models=[model], modes=["baseline", "output_only"], k=2,
                              persona_split="test", loo_attributes=["political_views"],
                              loo_personas=2, loo_prompts=2, bootstrap_samples=50)
    requests = build_requests(personas_table(), prompts_table(), cfg, seed=0)
    engine = Scripted(word)
    out = run_bench(requests, cfg, stages, lambda _n: engine, seed=0)
    run = RunRef.at(str(tmp_path / "runs"), run_id)
    write_outputs(BenchLayout.of(run), out)
    return run.uri


def test_bench_compare_prints_and_writes_differences_with_intervals(tmp_path, capsys):
    base = _run(tmp_path, "base", "base-model", "bad")
    trained = _run(tmp_path, "trained", "trained-model", "good")
    res = CliRunner().invoke(app, ["bench", "compare", base, trained, "--samples", "200"])
    assert res.exit_code == 0, res.output
    assert "baseline" in res.output and "+0.500" in res.output
    folder = tmp_path / "runs" / "trained" / "bench" / "compare"
    modes = {r["mode"]: r for r in pa.parquet.read_table(folder / "modes.parquet").to_pylist()}
    for m in ("baseline", "output_only"):
        r = modes[m]
        # A: half its samples good; B: all good. Same items in both runs: paired.
        assert (r["accuracy_a"], r["accuracy_b"], r["diff"]) == (0.5, 1.0, 0.5)
        assert r["paired"] == r["n_a"] == r["n_b"] == 12
        # Paired: a resample's B - A is its share of sample-1 items (A's failures), so the
        # interval sits around 0.5 and well above 0.
        assert 0.0 < r["ci_low"] < 0.5 < r["ci_high"] < 1.0
    attrs = pa.parquet.read_table(folder / "attributes.parquet").to_pylist()
    assert [a["attribute"] for a in attrs] == ["all_attributes", "political_views"]
    assert (folder / "compare.png").read_bytes().startswith(PNG)
    md = (folder / "compare.md").read_text()
    assert "| baseline | base-model | trained-model |" in md and "95%" in md
    # A model the run does not have: one line, exit 65.
    with pytest.raises(SystemExit) as bad:
        main(["bench", "compare", base, trained, "--model-a", "nope"])
    assert bad.value.code == 65
    assert "model 'nope' is not in this run" in capsys.readouterr().err


def test_unpaired_interval_covers_the_difference_and_is_wider_than_paired():
    def table(model: str, verdicts: list[int], offset: int = 0) -> pa.Table:
        return pa.Table.from_pylist([
            {"model": model, "mode": "baseline", "persona_id": f"p{i + offset}", "prompt_id": "q",
             "ablated_attribute": None, "sample_index": 0, "verdict": v}
            for i, v in enumerate(verdicts)])

    rng = __import__("numpy").random.default_rng(1)
    a = [int(x) for x in rng.uniform(size=200) < 0.4]
    b = [1 if x else int(u < 0.3) for x, u in zip(a, rng.uniform(size=200), strict=True)]
    paired = mode_diffs(table("a", a), table("b", b), "a", "b", samples=400)[0]
    unpaired = mode_diffs(table("a", a), table("b", b, offset=1000), "a", "b", samples=400)[0]
    assert unpaired.paired == 0 and paired.paired == 200
    assert paired.diff == unpaired.diff == pytest.approx(sum(b) / 200 - sum(a) / 200)
    for d in (paired, unpaired):
        assert d.ci_low < d.diff < d.ci_high
    assert paired.ci_high - paired.ci_low < unpaired.ci_high - unpaired.ci_low
