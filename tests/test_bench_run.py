"""End to end at tiny scale: 4 modes, k = 2, a two-attribute leave-one-out, report and plots."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from test_bench_data import bench_setup, personas_table, prompts_table
from typer.testing import CliRunner

from persona_gen.bench import layout as L
from persona_gen.bench.answer import CUT_BEFORE_MARKER
from persona_gen.bench.layout import BenchLayout
from persona_gen.bench.report import write_report
from persona_gen.bench.requests import build_requests
from persona_gen.bench.run import run_bench, write_outputs
from persona_gen.cli.main import app
from persona_gen.engines.base import ChatRequest, ChatResult, Engine
from persona_gen.errors import UserError
from persona_gen.run.recipe import PERSONAS, PROMPTS
from persona_gen.storage.objects import write_table_atomic
from persona_gen.storage.runref import RunRef
from persona_gen.storage.uri import resolve

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
LOO = ["religion", "political_views"]


def _bench_section(models: list[str], judge: str, **extra) -> dict:
    """A config's `bench` section and its judge (stages.bench_judge.model)."""
    section = {"models": models, "k": 2, "max_personas": 2,
               "max_prompts": 2, "persona_split": "test", "loo_attributes": LOO,
               "loo_personas": 2, "loo_prompts": 2, "bootstrap_samples": 200}
    section.update(extra)
    return {"bench": section, "stages": {"bench_judge": {"model": judge}}}


def _make_run(tmp_path, sections: dict) -> tuple[str, str]:
    root = tmp_path / "runs"
    run = RunRef.at(str(root), "r1")
    write_table_atomic(run.child(PERSONAS), personas_table())
    write_table_atomic(run.child(PROMPTS), prompts_table())
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"run": {"output": str(root), "run_id": "r1", "seed": 5},
                                   **sections}))
    return str(cfg), run.uri


def test_bench_run_with_echo_writes_results_report_and_plots(tmp_path, echo_models):
    cfg_path, run_uri = _make_run(tmp_path, _bench_section(
        echo_models, "echo", intersections=[["sex"]], intersection_min_personas=1))
    res = runner.invoke(app, ["bench", "run", "--config", cfg_path])
    assert res.exit_code == 0, res.output
    assert "PERSONA Bench accuracy" in res.output

    bench = BenchLayout(resolve(run_uri).child("bench"))
    requests = bench.read(L.REQUESTS)
    answers = bench.read(L.ANSWERS)
    judgments = bench.read(L.JUDGMENTS)
    accuracy = bench.read(L.ACCURACY)
    loo = bench.read(L.LOO_KAPPA)
    assert None not in (requests, answers, judgments, accuracy, loo)

    # 2 models x 4 modes x 2 personas x 2 prompts, plus LOO: p-001 has both attributes,
    # p-002 only political_views -> 3 persona/attribute pairs, plus each persona with all
    # attributes removed (2) -> 5 twins x 2 prompts, per model.
    n_main = 2 * 4 * 2 * 2
    n_loo = 2 * 5 * 2
    assert requests.num_rows == n_main + n_loo
    assert answers.num_rows == 2 * requests.num_rows  # k = 2, one row per sample
    assert set(answers.column("sample_index").to_pylist()) == {0, 1}
    assert answers.column("answer_error").null_count == answers.num_rows
    # The echo text has no final-answer marker: cot/summary fall back, and say so.
    marked = answers.filter(pc.is_in(answers.column("mode"), pa.array(["cot", "summary"])))
    assert set(marked.column("answer_parse").to_pylist()) == {"fallback"}
    # pass@k needs distinct samples
    first = answers.filter(pc.equal(answers.column("sample_index"), 0)).column("answer").to_pylist()
    second = answers.filter(pc.equal(answers.column("sample_index"), 1)).column("answer").to_pylist()
    assert all(a != b for a, b in zip(first, second, strict=True))

    assert judgments.num_rows == answers.num_rows and judgments.column("error").null_count == judgments.num_rows
    assert set(judgments.column("verdict").to_pylist()) <= {0, 1}
    assert all(judgments.column("personalization_critique").to_pylist())

    # Accuracy per (model, mode) equals the mean verdict of full-persona samples.
    acc = {(r["model"], r["mode"]): r for r in accuracy.to_pylist()}
    assert len(acc) == 8
    full = [r for r in judgments.to_pylist() if r["ablated_attribute"] is None]
    for (model, mode), row in acc.items():
        v = [r["verdict"] for r in full if r["model"] == model and r["mode"] == mode]
        assert row["judged"] == len(v) == 8 and row["accuracy"] == pytest.approx(sum(v) / len(v))
        assert row["k"] == 2 and 0.0 <= row["pass_at_k"] <= 1.0
        assert row["pass_at_k"] >= row["pass_at_1"]

    pairs = {(r["model"], r["attribute"]): r["pairs"] for r in loo.to_pylist()}
    assert pairs == {(m, "religion"): 4 for m in echo_models} | {
        (m, "political_views"): 8 for m in echo_models} | {
        (m, "all_attributes"): 8 for m in echo_models}
    assert set(loo.column("judge_persona").to_pylist()) == {"reduced"}

    report_dir = tmp_path / "runs" / "r1" / "bench" / "report"
    md = (report_dir / "report.md").read_text()
    assert "| echo-b | summary |" in md and "Leave-one-attribute-out" in md
    assert "Judge role-played the reduced persona" in md
    # pass@k curve k = 1..2 and tokens per mode, as tables beside the report.
    curve = bench.read(L.PASS_AT_K_CURVE)
    assert curve is not None and sorted(set(curve.column("k").to_pylist())) == [1, 2]
    assert "## pass@k curve" in md and "## Tokens per mode" in md
    # Intersectionality on sex: p-001 Female, p-002 Male, one population each.
    pops = bench.read(L.INTERSECTIONALITY).to_pylist()
    assert {r["population"] for r in pops} == {"sex=Female", "sex=Male"}
    assert all(r["samples"] == 4 for r in pops) and "## Intersectionality" in md
    tokens = {(r["model"], r["mode"]): r for r in bench.read(L.TOKENS).to_pylist()}
    assert len(tokens) == 8 and all(r["samples"] == 8 for r in tokens.values())
    assert all(r["judge_prompt_tokens"] > 0 for r in tokens.values())
    for png in ("accuracy.png", "loo_kappa.png", "pass_at_k.png"):
        data = (report_dir / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000

    # `bench report` on its own re-reads the tables and prints them.
    res = runner.invoke(app, ["bench", "report", "--run", run_uri])
    assert res.exit_code == 0, res.output
    assert "political_views" in res.output and "output_only" in res.output


def test_bench_run_without_personas_is_one_clear_error(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"run": {"output": str(tmp_path / "runs"), "run_id": "none"},
                                   "bench": {"models": ["echo"]},
                                   "stages": {"bench_judge": {"model": "echo"}}}))
    res = runner.invoke(app, ["bench", "run", "--config", str(cfg)])
    assert res.exit_code != 0
    assert isinstance(res.exception, UserError) and "no personas here" in str(res.exception)
    assert not (tmp_path / "runs" / "none" / "bench").exists()


class CountingEngine:
    """A real engine wrapped to count the requests it serves (resumption must skip done work)."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.served: list[str] = []

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        self.served.extend(r.id for r in requests)
        return self.inner.generate(requests)

    def close(self) -> None:
        self.inner.close()


def test_rerun_skips_done_requests_and_retries_failures(tmp_path):
    from persona_gen.engines.factory import create_engine

    cfg, stages = bench_setup("echo", **_bench_section(["echo"], "echo",
                                                       modes=["output_only", "cot"])["bench"])
    requests = build_requests(personas_table(), prompts_table(), cfg, seed=0)
    engine = CountingEngine(create_engine("echo"))
    first = run_bench(requests, cfg, stages, lambda _name: engine, seed=0)
    n_first = len(engine.served)
    assert n_first == requests.num_rows + first.answers.num_rows  # answers + judgments

    engine.served.clear()
    again = run_bench(requests, cfg, stages, lambda _name: engine, seed=0,
                      done_answers=first.answers, done_judgments=first.judgments)
    assert engine.served == []
    assert sorted(again.judgments.column("judgment_id").to_pylist()) == \
        sorted(first.judgments.column("judgment_id").to_pylist())

    # One request's answers marked failed: only it is answered again, only its samples judged.
    failed_id = requests.column("request_id")[0].as_py()
    errors = [("boom" if rid == failed_id else None)
              for rid in first.answers.column("request_id").to_pylist()]
    broken = first.answers.set_column(first.answers.column_names.index("answer_error"),
                                      "answer_error", pa.array(errors, pa.string()))
    kept_judgments = first.judgments.filter(pc.not_equal(first.judgments.column("request_id"), failed_id))
    engine.served.clear()
    third = run_bench(requests, cfg, stages, lambda _name: engine, seed=0,
                      done_answers=broken, done_judgments=kept_judgments)
    assert len(engine.served) == 1 + cfg.k
    # Same rows in the same order as the uninterrupted run, so the same metrics.
    assert third.answers.column("sample_id").to_pylist() == first.answers.column("sample_id").to_pylist()
    assert third.judgments.column("verdict").to_pylist() == first.judgments.column("verdict").to_pylist()
    assert third.accuracy.to_pylist() == first.accuracy.to_pylist()

    bench = BenchLayout(resolve(str(tmp_path / "b")))
    write_outputs(bench, third)
    assert write_report(bench).files[-1].endswith("report.md")


@pytest.mark.model
def test_bench_run_with_the_bundled_model(tmp_path, bundled_engine):
    """The real SmolLM2-135M on vLLM CPU answers and judges a tiny bench end to end."""
    name = bundled_engine.name
    # One persona and one prompt keep it quick on 2 CPU cores; still 4 modes, k = 2, LOO.
    bench = _bench_section([name], name, max_personas=1, max_prompts=1, loo_personas=1,
                           loo_prompts=1)["bench"]
    cfg, stages = bench_setup(name, {
        "bench_answer": {"max_tokens": 32, "max_tokens_by_mode": {"cot": 32, "summary": 32}},
        "bench_judge": {"max_tokens": 64, "critique_chars": 40}}, **bench)
    requests = build_requests(personas_table(), prompts_table(), cfg, seed=0)
    out = run_bench(requests, cfg, stages, lambda _name: bundled_engine, seed=0)
    assert out.answers.num_rows == 2 * requests.num_rows
    answered = out.answers.filter(pc.is_null(out.answers.column("answer_error")))
    # At 32 tokens a cot/summary sample may be cut before its marker: failed, by design.
    assert set(out.answers.column("answer_error").to_pylist()) <= {None, CUT_BEFORE_MARKER}
    assert answered.num_rows
    assert all(a.strip() for a in answered.column("answer").to_pylist())
    verdicts = [v for v in out.judgments.column("verdict").to_pylist() if v is not None]
    assert verdicts and set(verdicts) <= {0, 1}
    assert out.accuracy.num_rows == 4
    assert {r["attribute"] for r in out.loo_kappa.to_pylist()} <= {*LOO, "all_attributes"}

    bench = BenchLayout(resolve(str(tmp_path / "bench")))
    write_outputs(bench, out)
    rep = write_report(bench)
    assert (tmp_path / "bench" / "report" / "accuracy.png").read_bytes().startswith(PNG)
    print(rep.markdown)
